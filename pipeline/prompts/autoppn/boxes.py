"""Box regression encoding of AutoPPN (pure numpy / torch), in the 1024 prompt frame.

Each output cell (i, j) of stride ``s`` has its centre at ``(s·j + s/2, s·i + s/2)``. A box is encoded at a cell as
``t = log(1 + ltrb / s)``, where ``ltrb`` are the distances from the centre to the box's left, top, right and bottom
sides (clamped at 0, so a centre outside the box encodes the nearest side as 0). Decoding is
``ltrb = s·(exp(t) − 1)``, clamped at 0, then clipped to the image.
"""

from __future__ import annotations

import numpy as np
import torch


def cell_centres(grid_hw: tuple[int, int], stride: int) -> np.ndarray:
    """[H,W,2] float32 (x, y) centres of the output cells in the 1024 frame."""
    h, w = grid_hw
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([xs * stride + stride / 2, ys * stride + stride / 2], axis=-1).astype(np.float32)


def encode_ltrb(boxes_xyxy: np.ndarray, centres_xy: np.ndarray, stride: int) -> np.ndarray:
    """Boxes [...,4] XYXY and centres [...,2] (broadcastable) → t [...,4] float32."""
    boxes = np.asarray(boxes_xyxy, np.float64)
    centres = np.asarray(centres_xy, np.float64)
    ltrb = np.stack(
        [
            centres[..., 0] - boxes[..., 0],
            centres[..., 1] - boxes[..., 1],
            boxes[..., 2] - centres[..., 0],
            boxes[..., 3] - centres[..., 1],
        ],
        axis=-1,
    )
    return np.log1p(np.maximum(ltrb, 0.0) / stride).astype(np.float32)


def decode_ltrb(t: torch.Tensor, centres_xy: torch.Tensor, stride: int, clip_hw: tuple[int, int]) -> torch.Tensor:
    """t [...,4] and centres [...,2] → boxes [...,4] XYXY in the 1024 frame, clipped to ``clip_hw`` = (h, w)."""
    ltrb = (torch.expm1(t.float()) * stride).clamp(min=0.0)
    x1 = (centres_xy[..., 0] - ltrb[..., 0]).clamp(0.0, clip_hw[1])
    y1 = (centres_xy[..., 1] - ltrb[..., 1]).clamp(0.0, clip_hw[0])
    x2 = (centres_xy[..., 0] + ltrb[..., 2]).clamp(0.0, clip_hw[1])
    y2 = (centres_xy[..., 1] + ltrb[..., 3]).clamp(0.0, clip_hw[0])
    return torch.stack([x1, y1, x2, y2], dim=-1)
