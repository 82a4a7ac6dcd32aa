"""From embeddings to prompts: the head, Point-NMS and box decoding, for a batch of images (torch).

All coordinates are in the 1024 prompt frame; padding cells of each image are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.prompts.autoppn.boxes import decode_ltrb
from pipeline.prompts.autoppn.model import AutoPPN
from pipeline.prompts.autoppn.nms import point_nms
from pipeline.prompts.autoppn.targets import valid_cells
from pipeline.segment.geometry import PROMPT_FRAME, preprocess_shape


@dataclass(frozen=True)
class Proposals:
    """P prompts of a batch of images, grouped by image in order, best first within an image."""

    image_index: np.ndarray
    """[P] int64."""
    points: np.ndarray
    """[P,2] float32 (x, y), the peak cell's centre."""
    boxes: np.ndarray
    """[P,4] float32 XYXY, the box regressed at the peak for its size group."""
    scores: np.ndarray
    """[P] float32 heat value of the peak."""
    groups: np.ndarray
    """[P] int64 size group."""

    def __len__(self) -> int:
        return len(self.image_index)


@torch.inference_mode()
def propose(
    head: AutoPPN,
    embeddings: torch.Tensor,
    original_hw: np.ndarray,
    *,
    score_thresh: float,
    nms_radius: float,
    top_n: int,
) -> Proposals:
    """Prompts for B images from their embeddings [B,256,64,64]; ``original_hw`` [B,2] (h, w)."""
    if len(embeddings) != len(original_hw):
        raise ValueError(f"got {len(embeddings)} embeddings for {len(original_hw)} image sizes")
    param = next(head.parameters())
    heat, t = head(embeddings.to(device=param.device, dtype=param.dtype))  # [B,G,H,W], [B,G,4,H,W]
    return proposals_from_heads(heat, t, original_hw, head.card.out_stride, score_thresh, nms_radius, top_n)


def proposals_from_heads(
    heat: torch.Tensor,
    t: torch.Tensor,
    original_hw: np.ndarray,
    stride: int,
    score_thresh: float,
    nms_radius: float,
    top_n: int,
) -> Proposals:
    """Point-NMS on each image's heatmap and the boxes at the kept peaks."""
    parts = []
    for i, (h, w) in enumerate(np.asarray(original_hw).reshape(-1, 2).tolist()):
        valid = torch.as_tensor(valid_cells((h, w), stride))
        peaks = point_nms(heat[i], score_thresh, nms_radius, top_n, valid)
        g, r, c = (torch.as_tensor(v, device=t.device) for v in (peaks.group, peaks.row, peaks.col))
        centres = torch.stack([c * stride + stride / 2, r * stride + stride / 2], dim=-1).float()  # [N,2]
        boxes = decode_ltrb(t[i, g, :, r, c], centres, stride, preprocess_shape(h, w, PROMPT_FRAME))
        parts.append((np.full(len(peaks), i, np.int64), centres.cpu().numpy(), boxes.cpu().numpy(), peaks))
    if not parts:
        empty = np.zeros(0, np.int64)
        return Proposals(
            empty, np.zeros((0, 2), np.float32), np.zeros((0, 4), np.float32), empty.astype(np.float32), empty
        )
    return Proposals(
        image_index=np.concatenate([p[0] for p in parts]),
        points=np.concatenate([p[1] for p in parts]).astype(np.float32).reshape(-1, 2),
        boxes=np.concatenate([p[2] for p in parts]).astype(np.float32).reshape(-1, 4),
        scores=np.concatenate([p[3].score for p in parts]).astype(np.float32),
        groups=np.concatenate([p[3].group for p in parts]).astype(np.int64),
    )
