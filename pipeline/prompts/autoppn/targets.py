"""AutoPPN training targets from ground-truth masks (pure numpy + cv2), in the output grid of the 1024 frame.

For each mask (at the original image size):

1. size group by ``r = max(box w, box h) / max(image h, w)``: small ``r <= a``, medium ``a < r < b``, large
   ``r >= b`` (``card.group_thresholds`` = (a, b), default 0.05 / 0.25);
2. ``D = distanceTransform(pad(mask, 1))`` (L2, 5×5; the 1-px zero pad makes the image border a boundary), computed
   on the mask's bounding box only (the pad ring is background either way, so the result is exact), and
   ``N = D / max(D)``: 1 at the mask's centermost point;
3. ``N`` sampled at the output-cell centres (mapped to original pixels, nearest pixel), and the cell that contains
   ``argmax(D)`` forced to 1, so that small masks always get a peak;
4. per group and cell, the **smallest** mask of that group with a sampled value > 0 owns the cell (masks are painted
   from the largest to the smallest): ``heat[g]`` is its value and the box target its bounding box.

Cells wholly in the padding (outside the resized image) are invalid: zero targets, ignored by the loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from pipeline.prompts.autoppn.boxes import cell_centres, encode_ltrb
from pipeline.prompts.autoppn.model import AutoPPNCard
from pipeline.segment.geometry import PROMPT_FRAME, preprocess_shape

MaskLike = np.ndarray | dict


@dataclass(frozen=True)
class Targets:
    heat: np.ndarray
    """[G,H,W] float32 in [0,1]: the owner's normalised distance transform."""
    box_t: np.ndarray
    """[G,4,H,W] float32: the owner's box encoded at the cell (0 where no owner)."""
    valid: np.ndarray
    """[H,W] bool: cells that overlap the resized image."""


def size_group(box_wh: np.ndarray, image_hw: tuple[int, int], thresholds: tuple[float, float]) -> np.ndarray:
    """[K,2] box (w, h) in pixels → [K] int group: 0 small (r <= a), 1 medium, 2 large (r >= b)."""
    r = np.asarray(box_wh, np.float64).reshape(-1, 2).max(axis=1) / max(image_hw)
    small, large = thresholds
    return np.where(r <= small, 0, np.where(r >= large, 2, 1)).astype(np.int64)


def valid_cells(image_hw: tuple[int, int], stride: int) -> np.ndarray:
    """[H,W] bool: output cells whose top-left corner lies inside the resized image (the rest is padding)."""
    in_h, in_w = preprocess_shape(*image_hw, PROMPT_FRAME)
    cells = PROMPT_FRAME // stride
    rows = np.arange(cells) * stride < in_h
    cols = np.arange(cells) * stride < in_w
    return rows[:, None] & cols[None, :]


def build_targets(masks: Sequence[MaskLike], image_hw: tuple[int, int], card: AutoPPNCard) -> Targets:
    """Targets of one image from its K masks: bool arrays [h,w] or COCO RLE dicts, at ``image_hw`` = (h, w)."""
    stride, g, cells = card.out_stride, card.groups, card.grid_cells
    heat = np.zeros((g, cells, cells), np.float32)
    boxes = np.zeros((g, cells, cells, 4), np.float32)
    areas = [_area(m, image_hw) for m in masks]
    # Largest first: a smaller mask painted later owns the cells they share (smallest-mask rule).
    for k in sorted(range(len(masks)), key=lambda i: (-areas[i], i)):
        if areas[k] == 0:
            continue
        mask = _decode(masks[k], image_hw)
        painted = _mask_cells(mask, image_hw, stride, cells, card.group_thresholds)
        group, rows, cols, values, box = painted
        on = values > 0
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        heat[group, rr[on], cc[on]] = values[on]
        boxes[group, rr[on], cc[on]] = box
    centres = cell_centres((cells, cells), stride)
    box_t = encode_ltrb(boxes, centres[None], stride)  # [G,H,W,4]
    box_t[heat == 0] = 0.0
    valid = valid_cells(image_hw, stride)
    heat[:, ~valid] = 0.0
    return Targets(heat, np.ascontiguousarray(box_t.transpose(0, 3, 1, 2)), valid)


def _area(mask: MaskLike, image_hw: tuple[int, int]) -> int:
    if isinstance(mask, dict):
        return int(mask_utils.area(_rle(mask)))
    if mask.shape != tuple(image_hw):
        raise ValueError(f"mask shape {mask.shape} differs from the image size {tuple(image_hw)}")
    return int(np.count_nonzero(mask))


def _rle(mask: dict) -> dict:
    counts = mask["counts"]
    return {"size": list(mask["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def _decode(mask: MaskLike, image_hw: tuple[int, int]) -> np.ndarray:
    if isinstance(mask, dict):
        if list(mask["size"]) != list(image_hw):
            raise ValueError(f"RLE size {list(mask['size'])} differs from the image size {list(image_hw)}")
        return mask_utils.decode(_rle(mask)).astype(bool)
    return mask.astype(bool, copy=False)


def _mask_cells(
    mask: np.ndarray, image_hw: tuple[int, int], stride: int, cells: int, thresholds: tuple[float, float]
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One mask → (group, cell rows [r], cell cols [c], sampled values [r,c], box XYXY in the 1024 frame)."""
    h, w = image_hw
    in_h, in_w = preprocess_shape(h, w, PROMPT_FRAME)
    ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = ys[0], ys[-1], xs[0], xs[-1]
    crop = np.pad(mask[y0 : y1 + 1, x0 : x1 + 1].astype(np.uint8), 1)
    dist = cv2.distanceTransform(crop, cv2.DIST_L2, 5)[1:-1, 1:-1]
    peak_y, peak_x = np.unravel_index(int(np.argmax(dist)), dist.shape)  # first maximum, row-major
    norm = dist / dist.max()
    # Cell centres in original pixels (nearest pixel) → the cells whose centre falls in the bounding box.
    centre = (np.arange(cells) + 0.5) * stride
    col_px = np.floor(centre * w / in_w).astype(np.int64)
    row_px = np.floor(centre * h / in_h).astype(np.int64)
    peak_col = min(int((x0 + peak_x + 0.5) * in_w / w // stride), cells - 1)
    peak_row = min(int((y0 + peak_y + 0.5) * in_h / h // stride), cells - 1)
    cols = np.union1d(np.flatnonzero((col_px >= x0) & (col_px <= x1)), [peak_col])
    rows = np.union1d(np.flatnonzero((row_px >= y0) & (row_px <= y1)), [peak_row])
    inside_r = (row_px[rows] >= y0) & (row_px[rows] <= y1)
    inside_c = (col_px[cols] >= x0) & (col_px[cols] <= x1)
    values = np.zeros((len(rows), len(cols)), np.float32)
    sub = norm[np.ix_(row_px[rows][inside_r] - y0, col_px[cols][inside_c] - x0)]
    values[np.ix_(inside_r, inside_c)] = sub
    values[np.searchsorted(rows, peak_row), np.searchsorted(cols, peak_col)] = 1.0
    group = int(size_group(np.array([[x1 - x0 + 1, y1 - y0 + 1]]), image_hw, thresholds)[0])
    box = np.array([x0, y0, x1 + 1, y1 + 1], np.float64) * np.array([in_w / w, in_h / h, in_w / w, in_h / h])
    return group, rows, cols, values, box.astype(np.float32)
