"""The accuracy gate for faster paths (bf16/fp16, torch.compile, ONNX Runtime, TensorRT): masks of a candidate
runtime against an fp32 reference runtime on the same images and prompts.

Prompts per image: the boxes of a 3×3 grid of cells and their centre points (18 prompts), decoded multimask and
reduced to the best of 3 by predicted IoU (the official box protocol). Masks are compared as ``logits > 0`` on the
low-res grid, inside the part that covers the image. The gate passes when the mean mask IoU is at least
``threshold`` (0.98 by default).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.config.sections import ModelConfig, StorageConfig
from pipeline.runtime.base import SamRuntime
from pipeline.runtime.capability import require_bf16
from pipeline.segment.geometry import boxes_to_prompt_frame, to_prompt_frame
from pipeline.segment.grid_filters import valid_low_res_hw
from pipeline.segment.masks import best_of
from pipeline.segment.predictor import encode_images, predict
from pipeline.segment.prompts import make_prompts

GATE_MASK_IOU = 0.98
CELLS = 3


@dataclass(frozen=True)
class GateResult:
    passed: bool
    threshold: float
    prompts: int
    mask_iou_mean: float
    mask_iou_min: float
    embedding_rel_error: float
    """max |candidate - reference| / max |reference| over the embeddings."""


def gate_prompts(original_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [9,4] and centre points [9,1,2] of a 3×3 grid of cells, in the 1024 prompt frame."""
    h, w = original_hw
    xs, ys = np.linspace(0, w, CELLS + 1), np.linspace(0, h, CELLS + 1)
    boxes = np.array([[xs[i], ys[j], xs[i + 1], ys[j + 1]] for j in range(CELLS) for i in range(CELLS)])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    return boxes_to_prompt_frame(boxes, original_hw), to_prompt_frame(centres[:, None], original_hw)


def gate_masks(runtime: SamRuntime, images: Sequence[np.ndarray]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Best-of-3 low-res masks per image [18,h,w] (valid part) and the embeddings as a CPU float tensor."""
    encoded = encode_images(runtime, images)
    out = []
    for i, image in enumerate(images):
        boxes, points = gate_prompts(image.shape[:2])
        index = np.full(len(boxes), i)
        batches = [make_prompts(index, boxes=boxes), make_prompts(index, points, np.ones((len(points), 1)))]
        pred = predict(runtime, encoded, batches, multimask_output=True)
        logits, _ = best_of(pred.low_res_logits, pred.iou_predictions)
        vh, vw = valid_low_res_hw(image.shape[:2])
        out.append(logits[:, :vh, :vw].float().cpu() > 0)
    return out, torch.as_tensor(
        np.asarray(encoded.embeddings.cpu() if torch.is_tensor(encoded.embeddings) else encoded.embeddings)
    )


def mask_ious(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> torch.Tensor:
    """Per-prompt mask IoU [sum of prompts] of two :func:`gate_masks` results (1 where both are empty)."""
    ious = []
    for a, b in zip(ours, theirs, strict=True):
        inter = (a & b).flatten(1).sum(1).float()
        union = (a | b).flatten(1).sum(1).float()
        ious.append(torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)))
    return torch.cat(ious)


def accuracy_gate(
    candidate: SamRuntime, reference: SamRuntime, images: Sequence[np.ndarray], threshold: float = GATE_MASK_IOU
) -> GateResult:
    """Compares ``candidate`` with ``reference`` (fp32) on ``images`` (HWC uint8 RGB); see the module docstring."""
    if not images:
        raise ValueError("the accuracy gate needs at least one image")
    ours, our_embeddings = gate_masks(candidate, images)
    theirs, their_embeddings = gate_masks(reference, images)
    iou = mask_ious(ours, theirs)
    error = float((our_embeddings.float() - their_embeddings.float()).abs().max() / their_embeddings.abs().max())
    mean = float(iou.mean())
    return GateResult(mean >= threshold, threshold, len(iou), round(mean, 6), round(float(iou.min()), 6), error)


def gate_images(count: int = 3) -> list[np.ndarray]:
    """Deterministic generated images with objects of several sizes (the shapes generator, seeds 0..count-1)."""
    from pipeline.datasets.shapes import ShapesConfig, generate_image

    return [generate_image(np.random.default_rng(seed), ShapesConfig())[0] for seed in range(count)]


def reduced_precision_settings(model: ModelConfig) -> list[str]:
    """The settings of ``model`` that the label job gates: a bf16 encoder and a bf16 mask decoder (torch backend).
    An fp16 encoder is a GPU setting the driver's CPU cannot run; ``jobs.bench --gpu-table`` gates it."""
    settings = []  # "auto" is resolved and gated inside each worker (pipeline.runtime.auto_precision)
    if model.backend == "torch" and model.precision == "bf16":
        settings.append("model.precision=bf16")
    if model.decoder_precision == "bf16":
        settings.append(f"model.decoder_precision={model.decoder_precision}")
    return settings


def check_precision(model: ModelConfig, storage: StorageConfig) -> GateResult | None:
    """Gates the reduced-precision settings of ``model`` (see :func:`reduced_precision_settings`) together against
    fp32 on the driver's CPU, before any work; None when there are none, ValueError naming them when the masks
    differ too much. Whether bf16 keeps the masks depends on the weights (a model whose logits sit close to 0, or
    whose best-of-3 IoU predictions are close, flips pixels or picks), so it is checked for the weights of this run."""
    from pipeline.runtime.load import load_runtime

    settings = reduced_precision_settings(model)
    if not settings:
        return None
    require_bf16(torch.device("cpu"), " with ".join(settings), ", where explicit bf16 is checked against fp32")
    # The gated settings in bf16, every other part in fp32 (an fp16 encoder cannot run on the driver's CPU).
    encoder = "bf16" if model.backend == "torch" and model.precision == "bf16" else "fp32"
    decoder = "bf16" if model.decoder_precision == "bf16" else "fp32"
    cpu = dataclasses.replace(model, backend="torch", device="cpu", compile=False)
    candidate = load_runtime(dataclasses.replace(cpu, precision=encoder, decoder_precision=decoder), storage, 64)
    reference = load_runtime(dataclasses.replace(cpu, precision="fp32", decoder_precision="fp32"), storage, 64)
    result = accuracy_gate(candidate, reference, gate_images(), threshold=GATE_MASK_IOU)
    if not result.passed:
        raise ValueError(
            f"{' with '.join(settings)} fails the accuracy gate for {model.name}: mean mask IoU "
            f"{result.mask_iou_mean:.3f} against fp32 (at least {result.threshold} needed); use fp32"
        )
    return result
