"""SAM training losses on low-res (256×256) mask logits, padding excluded (pure torch).

Per mask: 20 · BCE (EfficientViT-SAM's code) or 20 · focal (SAM's paper: α 0.25, γ 2) + 1 · Dice, on the decoder's
256×256 logits
against the GT mask area-averaged into that frame (a soft target at boundaries). With 3 outputs only the lowest-loss
output is trained (SAM's ambiguity rule). The IoU head learns the true IoU of every output by MSE (SAM, weight 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from pipeline.segment.geometry import PROMPT_FRAME, preprocess_shape

LOW_RES = 256
SCALE = PROMPT_FRAME // LOW_RES  # low-res pixels are 4×4 pixels of the 1024 frame


@dataclass(frozen=True)
class LossWeights:
    bce: float = 20.0
    """Weight of the pixel loss (BCE or focal)."""
    dice: float = 1.0
    iou: float = 1.0
    focal: bool = False
    """Focal loss (α 0.25, γ 2) instead of BCE: easy background pixels stop dominating a from-scratch model."""


def low_res_targets(masks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """[K,h,w] bool masks of one image → soft targets [K,256,256] and the valid (non-padding) region [256,256].

    The image covers ``preprocess_shape(h, w, 1024) / 4`` low-res pixels (top-left); each mask is area-averaged
    into that extent (``cv2.INTER_AREA``; the identity for a 256 px image) and zero-padded, the inverse of how
    ``upscale_logits`` maps low-res logits onto the image.
    """
    h, w = masks.shape[1:]
    in_h, in_w = preprocess_shape(h, w, PROMPT_FRAME)
    out_h, out_w = max(1, round(in_h / SCALE)), max(1, round(in_w / SCALE))
    target = np.zeros((len(masks), LOW_RES, LOW_RES), np.float32)
    for k, mask in enumerate(masks):
        m = mask.astype(np.float32)
        target[k, :out_h, :out_w] = m if (h, w) == (out_h, out_w) else cv2.resize(m, (out_w, out_h), cv2.INTER_AREA)
    valid = torch.zeros(LOW_RES, LOW_RES, dtype=torch.bool)
    valid[:out_h, :out_w] = True
    return torch.from_numpy(target), valid


def mask_losses(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, focal: bool = False
) -> tuple[torch.Tensor, ...]:
    """Per prompt and output: BCE (or focal) and Dice over the valid pixels.

    logits [P,C,H,W], target/valid [P,H,W] → two [P,C].
    """
    t = target.unsqueeze(1).expand_as(logits)
    v = valid.unsqueeze(1).expand_as(logits).float()
    n = v.sum((-1, -2)).clamp(min=1)
    pixel = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    prob = torch.sigmoid(logits)
    if focal:
        p_t = prob * t + (1 - prob) * (1 - t)
        pixel = pixel * (1 - p_t) ** 2 * (0.25 * t + 0.75 * (1 - t))
    bce = (pixel * v).sum((-1, -2)) / n
    p = prob * v
    dice = 1 - (2 * (p * t).sum((-1, -2)) + 1) / (p.sum((-1, -2)) + (t * v).sum((-1, -2)) + 1)
    return bce, dice


def hard_iou(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` with ``target > 0.5`` over the valid pixels; [P,C,H,W], [P,H,W] → [P,C] (no grad)."""
    with torch.no_grad():
        pred = (logits > 0) & valid.unsqueeze(1)
        gt = (target > 0.5).unsqueeze(1) & valid.unsqueeze(1)
        inter = (pred & gt).sum((-1, -2)).float()
        union = (pred | gt).sum((-1, -2)).float()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))


def sam_loss(
    logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, weights: LossWeights
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss over P prompts with C outputs (1 or 3), and its parts for logging.

    Args:
        logits: [P,C,256,256]. iou_pred: [P,C]. target: [P,256,256] in [0,1]. valid: [P,256,256] bool.
    """
    bce, dice = mask_losses(logits, target, valid, weights.focal)
    per_output = weights.bce * bce + weights.dice * dice  # [P,C]
    best = per_output.argmin(dim=1)  # only the lowest-loss output learns the mask (SAM's ambiguity rule)
    rows = torch.arange(len(best), device=best.device)
    mask_loss = per_output[rows, best].mean()
    true_iou = hard_iou(logits, target, valid)
    iou_loss = F.mse_loss(iou_pred, true_iou)
    total = mask_loss + weights.iou * iou_loss
    parts = {
        "loss": float(total.detach()),
        "bce": float(bce[rows, best].mean().detach()),
        "dice": float(dice[rows, best].mean().detach()),
        "iou_mse": float(iou_loss.detach()),
        "train_iou": float(true_iou[rows, best].mean()),
    }
    return total, parts
