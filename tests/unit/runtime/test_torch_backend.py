"""The PyTorch runtime's bf16 mask decoder leaves keep-or-drop at an IoU threshold to fp32: prompts whose predicted
IoU lies near the caller's threshold come back as the fp32 decoder computes them, the others as bf16 computes them."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.models.fast_decoder import DecodeHints
from pipeline.runtime.torch_backend import BORDERLINE_IOU, TorchSam
from pipeline.segment.prompts import make_prompts
from tests.fixtures import fixture_model, needs_bf16

TOKENS = (1, 2, 3)


def _grid_like(images: int, per_image: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(images, 256, 64, 64, generator=g)
    points = (torch.rand(images * per_image, 1, 2, generator=g) * 1000).numpy()
    prompts = make_prompts(np.repeat(np.arange(images), per_image), points, np.ones((len(points), 1)))
    return embeddings, prompts


@torch.inference_mode()
@needs_bf16
def test_prompts_near_the_threshold_are_decoded_in_fp32() -> None:
    model = fixture_model("l")
    fp32, bf16 = TorchSam(model), TorchSam(model, decoder_precision="bf16")
    embeddings, prompts = _grid_like(images=2, per_image=48, seed=0)  # 48 per image: the factored decoder
    _, plain_iou = bf16.decode(embeddings, prompts)  # no threshold: every prompt in bf16
    _, exact_iou = fp32.decode(embeddings, prompts)
    best = plain_iou[:, list(TOKENS)]
    threshold = float(best.median())  # about half the prompts fall near it
    near = (best - threshold).abs().le(BORDERLINE_IOU).any(dim=1)
    assert 0 < int(near.sum()) < len(prompts)

    logits, iou = bf16.decode(embeddings, prompts, DecodeHints(mask_tokens=TOKENS, min_iou=threshold))

    assert torch.allclose(iou[near], exact_iou[near], atol=1e-5)  # fp32's values, not bf16's
    assert torch.equal(iou[~near], plain_iou[~near])  # the rest as the bf16 decoder gave them
    assert not torch.allclose(plain_iou[near], exact_iou[near], atol=1e-5)  # bf16 did differ there
    exact_logits, _ = fp32.decode(embeddings, prompts.take(np.flatnonzero(near.numpy())))
    kept = near.nonzero().flatten()
    read = exact_iou[kept][:, list(TOKENS)].max(dim=1).values > threshold
    for token in TOKENS:  # logits of re-decoded prompts that pass the threshold are fp32's too
        assert torch.allclose(logits[kept[read], token], exact_logits[read, token], atol=1e-4)


@torch.inference_mode()
@needs_bf16
def test_no_threshold_or_an_fp32_decoder_leaves_the_results_alone() -> None:
    model = fixture_model("l")
    embeddings, prompts = _grid_like(images=1, per_image=16, seed=1)
    bf16 = TorchSam(model, decoder_precision="bf16")
    _, plain = bf16.decode(embeddings, prompts)
    _, with_hints = bf16.decode(embeddings, prompts, DecodeHints(mask_tokens=TOKENS))
    assert torch.equal(plain, with_hints)
    assert TorchSam(model).exact is None
