"""Validation of an AutoPPN head: recall of ground-truth masks at a mask IoU by the masks its prompts produce.

The masks come from the SAM mask decoder on the head's prompts with no filtering (``mask_source=decoder``, what
labeling would produce before its thresholds), or from the regressed boxes themselves (``box``: a mask = its box,
for encoders whose mask decoder is untrained, like the tiny test models). A ground-truth mask counts as recalled when
some predicted mask of its image has IoU >= ``iou`` with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from pycocotools import mask as mask_utils

from pipeline.config.sections import AutoPPNConfig
from pipeline.prompts.autoppn.model import AutoPPN
from pipeline.prompts.autoppn.proposals import propose
from pipeline.prompts.autoppn.segment import segment_autoppn
from pipeline.runtime.base import SamRuntime
from pipeline.segment.geometry import from_prompt_frame
from pipeline.train.autoppn.config import ValConfig
from pipeline.train.autoppn.data import Sample

DECODER_CHUNK = 64


def predicted_masks(
    head: AutoPPN, embeddings: torch.Tensor, samples: Sequence[Sample], cfg: ValConfig, runtime: SamRuntime | None
) -> list[list[dict]]:
    """Per image, the masks (COCO RLEs at the image size) of the head's prompts."""
    original_hw = np.array([s.image_hw for s in samples], np.int64).reshape(-1, 2)
    if cfg.mask_source == "decoder":
        if runtime is None:
            raise ValueError("val.mask_source=decoder needs the SAM model")
        unfiltered = AutoPPNConfig(
            prompt_mode=cfg.prompt_mode,
            score_thresh=cfg.score_thresh,
            nms_radius=cfg.nms_radius,
            top_n=cfg.top_n,
            pred_iou_thresh=0.0,
            stability_score_thresh=0.0,
            box_nms_thresh=1.0,
            max_mask_area_frac=1.0,
        )
        results = segment_autoppn(runtime, head, embeddings.to(runtime.device), original_hw, unfiltered, DECODER_CHUNK)
        return [[{"size": r["size"], "counts": r["counts"].encode()} for r in g.rles] for g in results]
    proposals = propose(
        head, embeddings, original_hw, score_thresh=cfg.score_thresh, nms_radius=cfg.nms_radius, top_n=cfg.top_n
    )
    out = []
    for i, (h, w) in enumerate(original_hw.tolist()):
        boxes = from_prompt_frame(proposals.boxes[proposals.image_index == i].reshape(-1, 2, 2), (h, w)).reshape(-1, 4)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        out.append(mask_utils.frPyObjects(xywh, h, w) if len(xywh) else [])
    return out


def recalled(predicted: Sequence[dict], truth: Sequence[dict], iou: float) -> int:
    """How many ground-truth masks (RLEs) some predicted mask matches at IoU >= ``iou``."""
    if not truth or not predicted:
        return 0
    truth = [{"size": t["size"], "counts": _bytes(t["counts"])} for t in truth]
    ious = np.asarray(mask_utils.iou(list(predicted), truth, [0] * len(truth)))  # [P,T]
    return int((ious.reshape(len(predicted), len(truth)).max(axis=0) >= iou).sum())


def evaluate(
    head: AutoPPN,
    batches: Iterable[tuple[list[Sample], torch.Tensor]],
    cfg: ValConfig,
    runtime: SamRuntime | None,
) -> dict[str, float]:
    """Recall over all validation batches, with prompts and ground-truth masks per image."""
    head.eval()
    matched = total = prompts = images = 0
    for samples, embeddings in batches:
        masks = predicted_masks(head, embeddings, samples, cfg, runtime)
        for sample, pred in zip(samples, masks, strict=True):
            matched += recalled(pred, sample.masks, cfg.iou)
            total += len(sample.masks)
            prompts += len(pred)
            images += 1
    return {
        "recall": matched / total if total else 0.0,
        "gt_masks": float(total),
        "masks_per_image": prompts / images if images else 0.0,
        "images": float(images),
    }


def _bytes(counts: str | bytes) -> bytes:
    return counts.encode("ascii") if isinstance(counts, str) else counts
