"""Box prompts of several images of different sizes: thresholds drop masks per box, and every kept mask stays with
its own image and box whatever the upsampling chunks (which span images of one size)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config.sections import BoxesConfig
from pipeline.runtime.torch_backend import TorchSam
from pipeline.segment import boxes as box_prompts
from pipeline.segment.boxes import segment_boxes, segment_boxes_in_steps, step_slices
from pipeline.segment.masks import decode_rle, mask_iou
from pipeline.segment.predictor import encode_images, prepare_images
from tests.fixtures import fixture_images, fixture_model

BOXES = [
    [[50, 40, 300, 250], [10, 10, 120, 90], [200, 150, 480, 320]],
    [],
    [[100, 200, 600, 900], [0, 0, 733, 1100], [20, 30, 90, 400]],
    [[50, 40, 300, 250], [10, 10, 120, 90]],  # img0 again, its first two boxes
]


def _images() -> list[np.ndarray]:
    images = fixture_images()
    # img0 twice: two images of one size, whose prompts share upsampling chunks.
    return [images["img0"], images["img2"], images["img1"], images["img0"]]


@pytest.fixture(scope="module")
def labeled():
    runtime = TorchSam(fixture_model("l"))
    encoded = encode_images(runtime, _images())
    boxes = [np.array(b, np.float32).reshape(-1, 4) for b in BOXES]
    return runtime, encoded, boxes, segment_boxes(runtime, encoded, boxes, BoxesConfig())


def test_every_box_gets_its_mask_in_order(labeled) -> None:
    _, encoded, boxes, everything = labeled
    for masks, b, hw in zip(everything, boxes, encoded.original_hw, strict=True):
        assert masks.prompt_index.tolist() == list(range(len(b)))
        assert all(rle["size"] == hw.tolist() for rle in masks.rles)
    # Same image, same boxes → the same masks, although decoded in different groups and upsampled in one chunk.
    assert everything[0].rles[:2] == everything[3].rles


@pytest.mark.parametrize("chunk", [1, 2, 64])
def test_thresholds_drop_per_box_and_keep_the_rest_unchanged(labeled, chunk: int, monkeypatch) -> None:
    runtime, encoded, boxes, everything = labeled
    monkeypatch.setitem(box_prompts.UPSCALE_CHUNK, "cpu", chunk)
    ious = np.concatenate([m.predicted_iou for m in everything])
    stabilities = np.concatenate([m.stability_score for m in everything])
    cfg = BoxesConfig(pred_iou_thresh=float(np.median(ious)), stability_score_thresh=float(np.median(stabilities)))
    strict = segment_boxes(runtime, encoded, boxes, cfg)
    dropped = 0
    for before, after in zip(everything, strict, strict=True):
        passing = (before.predicted_iou > cfg.pred_iou_thresh) & (before.stability_score >= cfg.stability_score_thresh)
        assert after.prompt_index.tolist() == np.flatnonzero(passing).tolist()
        for k, prompt in enumerate(after.prompt_index):
            assert after.rles[k] == before.rles[prompt]
            assert after.predicted_iou[k] == before.predicted_iou[prompt]
            assert after.areas[k] == before.areas[prompt]
            assert after.boxes_xyxy[k].tolist() == before.boxes_xyxy[prompt].tolist()
        dropped += len(before.rles) - len(after.rles)
    assert 0 < dropped < len(ious)


def test_steps_give_the_masks_of_one_call(labeled) -> None:
    runtime, encoded, boxes, everything = labeled
    canvases, input_hw = prepare_images(_images(), runtime.encoder_input_size)
    parts = [slice(0, 1), slice(1, 3), slice(3, 4)]
    steps = ((canvases[s], input_hw[s], encoded.original_hw[s], boxes[s]) for s in parts)
    stepped = segment_boxes_in_steps(runtime, steps, BoxesConfig())
    assert [m.prompt_index.tolist() for m in stepped] == [m.prompt_index.tolist() for m in everything]
    # Other batch shapes round differently (~1e-6), which can flip a pixel at a near-zero logit.
    for ours, theirs in zip(stepped, everything, strict=True):
        for a, b in zip(ours.rles, theirs.rles, strict=True):
            assert mask_iou(decode_rle(a), decode_rle(b)) >= 0.999


def test_a_gpu_takes_images_in_steps_a_cpu_at_once(monkeypatch) -> None:
    monkeypatch.setattr(box_prompts, "GPU_STEP_IMAGES", 8)
    assert step_slices(20, torch.device("cpu")) == [slice(0, 20)]
    assert step_slices(20, torch.device("cuda")) == [slice(0, 8), slice(8, 16), slice(16, 24)]
    assert step_slices(0, torch.device("cuda")) == []


def test_no_images_and_no_boxes(labeled) -> None:
    runtime, encoded, _, _ = labeled
    none = [np.zeros((0, 4), np.float32)] * len(encoded.original_hw)
    assert [len(m.rles) for m in segment_boxes(runtime, encoded, none, BoxesConfig())] == [0, 0, 0, 0]
    assert segment_boxes_in_steps(runtime, iter([]), BoxesConfig()) == []


def test_gpu_upsampling_chunks_shrink_for_large_originals() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert box_prompts.upscale_chunk(cuda, (480, 640)) == 64
    assert box_prompts.upscale_chunk(cuda, (3000, 4000)) == 10  # 2**27 px / (1024² + 12 MP)
    assert box_prompts.upscale_chunk(cuda, (30000, 40000)) == 1
    assert box_prompts.upscale_chunk(cpu, (3000, 4000)) == 8
