"""Point-NMS (radius, threshold, top-N, groups, padding), the box encoding round trip, and the head's shapes."""

import json

import numpy as np
import pytest
import torch

from pipeline.prompts.autoppn.boxes import cell_centres, decode_ltrb, encode_ltrb
from pipeline.prompts.autoppn.model import POOL_SIZES, AutoPPN, AutoPPNCard, box_mean
from pipeline.prompts.autoppn.nms import point_nms
from pipeline.prompts.autoppn.proposals import Proposals
from pipeline.prompts.autoppn.segment import make_autoppn_prompts


def _heat(peaks, groups=3, size=16):
    heat = torch.zeros(groups, size, size)
    for g, r, c, v in peaks:
        heat[g, r, c] = v
    return heat


def test_radius_suppresses_lower_peaks_nearby():
    heat = _heat([(1, 5, 5, 0.9), (1, 5, 7, 0.8)])
    assert len(point_nms(heat, 0.3, radius=1, top_n=10)) == 2
    peaks = point_nms(heat, 0.3, radius=2, top_n=10)
    assert list(zip(peaks.row, peaks.col, strict=True)) == [(5, 5)]


def test_threshold_and_local_maxima():
    heat = _heat([(0, 2, 2, 0.29), (0, 9, 9, 0.3)])
    heat[0, 9, 10] = 0.2  # a neighbour lower than the peak is not a peak
    peaks = point_nms(heat, 0.3, radius=1, top_n=10)
    assert list(zip(peaks.row, peaks.col, strict=True)) == [(9, 9)] and peaks.score[0] == pytest.approx(0.3)


def test_top_n_keeps_the_best_across_groups_and_groups_do_not_suppress_each_other():
    heat = _heat([(0, 3, 3, 0.5), (2, 3, 3, 0.95), (1, 12, 12, 0.7), (1, 0, 15, 0.6), (0, 8, 1, 0.4)])
    peaks = point_nms(heat, 0.3, radius=3, top_n=3)
    assert list(peaks.score) == pytest.approx([0.95, 0.7, 0.6])
    assert list(peaks.group) == [2, 1, 1]
    both = point_nms(heat, 0.3, radius=3, top_n=10)
    assert {(g, r, c) for g, r, c in zip(both.group, both.row, both.col, strict=True)} >= {(0, 3, 3), (2, 3, 3)}


def test_padding_cells_give_no_peaks():
    heat = _heat([(0, 14, 3, 0.9), (0, 2, 3, 0.8)])
    valid = torch.ones(16, 16, dtype=torch.bool)
    valid[12:] = False
    peaks = point_nms(heat, 0.3, radius=1, top_n=10, valid=valid)
    assert list(peaks.row) == [2]


def test_box_encoding_round_trip():
    rng = np.random.default_rng(0)
    centres = cell_centres((64, 64), 16)[rng.integers(0, 64, 200), rng.integers(0, 64, 200)]  # [200,2]
    lt = rng.uniform(0, 300, (200, 2))
    rb = rng.uniform(0, 300, (200, 2))
    boxes = np.concatenate([centres - lt, centres + rb], axis=1)
    t = encode_ltrb(boxes, centres, 16)
    back = decode_ltrb(torch.as_tensor(t), torch.as_tensor(centres), 16, (10_000, 10_000))
    assert np.allclose(back.numpy(), np.clip(boxes, 0, None), atol=1e-3)
    clipped = decode_ltrb(torch.as_tensor(t), torch.as_tensor(centres), 16, (500, 400))
    assert clipped[:, 2].max() <= 400 and clipped[:, 3].max() <= 500 and clipped.min() >= 0


@pytest.mark.parametrize(("stride", "cells"), [(8, 128), (16, 64)])
def test_head_shapes_and_prior(stride, cells):
    head = AutoPPN(AutoPPNCard(channels=16, out_stride=stride)).eval()
    heat, t = head(torch.randn(2, 256, 64, 64))
    assert heat.shape == (2, 3, cells, cells) and t.shape == (2, 3, 4, cells, cells)
    assert 0.0 < heat.mean().item() < 0.3  # the prior bias starts the heatmap near 0.1
    with pytest.raises(ValueError, match=r"embeddings \[B,256,64,64\]"):
        head(torch.randn(1, 128, 64, 64))


@pytest.mark.parametrize("k", POOL_SIZES)
def test_box_mean_is_the_specs_average_pool_with_its_gradient(k):
    x = torch.randn(2, 5, 13, 7, dtype=torch.float64, requires_grad=True)
    pool = torch.nn.AvgPool2d(k, 1, k // 2, count_include_pad=False)
    weights = torch.randn(2, 5, 13, 7, dtype=torch.float64)
    ours = box_mean(x, k)
    (grad,) = torch.autograd.grad((ours * weights).sum(), x)
    (expected_grad,) = torch.autograd.grad((pool(x) * weights).sum(), x)
    assert torch.allclose(ours, pool(x), atol=1e-12) and torch.allclose(grad, expected_grad, atol=1e-12)


def test_head_reads_the_embedding_width_of_its_card():
    card = AutoPPNCard(channels=8, out_stride=16, embed_dim=48)
    heat, _ = AutoPPN(card).eval()(torch.randn(1, 48, 64, 64))
    assert heat.shape == (1, 3, 64, 64)
    assert AutoPPNCard.from_json(card.to_json(), "x").embed_dim == 48
    legacy = {k: v for k, v in json.loads(card.to_json()).items() if k != "embed_dim"}
    assert AutoPPNCard.from_json(json.dumps(legacy), "x").embed_dim == 256  # cards written before the field


def test_card_parsing_is_strict():
    card = AutoPPNCard(channels=32, out_stride=16)
    assert AutoPPNCard.from_json(card.to_json(), "x") == card
    with pytest.raises(ValueError, match="unknown AutoPPN card keys"):
        AutoPPNCard.from_json('{"format": "samlabel-autoppn/1", "chanels": 3}', "x")
    with pytest.raises(ValueError, match="out_stride must be 8 or 16"):
        AutoPPNCard.from_json('{"format": "samlabel-autoppn/1", "out_stride": 4}', "x")
    with pytest.raises(ValueError, match="not valid JSON"):
        AutoPPNCard.from_json("{", "x")


@pytest.mark.parametrize("mode", ["box+point", "box", "point"])
def test_a_batch_without_proposals_gives_no_prompts(mode):
    empty = Proposals(
        np.zeros(0, np.int64), np.zeros((0, 2), np.float32), np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0)
    )
    prompts, _ = make_autoppn_prompts(empty, mode)  # an untrained head's validation batch, a blank image's batch
    assert len(prompts) == 0
