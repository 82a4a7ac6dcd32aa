"""AutoPPN losses (torch): hard-mined MSE on the heatmaps and smooth-L1 on the box encodings.

``heat_loss``: per image, every valid cell with a positive target plus the hardest negatives (target 0, ranked by
the predicted value), ``k = max(neg_ratio · #pos, min_neg)`` of them; squared errors summed over the selected cells
of the batch and divided by their number. ``box_loss``: smooth-L1 (β = 1/9) on ``t`` at valid cells whose heat target
is >= 0.5, weighted by that target and normalised by the sum of the weights.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

BOX_BETA = 1.0 / 9.0
BOX_MIN_HEAT = 0.5


def heat_loss(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, neg_ratio: float = 3.0, min_neg: int = 64
) -> torch.Tensor:
    """pred, target [B,G,H,W]; valid [B,H,W] bool → scalar."""
    valid = valid[:, None].expand_as(target)
    sq = (pred - target) ** 2
    total, count = pred.new_zeros(()), 0
    for i in range(len(pred)):
        pos = (target[i] > 0) & valid[i]
        neg = (target[i] == 0) & valid[i]
        n_pos = int(pos.sum())
        k = min(int(neg.sum()), max(int(neg_ratio * n_pos), min_neg))
        hardness = torch.where(neg, pred[i].detach(), torch.full_like(pred[i], -1.0)).flatten()
        hard = torch.topk(hardness, k).indices if k > 0 else hardness.new_zeros(0, dtype=torch.long)
        total = total + sq[i][pos].sum() + sq[i].flatten()[hard].sum()
        count += n_pos + k
    return total / max(count, 1)


def box_loss(
    pred_t: torch.Tensor, target_t: torch.Tensor, target_heat: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """pred_t, target_t [B,G,4,H,W]; target_heat [B,G,H,W]; valid [B,H,W] → scalar."""
    weight = torch.where((target_heat >= BOX_MIN_HEAT) & valid[:, None], target_heat, torch.zeros_like(target_heat))
    per_cell = F.smooth_l1_loss(pred_t, target_t, beta=BOX_BETA, reduction="none").sum(dim=2)  # [B,G,H,W]
    return (per_cell * weight).sum() / weight.sum().clamp(min=1e-6)
