"""Grid candidates scored, filtered and de-duplicated on the decoder's 256×256 low-res logits (pure torch / numpy).

The low-res grid covers the 1024 prompt frame: low-res pixel j spans prompt-frame pixels [4j, 4j+4). Only the part
that covers the view's resized image is valid (``valid_low_res_hw``); the rest is padding and is ignored. Boxes
found here are approximate (one low-res pixel is 4·w/in_w original pixels); they drive NMS and the crop-edge test,
while the final boxes come from the full-resolution masks (:mod:`pipeline.segment.grid`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from segment_anything.utils.amg import is_box_near_crop_edge
from torchvision.ops import batched_nms

from pipeline.config.sections import GridConfig
from pipeline.segment.geometry import PROMPT_FRAME, preprocess_shape
from pipeline.segment.masks import MASK_THRESHOLD, masks_to_boxes_xyxy, stability_score, upscale_logits

LOW_RES = 256
LOW_RES_STRIDE = PROMPT_FRAME // LOW_RES
# Full-resolution logits held at once in exact mode (256 MB of float32).
FULL_RES_PIXELS = 1 << 26


@dataclass(frozen=True)
class Candidates:
    """N masks that passed the low-res filters, with what the later steps need.

    Attributes:
        logits: [N,256,256] float32 low-res logits, on the runtime's device.
        iou: [N] float32 predicted IoU (same device).
        stability: [N] float32 stability score on the low-res logits (same device).
        boxes: [N,4] float32 XYXY in original image pixels, from the low-res mask (same device).
        keys: [N] int64 numpy, prompt index * 3 + token: a unique, stable order within one call.
        views: [N] int64 numpy, the view (image or crop) each mask was decoded from.
    """

    logits: torch.Tensor
    iou: torch.Tensor
    stability: torch.Tensor
    boxes: torch.Tensor
    keys: np.ndarray
    views: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, index: np.ndarray) -> Candidates:
        """The candidates at integer positions ``index`` [M], in that order."""
        rows = torch.as_tensor(index, dtype=torch.long, device=self.logits.device)
        return Candidates(
            self.logits[rows],
            self.iou[rows],
            self.stability[rows],
            self.boxes[rows],
            self.keys[index],
            self.views[index],
        )

    @staticmethod
    def cat(parts: list[Candidates]) -> Candidates:
        return Candidates(
            torch.cat([p.logits for p in parts]),
            torch.cat([p.iou for p in parts]),
            torch.cat([p.stability for p in parts]),
            torch.cat([p.boxes for p in parts]),
            np.concatenate([p.keys for p in parts]),
            np.concatenate([p.views for p in parts]),
        )


def valid_low_res_hw(view_hw: tuple[int, int]) -> tuple[int, int]:
    """Rows and columns of the low-res grid that overlap the resized view (the rest covers padding)."""
    in_h, in_w = preprocess_shape(*view_hw, PROMPT_FRAME)
    return math.ceil(in_h / LOW_RES_STRIDE), math.ceil(in_w / LOW_RES_STRIDE)


def read_low_res_hw(view_hw: tuple[int, int]) -> tuple[int, int]:
    """Rows and columns of the low-res logits that filtering and upsampling read: the valid ones plus one, which
    bilinear upsampling (``align_corners=False``) blends into the last valid rows and columns."""
    vh, vw = valid_low_res_hw(view_hw)
    return min(LOW_RES, vh + 1), min(LOW_RES, vw + 1)


def low_res_boxes(masks: torch.Tensor, view_hw: tuple[int, int]) -> torch.Tensor:
    """Boxes of low-res masks in view pixels, with the inclusive convention of full-resolution mask boxes.

    Args:
        masks: [N,h,w] bool, the valid part of the low-res masks (``valid_low_res_hw``).
        view_hw: (h, w) of the view in original pixels.
    Returns:
        [N,4] float32 XYXY: the extent of the low-res pixels in view pixels, right/bottom minus one pixel (so a
        mask filling the view gives [0, 0, w-1, h-1]); zeros for empty masks.
    """
    in_h, in_w = preprocess_shape(*view_hw, PROMPT_FRAME)
    scale = masks.new_tensor([view_hw[1] / in_w, view_hw[0] / in_h], dtype=torch.float32)
    limit = masks.new_tensor([in_w, in_h], dtype=torch.float32)
    cells = masks_to_boxes_xyxy(masks).float()  # [N,4] inclusive low-res pixels
    start = cells[:, :2] * LOW_RES_STRIDE * scale
    end = torch.minimum((cells[:, 2:] + 1) * LOW_RES_STRIDE, limit) * scale
    boxes = torch.cat([start, torch.maximum(end - 1, start)], dim=1)
    empty = ~masks.flatten(1).any(dim=1)
    return torch.where(empty.unsqueeze(1), torch.zeros_like(boxes), boxes)


def filter_low_res(
    logits: torch.Tensor,
    iou: torch.Tensor,
    first_key: int,
    view: int,
    crop_box: tuple[int, int, int, int],
    image_hw: tuple[int, int],
    cfg: GridConfig,
) -> Candidates:
    """The automatic mask generator's per-batch filters, on the low-res logits of n prompts of one view.

    Args:
        logits: [n,3,256,256] multimask low-res logits. iou: [n,3] predicted IoU.
        first_key: prompt index of the first prompt times 3 (keys are prompt index * 3 + token).
        view: index of the view the prompts belong to. crop_box: its XYXY box in original image pixels.
        image_hw: (h, w) of the original image.
    Returns:
        The masks with predicted IoU > ``pred_iou_thresh``, stability >= ``stability_score_thresh`` (each test
        skipped when its threshold is <= 0, as upstream), covering at most ``max_mask_area_frac`` of the image,
        and not near an inner crop edge. With ``cfg.exact``, stability and boxes come from the logits upsampled
        to the view's resolution, as upstream (:func:`_filter_full_res`).
    """
    x0, y0, x1, y1 = crop_box
    flat_logits = logits.flatten(0, 1)  # [3n,256,256]
    flat_iou = iou.flatten()
    rows = torch.arange(len(flat_iou), device=flat_iou.device)
    if cfg.pred_iou_thresh > 0.0:
        rows = rows[flat_iou > cfg.pred_iou_thresh]
    select = _filter_full_res if cfg.exact else _filter_on_low_res
    rows, stability, boxes = select(flat_logits, rows, crop_box, image_hw, cfg)
    keys = first_key + rows.cpu().numpy().astype(np.int64)
    offset = boxes.new_tensor([x0, y0, x0, y0])
    return Candidates(flat_logits[rows], flat_iou[rows], stability, boxes + offset, keys, np.full(len(keys), view))


def _filter_on_low_res(
    flat_logits: torch.Tensor,
    rows: torch.Tensor,
    crop_box: tuple[int, int, int, int],
    image_hw: tuple[int, int],
    cfg: GridConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The filters on the low-res logits ``rows`` of ``flat_logits`` [3n,256,256]: the kept rows, their stability
    scores and their boxes (XYXY view pixels, from the low-res masks)."""
    x0, y0, x1, y1 = crop_box
    vh, vw = valid_low_res_hw((y1 - y0, x1 - x0))
    valid = flat_logits[rows, :vh, :vw]  # [M,vh,vw]
    stability = stability_score(valid, cfg.stability_score_offset, MASK_THRESHOLD)
    keep = torch.ones_like(stability, dtype=torch.bool)
    if cfg.stability_score_thresh > 0.0:
        keep &= stability >= cfg.stability_score_thresh
    if cfg.max_mask_area_frac < 1.0:
        covered = (valid > MASK_THRESHOLD).sum((1, 2)) / (vh * vw)
        keep &= covered * ((x1 - x0) * (y1 - y0) / (image_hw[0] * image_hw[1])) <= cfg.max_mask_area_frac
    rows, valid, stability = rows[keep], valid[keep], stability[keep]
    boxes = low_res_boxes(valid > MASK_THRESHOLD, (y1 - y0, x1 - x0))
    near_edge = is_box_near_crop_edge(boxes, list(crop_box), [0, 0, image_hw[1], image_hw[0]])
    return rows[~near_edge], stability[~near_edge], boxes[~near_edge]


def _filter_full_res(
    flat_logits: torch.Tensor,
    rows: torch.Tensor,
    crop_box: tuple[int, int, int, int],
    image_hw: tuple[int, int],
    cfg: GridConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Upstream's filters on the logits ``rows`` of ``flat_logits`` upsampled to the view's size, a bounded number at
    a time: the kept rows, their stability scores and their boxes (XYXY view pixels, from the full masks).

    Like upstream, nothing is estimated before NMS: ``max_mask_area_frac`` is only checked on the final masks."""
    x0, y0, x1, y1 = crop_box
    view_hw = (y1 - y0, x1 - x0)
    step = max(1, FULL_RES_PIXELS // (view_hw[0] * view_hw[1]))
    kept, stabilities, all_boxes = [], [], []
    for start in range(0, len(rows), step):
        part = rows[start : start + step]
        full = upscale_logits(flat_logits[part], view_hw)  # [m,h,w]
        stability = stability_score(full, cfg.stability_score_offset, MASK_THRESHOLD)
        keep = torch.ones_like(stability, dtype=torch.bool)
        if cfg.stability_score_thresh > 0.0:
            keep &= stability >= cfg.stability_score_thresh
        boxes = masks_to_boxes_xyxy(full[keep] > MASK_THRESHOLD).float()
        near_edge = is_box_near_crop_edge(boxes, list(crop_box), [0, 0, image_hw[1], image_hw[0]])
        kept.append(part[keep][~near_edge])
        stabilities.append(stability[keep][~near_edge])
        all_boxes.append(boxes[~near_edge])
    if not kept:  # no rows
        return rows, flat_logits.new_zeros((0,)), flat_logits.new_zeros((0, 4))
    return torch.cat(kept), torch.cat(stabilities), torch.cat(all_boxes)


def stable_order(*keys: np.ndarray) -> np.ndarray:
    """Positions sorted by the given keys, most significant first, ascending (a total order: ties keep position)."""
    return np.lexsort(tuple(reversed(keys)))


def nms_in_order(
    boxes: torch.Tensor, order: np.ndarray, threshold: float, groups: np.ndarray | None = None
) -> np.ndarray:
    """Greedy box NMS that prefers boxes earlier in ``order``; returns the kept positions in that order.

    Args:
        boxes: [N,4] XYXY. order: [N] a permutation, best first. threshold: suppress at box IoU > threshold.
        groups: [N] int, NMS runs within each group separately (default: one group).
    """
    if len(order) == 0:
        return order
    # Distinct scores from the rank make the result independent of how the NMS kernel breaks ties.
    scores = np.empty(len(order), np.float32)
    scores[order] = np.arange(len(order), 0, -1, dtype=np.float32)
    idxs = np.zeros(len(order), np.int64) if groups is None else groups
    keep = batched_nms(
        boxes.float(),
        torch.as_tensor(scores, device=boxes.device),
        torch.as_tensor(idxs, device=boxes.device),
        iou_threshold=threshold,
    )
    return keep.cpu().numpy()
