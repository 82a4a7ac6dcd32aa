"""Agreement of our masks with the reference's, on the same images (COCO RLE on both sides, pycocotools IoU)."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

MATCH_IOU = 0.9


def _stats(values: np.ndarray) -> dict[str, float | int | None]:
    if len(values) == 0:
        return {"n": 0, "mean": None, "min": None, "p5": None}
    return {
        "n": int(len(values)),
        "mean": round(float(values.mean()), 6),
        "min": round(float(values.min()), 6),
        "p5": round(float(np.percentile(values, 5)), 6),
    }


def box_agreement(ours: list[list[dict | None]], reference: list[list[dict]]) -> dict:
    """Per box, mask IoU of our mask with the reference's best-of-3 mask (a box we dropped counts as IoU 0)."""
    ious = []
    for our_masks, ref_masks in zip(ours, reference, strict=True):
        for mine, theirs in zip(our_masks, ref_masks, strict=True):
            ious.append(0.0 if mine is None else float(mask_utils.iou([mine], [theirs], [0])[0, 0]))
    values = np.asarray(ious)
    return {
        "mask_iou": _stats(values),
        "fraction_iou_ge_0.99": round(float((values >= 0.99).mean()), 6) if len(values) else None,
    }


def grid_agreement(ours: list[list[dict]], reference: list[list[dict]]) -> dict:
    """Reference masks that have one of our masks (same image) at mask IoU >= 0.9, and the mask counts.

    The agreement bar: at least 95% of the reference's masks matched (``fraction_matched``).
    """
    best: list[float] = []
    for our_masks, ref_masks in zip(ours, reference, strict=True):
        if not ref_masks:
            continue
        if not our_masks:
            best.extend([0.0] * len(ref_masks))
            continue
        iou = mask_utils.iou(list(ref_masks), list(our_masks), [0] * len(our_masks))  # [ref, ours]
        best.extend(np.asarray(iou).max(axis=1).tolist())
    values = np.asarray(best)
    total = sum(len(r) for r in reference)
    return {
        "reference_masks": total,
        "our_masks": sum(len(o) for o in ours),
        "matched_at_iou_0.9": int((values >= MATCH_IOU).sum()),
        "fraction_matched": round(float((values >= MATCH_IOU).mean()), 6) if total else None,
        "best_iou": _stats(values),
    }
