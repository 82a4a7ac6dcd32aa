"""The RITM clicker used by EfficientViT-SAM's point evaluation (pure numpy / cv2).

Each click goes to the error region whose interior point lies farthest from its boundary: FN = GT ∧ ¬pred and
FP = ¬GT ∧ pred are zero-padded by 1 px (so the image border counts as boundary), distance-transformed (L2, exact),
unpadded and masked by the pixels not clicked yet. The click is positive when max-dist(FN) > max-dist(FP), and lands
on the first maximum in row-major order. With an all-zero prediction the first click is the GT mask's centermost
point.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Click:
    y: int
    x: int
    positive: bool


def _distance(region: np.ndarray) -> np.ndarray:
    padded = np.pad(region, 1).astype(np.uint8)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def next_click(gt: np.ndarray, pred: np.ndarray, not_clicked: np.ndarray) -> Click:
    """The next click for boolean ``gt`` and ``pred`` masks [h,w]; ``not_clicked`` [h,w] is False where clicked."""
    if gt.shape != pred.shape or gt.shape != not_clicked.shape:
        raise ValueError(f"gt {gt.shape}, pred {pred.shape} and not_clicked {not_clicked.shape} must have one shape")
    fn = _distance(gt & ~pred) * not_clicked
    fp = _distance(~gt & pred) * not_clicked
    fn_max, fp_max = fn.max(), fp.max()
    positive = bool(fn_max > fp_max)
    dist, best = (fn, fn_max) if positive else (fp, fp_max)
    y, x = np.argwhere(dist == best)[0]
    return Click(int(y), int(x), positive)


class Clicker:
    """Clicks for one GT mask, accumulated; ``not_clicked`` excludes pixels already clicked."""

    def __init__(self, gt: np.ndarray) -> None:
        self.gt = np.asarray(gt, bool)
        self.not_clicked = np.ones_like(self.gt)
        self.clicks: list[Click] = []

    def click(self, pred: np.ndarray) -> Click:
        c = next_click(self.gt, np.asarray(pred, bool), self.not_clicked)
        self.not_clicked[c.y, c.x] = False
        self.clicks.append(c)
        return c

    def points_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """All clicks so far as prompt points: [n,2] float32 (x, y) pixel indices and [n] labels (1 / 0)."""
        coords = np.array([[c.x, c.y] for c in self.clicks], np.float32).reshape(-1, 2)
        labels = np.array([1.0 if c.positive else 0.0 for c in self.clicks], np.float32)
        return coords, labels
