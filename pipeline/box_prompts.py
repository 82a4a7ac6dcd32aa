"""Masks for boxes a user already has: one decoder prompt per box, prompts of all images in shared decoder calls.

The mask per box follows the official box protocol: ``multimask_output=True`` and the mask with the highest
predicted IoU (or the single-mask token when ``multimask`` is off), upsampled to the original size, ``logits > 0``.
The stability score is computed on those full-size logits. Boxes failing the thresholds are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

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

UPSCALE_CHUNK = 8  # masks upsampled at once: bounds memory for very large originals


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
    results = []
    with timer("rle"):
        for i in range(len(boxes_xyxy)):
            rows = np.flatnonzero(image_index == i)
            results.append(_image_masks(logits[rows], iou[rows], tuple(encoded.original_hw[i]), cfg))
    return results


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


def _image_masks(
    low_res: torch.Tensor, iou: torch.Tensor, original_hw: tuple[int, int], cfg: BoxesConfig
) -> ImageMasks:
    keep = (
        np.flatnonzero((iou > cfg.pred_iou_thresh).cpu().numpy()) if cfg.pred_iou_thresh > 0 else np.arange(len(iou))
    )
    rles, boxes, areas, stability, kept = [], [], [], [], []
    h, w = original_hw
    for start in range(0, len(keep), UPSCALE_CHUNK):
        rows = keep[start : start + UPSCALE_CHUNK]
        # Upsampled transposed ([k,w,h]): that memory is the column-major layout COCO RLE reads, so no copy is made.
        low_res_t = low_res[torch.as_tensor(rows, device=low_res.device)].transpose(-1, -2)
        full_t = upscale_logits(low_res_t, (w, h))  # [k,w,h]
        score = stability_score(full_t, cfg.stability_score_offset)
        ok = (score >= cfg.stability_score_thresh).cpu().numpy()
        masks_t = full_t[torch.as_tensor(ok, device=full_t.device)] > 0
        stability.append(score.cpu().numpy()[ok])
        chunk_rles = encode_rle_transposed(masks_t.cpu().numpy())
        chunk_boxes, chunk_areas = rle_boxes_and_areas(chunk_rles)
        rles.extend(chunk_rles)
        boxes.append(chunk_boxes)
        areas.append(chunk_areas)
        kept.append(rows[ok])
    if not kept:
        return ImageMasks.empty()
    kept_rows = np.concatenate(kept)
    predicted = iou.float().cpu().numpy()[kept_rows]
    return ImageMasks(
        rles=rles,
        boxes_xyxy=np.concatenate(boxes).astype(np.float32),
        areas=np.concatenate(areas),
        predicted_iou=predicted.astype(np.float32),
        stability_score=np.concatenate(stability).astype(np.float32),
        scores=predicted.astype(np.float32),
        prompt_index=kept_rows.astype(np.int64),
    )
