"""The reformulated mask decoders (fast: groups per image or across images; factored) equal SAM's decoder
(``decode_masks``) on the fixture models and a full-size head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.models import create_model
from pipeline.models.factored_decoder import FactoredContext, FactoredMaskDecoder
from pipeline.models.fast_decoder import DecodeHints, FastMaskDecoder
from pipeline.models.sam import decode_masks, embed_dense, embed_prompt_tokens
from pipeline.runtime.torch_backend import TorchSam
from pipeline.segment.prompts import make_prompts
from tests.fixtures import fixture_model, needs_bf16


@pytest.fixture(scope="module", params=["mini-l", "mini-xl", "l0-random"])
def model(request):
    if request.param == "l0-random":  # the decoder every official variant has (mlp 2048, IoU head 256)
        return create_model("efficientvit-sam-l0", seed=3)
    return fixture_model(request.param.split("-")[1])


def _inputs(seed: int, images: int, points: int, boxes: int):
    g = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(images, 256, 64, 64, generator=g)
    point_prompts = make_prompts(
        np.arange(points) % images,  # interleaved images: one call mixes them
        (torch.rand(points, 1, 2, generator=g) * 1000).numpy(),
        np.ones((points, 1)),
    )
    box_xy = torch.rand(boxes, 2, 2, generator=g).sort(dim=1).values * 1000
    box_prompts = make_prompts(np.arange(boxes)[::-1] % images, boxes=box_xy.reshape(-1, 4).numpy())
    return embeddings, [point_prompts, box_prompts]


def _reference(model, embeddings, prompts):
    pe = model.prompt_encoder
    sparse = embed_prompt_tokens(pe, torch.from_numpy(prompts.coords), torch.from_numpy(prompts.labels))
    dense = embed_dense(pe, None, len(prompts))
    index = torch.as_tensor(prompts.image_index)
    return decode_masks(model.mask_decoder, embeddings[index], pe.get_dense_pe(), sparse, dense), sparse


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


DECODERS = ["groups-per-image", "groups-across-images", "factored"]


def _decoder(kind: str, model, group: int, dtype: torch.dtype = torch.float32) -> FastMaskDecoder:
    pe = model.prompt_encoder
    args = (model.mask_decoder, pe.get_dense_pe(), pe.no_mask_embed.weight)
    if kind == "factored":
        return FactoredMaskDecoder(*args, group=group, dtype=dtype)
    return FastMaskDecoder(*args, group=group, dtype=dtype, across_images=kind == "groups-across-images")


@torch.inference_mode()
@pytest.mark.parametrize("kind", DECODERS)
def test_equals_sam_decoder_for_points_and_boxes_across_images(model, kind: str) -> None:
    embeddings, batches = _inputs(0, images=3, points=7, boxes=5)
    fast = _decoder(kind, model, group=4)
    context = fast.image_context(embeddings)
    for prompts in batches:
        (expected_logits, expected_iou), sparse = _reference(model, embeddings, prompts)
        logits, iou = fast(context, prompts.image_index, sparse)
        assert logits.shape == expected_logits.shape == (len(prompts), 4, 256, 256)
        assert _rel(logits, expected_logits) <= 1e-5
        assert float((iou - expected_iou).abs().max()) <= 1e-5


@torch.inference_mode()
@pytest.mark.parametrize("kind", DECODERS)
def test_hints_skip_only_what_is_not_read(kind: str) -> None:
    model = fixture_model("l")
    embeddings, (points, _) = _inputs(1, images=2, points=10, boxes=1)
    fast = _decoder(kind, model, group=3)
    context = fast.image_context(embeddings)
    (expected, expected_iou), sparse = _reference(model, embeddings, points)
    best = expected_iou[:, 1:].amax(dim=1)
    threshold = float(best.sort().values[4:6].mean())  # half the prompts above, none within rounding of it
    read_hw = np.array([[193, 130], [97, 256]])[points.image_index]  # per prompt: its image's window
    hints = DecodeHints(mask_tokens=(1, 2, 3), min_iou=threshold, low_res_hw=read_hw)
    logits, iou = fast(context, points.image_index, sparse, hints)
    assert float((iou - expected_iou).abs().max()) <= 1e-5
    kept = (best > threshold).numpy()
    assert 0 < kept.sum() < len(kept)
    for i in range(len(points)):
        if kept[i]:
            h, w = read_hw[i]
            assert _rel(logits[i, 1:, :h, :w], expected[i, 1:, :h, :w]) <= 1e-5
            assert not logits[i, 0].any()  # token 0 is not read: not computed
        else:
            assert not logits[i].any()  # nothing read: not computed


@torch.inference_mode()
def test_torch_runtime_uses_it_and_keeps_mask_inputs_on_the_reference_path() -> None:
    model = fixture_model("l")
    embeddings, (points, _) = _inputs(2, images=2, points=6, boxes=1)
    fast, plain = TorchSam(model, decoder_chunk=4), TorchSam(model, decoder_chunk=4, fast_decoder=False)
    for a, b in zip(fast.decode(embeddings, points), plain.decode(embeddings, points), strict=True):
        assert _rel(a, b) <= 1e-5
    masked = make_prompts(
        points.image_index, points.coords[:, :1], np.ones((6, 1)), mask_input=np.ones((6, 1, 256, 256))
    )
    for a, b in zip(fast.decode(embeddings, masked), plain.decode(embeddings, masked), strict=True):
        assert torch.equal(a, b)


@torch.inference_mode()
def test_torch_runtime_takes_the_factored_decoder_for_dense_prompts() -> None:
    model = fixture_model("l")
    embeddings, (many, _) = _inputs(4, images=2, points=96, boxes=1)
    runtime, fast_only = TorchSam(model, decoder_chunk=256), TorchSam(model, decoder_chunk=256)
    fast_only.factored = None  # the fast decoder equals SAM's (tests above)
    hints = DecodeHints(low_res_hw=np.full((len(many), 2), 16))  # a small window: cheap upscaling
    runtime.decode(embeddings, many, hints)
    assert not isinstance(runtime._context[1], FactoredContext)  # however many, boxes and points: the fast decoder
    dense = DecodeHints(low_res_hw=hints.low_res_hw, dense=True)  # grids and proposals
    for a, b in zip(runtime.decode(embeddings, many, dense), fast_only.decode(embeddings, many, dense), strict=True):
        assert _rel(a, b) <= 1e-5
    assert isinstance(runtime._context[1], FactoredContext)


def test_groups_span_images_only_when_asked() -> None:
    model = fixture_model("l")
    pe = model.prompt_encoder
    image_index = np.array([1, 0, 1, 0, 0, 2])
    per_image = FastMaskDecoder(model.mask_decoder, pe.get_dense_pe(), pe.no_mask_embed.weight, group=2)
    groups = [(rows.tolist(), image) for rows, image in per_image._groups(image_index)]
    assert groups == [([1, 3], 0), ([4], 0), ([0, 2], 1), ([5], 2)]
    spanning = FastMaskDecoder(
        model.mask_decoder, pe.get_dense_pe(), pe.no_mask_embed.weight, group=4, across_images=True
    )
    groups = [(rows.tolist(), image) for rows, image in spanning._groups(image_index)]
    assert groups == [([1, 3, 4, 0], None), ([2, 5], None)]
    assert [(r.tolist(), i) for r, i in spanning._groups(np.array([0, 0, 0]))] == [([0, 1, 2], 0)]


def test_bad_group_size_is_refused() -> None:
    model = fixture_model("l")
    pe = model.prompt_encoder
    with pytest.raises(ValueError, match="group"):
        FastMaskDecoder(model.mask_decoder, pe.get_dense_pe(), pe.no_mask_embed.weight, group=0)


@needs_bf16
@torch.inference_mode()
@pytest.mark.parametrize("kind", ["groups-per-image", "factored"])
def test_bf16_transformer_agrees_with_fp32_and_leaves_the_model_fp32(model, kind: str) -> None:
    embeddings, batches = _inputs(3, images=2, points=8, boxes=6)
    fast = _decoder(kind, model, group=4, dtype=torch.bfloat16)
    context = fast.image_context(embeddings)
    for prompts in batches:
        (expected_logits, expected_iou), sparse = _reference(model, embeddings, prompts)
        logits, iou = fast(context, prompts.image_index, sparse)
        assert logits.dtype == iou.dtype == torch.float32
        ours, theirs = logits > 0, expected_logits > 0
        mask_iou = (ours & theirs).flatten(2).sum(-1) / (ours | theirs).flatten(2).sum(-1).clamp(min=1)
        assert float(mask_iou.float().mean()) >= 0.98
        assert float((iou - expected_iou).abs().max()) <= 0.02
    assert all(p.dtype == torch.float32 for p in model.mask_decoder.parameters())  # a copy went to bf16


def test_bf16_decoder_precision_selects_the_bf16_fast_decoder() -> None:
    runtime = TorchSam(fixture_model("l"), decoder_precision="bf16")
    assert runtime.fast.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        FastMaskDecoder(runtime.model.mask_decoder, runtime.image_pe, torch.zeros(256), dtype=torch.float16)
