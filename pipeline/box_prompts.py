"""Masks for boxes a user already has: one decoder prompt per box, prompts of all images in shared decoder calls.

The mask per box follows the official box protocol: ``multimask_output=True`` and the mask with the highest
predicted IoU (or the single-mask token when ``multimask`` is off), upsampled to the original size, ``logits > 0``.
The stability score is computed on those full-size logits. Boxes failing the thresholds are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.config import BoxesConfig
from pipeline.geometry import boxes_to_prompt_frame
from pipeline.grid_lowres import read_low_res_hw
from pipeline.masks import (
    ImageMasks,
    best_of,
    encode_rle_transposed,
    rle_boxes_and_areas,
    stability_score,
    upscale_logits,
)
from pipeline.models.fast_decoder import DecodeHints
from pipeline.predictor import EncodedImages, predict
from pipeline.prompts import PromptBatch, make_prompts
from pipeline.runtime.base import SamRuntime
from pipeline.timing import StageTimer

# Masks upsampled at once: bounds memory for very large originals. A GPU takes more per call, since each call costs
# kernel launches and host round trips.
UPSCALE_CHUNK = {"cpu": 8, "cuda": 64}


def segment_boxes(
    runtime: SamRuntime,
    encoded: EncodedImages,
    boxes_xyxy: Sequence[np.ndarray],
    cfg: BoxesConfig,
    timer: StageTimer | None = None,
) -> list[ImageMasks]:
    """``boxes_xyxy[i]`` [K_i,4] in original pixels of image i → one :class:`ImageMasks` per image.

    ``prompt_index`` of each kept mask is the row of its box in ``boxes_xyxy[i]``. ``timer`` receives the seconds
    of the prompts, decode_masks and rle (upsampling, stability, RLE) stages.
    """
    timer = timer or StageTimer.off()
    if len(boxes_xyxy) != len(encoded.original_hw):
        raise ValueError(f"got boxes for {len(boxes_xyxy)} images but {len(encoded.original_hw)} encoded images")
    image_index = np.concatenate([np.full(len(b), i, np.int64) for i, b in enumerate(boxes_xyxy)] or [[]])
    if len(image_index) == 0:
        return [ImageMasks.empty() for _ in boxes_xyxy]
    with timer("prompts"):
        prompts, hints = _prompts(encoded, boxes_xyxy, image_index, cfg)
    with timer("decode_masks"):
        pred = predict(runtime, encoded, prompts, multimask_output=cfg.multimask, hints=hints)
        logits, iou = best_of(pred.low_res_logits, pred.iou_predictions)  # [P,256,256], [P]
    with timer("rle"):
        kept = _kept_masks(logits, iou, encoded.original_hw[image_index], cfg)
        starts = np.searchsorted(image_index, np.arange(len(boxes_xyxy)))
        return [kept.of_prompts(start, len(b)) for start, b in zip(starts, boxes_xyxy, strict=True)]


def _prompts(
    encoded: EncodedImages, boxes_xyxy: Sequence[np.ndarray], image_index: np.ndarray, cfg: BoxesConfig
) -> tuple[PromptBatch, DecodeHints]:
    """One box prompt per box (1024 frame) and the hints: which tokens, IoU and low-res window are read."""
    frame_boxes = np.concatenate(
        [
            boxes_to_prompt_frame(np.asarray(b, np.float32).reshape(-1, 4), tuple(encoded.original_hw[i]))
            for i, b in enumerate(boxes_xyxy)
        ]
    )
    hints = DecodeHints(
        mask_tokens=(1, 2, 3) if cfg.multimask else (0,),
        min_iou=cfg.pred_iou_thresh if cfg.pred_iou_thresh > 0 else None,
        low_res_hw=np.array([read_low_res_hw(tuple(encoded.original_hw[i])) for i in image_index], np.int64),
    )
    return make_prompts(image_index, boxes=frame_boxes), hints


@dataclass(frozen=True)
class _KeptMasks:
    """The masks kept of P prompts, K of them, in prompt order."""

    prompt: np.ndarray
    """[K] int64, the prompt of each mask (ascending)."""
    rles: list[dict]
    boxes_xyxy: np.ndarray
    areas: np.ndarray
    predicted_iou: np.ndarray
    stability_score: np.ndarray

    def of_prompts(self, start: int, count: int) -> ImageMasks:
        """The masks of prompts ``start .. start + count - 1`` (one image's), ``prompt_index`` counted from start."""
        lo, hi = np.searchsorted(self.prompt, [start, start + count])
        if lo == hi:
            return ImageMasks.empty()
        predicted = self.predicted_iou[lo:hi]
        return ImageMasks(
            rles=self.rles[lo:hi],
            boxes_xyxy=self.boxes_xyxy[lo:hi],
            areas=self.areas[lo:hi],
            predicted_iou=predicted,
            stability_score=self.stability_score[lo:hi],
            scores=predicted,
            prompt_index=self.prompt[lo:hi] - start,
        )


def _kept_masks(low_res: torch.Tensor, iou: torch.Tensor, original_hw: np.ndarray, cfg: BoxesConfig) -> _KeptMasks:
    """Low-res logits [P,256,256], IoU [P] and each prompt's original (h, w) [P,2] → the masks passing ``cfg``'s
    thresholds at their original sizes. Prompts of images of one size are upsampled together, across images."""
    predicted = iou.float().cpu().numpy()
    candidates = np.flatnonzero(predicted > cfg.pred_iou_thresh) if cfg.pred_iou_thresh > 0 else np.arange(len(iou))
    chunk = UPSCALE_CHUNK.get(low_res.device.type, UPSCALE_CHUNK["cpu"])
    prompts, rles, stability = [], [], []
    for h, w in np.unique(original_hw[candidates], axis=0).tolist():
        same_size = candidates[(original_hw[candidates] == (h, w)).all(axis=1)]
        for start in range(0, len(same_size), chunk):
            rows = same_size[start : start + chunk]
            # Upsampled transposed ([k,w,h]): that memory is the column-major layout COCO RLE reads, so no copy.
            low_res_t = low_res[torch.as_tensor(rows, device=low_res.device)].transpose(-1, -2)
            full_t = upscale_logits(low_res_t, (w, h))  # [k,w,h]
            score = stability_score(full_t, cfg.stability_score_offset).cpu().numpy()
            ok = score >= cfg.stability_score_thresh
            masks_t = full_t[torch.as_tensor(ok, device=full_t.device)] > 0
            rles.extend(encode_rle_transposed(masks_t.cpu().numpy()))
            prompts.append(rows[ok])
            stability.append(score[ok])
    prompt = np.concatenate(prompts) if prompts else np.zeros(0, np.int64)
    order = np.argsort(prompt, kind="stable")
    boxes, areas = rle_boxes_and_areas(rles)
    return _KeptMasks(
        prompt=prompt[order].astype(np.int64),
        rles=[rles[i] for i in order],
        boxes_xyxy=boxes[order].astype(np.float32),
        areas=areas[order],
        predicted_iou=predicted[prompt[order]].astype(np.float32),
        stability_score=(np.concatenate(stability) if stability else np.zeros(0))[order].astype(np.float32),
    )
