"""Point-NMS on AutoPPN heatmaps (pure torch): local maxima, score threshold, radius suppression, top-N.

Per size group: keep cells that equal the maximum of their 3×3 neighbourhood (CenterNet-style) with score
>= ``threshold``, then suppress, greedily by score, every peak within ``radius`` cells (Euclidean) of a kept
one. Groups are never suppressed against each other: a part's centre may coincide with its whole object's.
The groups are then merged and the ``top_n`` best kept. Ties are broken by (group, row, column), so the result
is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

MAX_CANDIDATES = 4096  # per group, before the quadratic radius suppression


@dataclass(frozen=True)
class Peaks:
    """N kept peaks of one image, best first."""

    group: np.ndarray
    """[N] int64 size group."""
    row: np.ndarray
    """[N] int64 cell row."""
    col: np.ndarray
    """[N] int64 cell column."""
    score: np.ndarray
    """[N] float32 heat value."""

    def __len__(self) -> int:
        return len(self.score)


def point_nms(
    heat: torch.Tensor, threshold: float, radius: float, top_n: int, valid: torch.Tensor | None = None
) -> Peaks:
    """Peaks of one image's heatmap [G,H,W]; ``valid`` [H,W] bool masks out padding cells."""
    if heat.ndim != 3:
        raise ValueError(f"heat must be [G,H,W], got {tuple(heat.shape)}")
    if top_n < 1 or radius < 0:
        raise ValueError(f"top_n must be >= 1 and radius >= 0, got {top_n} and {radius}")
    heat = heat.detach().float()
    local_max = heat == F.max_pool2d(heat[None], 3, stride=1, padding=1)[0]
    keep = local_max & (heat >= threshold)
    if valid is not None:
        keep &= valid.to(heat.device)[None]
    parts = [_suppress_group(heat[g], keep[g], g, radius, top_n) for g in range(heat.shape[0])]
    group, row, col, score = (np.concatenate(p) for p in zip(*parts, strict=True))
    order = np.lexsort((col, row, group, -score))[:top_n]
    return Peaks(group[order], row[order], col[order], score[order].astype(np.float32))


def _suppress_group(
    heat: torch.Tensor, keep: torch.Tensor, group: int, radius: float, top_n: int
) -> tuple[np.ndarray, ...]:
    rows, cols = (v.cpu().numpy() for v in torch.nonzero(keep, as_tuple=True))
    scores = heat[keep].cpu().numpy()
    order = np.lexsort((cols, rows, -scores))[: max(MAX_CANDIDATES, top_n)]
    rows, cols, scores = rows[order], cols[order], scores[order]
    if radius > 0 and len(rows) > 1:
        d2 = (rows[:, None] - rows[None, :]) ** 2 + (cols[:, None] - cols[None, :]) ** 2
        near = d2 <= radius * radius
        kept = np.ones(len(rows), bool)
        for i in range(len(rows)):
            if kept[i]:
                kept[i + 1 :] &= ~near[i, i + 1 :]
        rows, cols, scores = rows[kept], cols[kept], scores[kept]
    rows, cols, scores = rows[:top_n], cols[:top_n], scores[:top_n]
    return np.full(len(rows), group, np.int64), rows.astype(np.int64), cols.astype(np.int64), scores
