"""Batched segmentation API: many images in one encoder forward, many prompts of many images in one decoder call.

    encoded = encode_images(runtime, images)                   # preprocess exactly like the official predictor
    prompts = make_prompts(image_index, boxes=boxes_1024)      # or points / mask inputs, in the 1024 frame
    pred = predict(runtime, encoded, [prompts], multimask_output=True)
    masks = masks_at_original_size(pred, encoded, i)           # [C,h,w] bool for prompt i

Results equal the one-image-at-a-time :class:`pipeline.segment.reference.ReferencePredictor` to ~1e-6.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pipeline.models.fast_decoder import DecodeHints
from pipeline.runtime.base import SamRuntime
from pipeline.segment.geometry import resize_longest_side
from pipeline.segment.masks import MASK_THRESHOLD, select_masks, upscale_logits
from pipeline.segment.prompts import PromptBatch


@dataclass(frozen=True)
class EncodedImages:
    embeddings: Any
    """Backend-specific embeddings [B,256,64,64]."""
    original_hw: np.ndarray
    """[B,2] int, original (h, w) of each image."""


@dataclass(frozen=True)
class Predictions:
    image_index: np.ndarray
    """[P] int, image of each prompt (the prompt batches concatenated in the order given)."""
    low_res_logits: torch.Tensor
    """[P,C,256,256], C = 3 with multimask output else 1."""
    iou_predictions: torch.Tensor
    """[P,C]."""


def prepare_images(images: Sequence[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """HWC uint8 RGB images of any sizes → canvases [B,S,S,3] uint8 (resized image top-left) and input_hw [B,2]."""
    canvases = np.zeros((len(images), size, size, 3), np.uint8)
    input_hw = np.zeros((len(images), 2), np.int64)
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image {i} must be HxWx3 uint8 RGB, got {image.shape} {image.dtype}")
        resized = resize_longest_side(image, size)
        canvases[i, : resized.shape[0], : resized.shape[1]] = resized
        input_hw[i] = resized.shape[:2]
    return canvases, input_hw


def encode_images(runtime: SamRuntime, images: Sequence[np.ndarray]) -> EncodedImages:
    canvases, input_hw = prepare_images(images, runtime.encoder_input_size)
    original_hw = np.array([image.shape[:2] for image in images], dtype=np.int64).reshape(-1, 2)
    return EncodedImages(runtime.encode(canvases, input_hw), original_hw)


def predict(
    runtime: SamRuntime,
    encoded: EncodedImages,
    prompts: PromptBatch | Sequence[PromptBatch],
    multimask_output: bool,
    hints: DecodeHints | None = None,
) -> Predictions:
    """Decodes prompt batches (each of one token layout) against the encoded images.

    ``hints`` (for the prompts of all batches, concatenated) let the backend skip logits the caller will not read.
    """
    batches = [prompts] if isinstance(prompts, PromptBatch) else list(prompts)
    logits, ious = [], []
    start = 0
    for batch in batches:
        if len(batch) and batch.image_index.max() >= len(encoded.original_hw):
            raise ValueError(
                f"image_index {batch.image_index.max()} out of range for {len(encoded.original_hw)} images"
            )
        batch_hints = None if hints is None else hints.take(slice(start, start + len(batch)))
        start += len(batch)
        low_res, iou = select_masks(*runtime.decode(encoded.embeddings, batch, batch_hints), multimask_output)
        logits.append(low_res)
        ious.append(iou)
    channels = 3 if multimask_output else 1
    return Predictions(
        image_index=np.concatenate([b.image_index for b in batches]) if batches else np.zeros(0, np.int64),
        low_res_logits=torch.cat(logits) if logits else torch.zeros((0, channels, 256, 256)),
        iou_predictions=torch.cat(ious) if ious else torch.zeros((0, channels)),
    )


def masks_at_original_size(
    pred: Predictions, encoded: EncodedImages, index: int, return_logits: bool = False
) -> torch.Tensor:
    """Masks of prompt ``index`` at its image's original size: [C,h,w] bool (or float logits)."""
    hw = tuple(int(v) for v in encoded.original_hw[pred.image_index[index]])
    logits = upscale_logits(pred.low_res_logits[index], hw)
    return logits if return_logits else logits > MASK_THRESHOLD
