"""Image and coordinate geometry of the official EfficientViT-SAM predictor (pure numpy / PIL / torch).

Frames: *original* pixels (h, w) of the decoded image; the *encoder* frame, long side S (512 or 1024), zero
padded bottom/right to S×S; the *prompt* frame, long side 1024, in which prompts, the decoder's mask frame and
the prompt encoder's normalisation live (also for L models whose encoder sees 512).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

PROMPT_FRAME = 1024
PIXEL_MEAN = tuple(v / 255 for v in (123.675, 116.28, 103.53))
PIXEL_STD = tuple(v / 255 for v in (58.395, 57.12, 57.375))


def preprocess_shape(h: int, w: int, long_side: int) -> tuple[int, int]:
    """(h, w) scaled so the long side is ``long_side``, rounded half up (``int(x + 0.5)`` in float64).

    A side that would round to 0 (e.g. 1×3000) is kept at 1 px, where the official code would fail.
    """
    scale = long_side * 1.0 / max(h, w)
    return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))


def resize_longest_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """HWC uint8 RGB → HWC uint8 with long side ``long_side`` (PIL bilinear, antialiased); unchanged if already so."""
    h, w = image.shape[:2]
    if max(h, w) == long_side:
        return image
    new_h, new_w = preprocess_shape(h, w, long_side)
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))


def normalize_and_pad(images: torch.Tensor, input_hw: torch.Tensor, size: int) -> torch.Tensor:
    """Normalise a batch of resized images and zero the padding, as the official ``transform`` does.

    Args:
        images: [B,S,S,3] uint8, each resized image in its top-left corner (anything in the padding is ignored).
        input_hw: [B,2] int, (h, w) of each resized image inside the S×S canvas.
        size: S.
    Returns:
        [B,3,S,S] float32 on the images' device: (x/255 - mean)/std inside, exactly 0 in the bottom/right padding.
    """
    if images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise ValueError(f"images must be [B,{size},{size},3] uint8, got {tuple(images.shape)}")
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(PIXEL_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    rows = torch.arange(size, device=x.device)
    hw = input_hw.to(x.device)
    valid = (rows.view(1, size, 1) < hw[:, 0].view(-1, 1, 1)) & (rows.view(1, 1, size) < hw[:, 1].view(-1, 1, 1))
    # Contiguous NCHW: a channels-last view would make conv kernels round differently from the official path.
    return torch.where(valid.unsqueeze(1), x, torch.zeros((), device=x.device)).contiguous()


def to_prompt_frame(coords: np.ndarray, original_hw: tuple[int, int]) -> np.ndarray:
    """(..., 2) x,y in original pixels → the 1024 prompt frame (per-axis scale, as ``apply_coords``)."""
    h, w = original_hw
    new_h, new_w = preprocess_shape(h, w, PROMPT_FRAME)
    out = np.asarray(coords, dtype=np.float64).copy()
    out[..., 0] = out[..., 0] * (new_w / w)
    out[..., 1] = out[..., 1] * (new_h / h)
    return out.astype(np.float32)


def boxes_to_prompt_frame(boxes_xyxy: np.ndarray, original_hw: tuple[int, int]) -> np.ndarray:
    """[N,4] XYXY in original pixels → [N,4] in the 1024 prompt frame."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 2, 2)
    return to_prompt_frame(boxes, original_hw).reshape(-1, 4)


def from_prompt_frame(coords: np.ndarray, original_hw: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`to_prompt_frame`."""
    h, w = original_hw
    new_h, new_w = preprocess_shape(h, w, PROMPT_FRAME)
    out = np.asarray(coords, dtype=np.float64).copy()
    out[..., 0] = out[..., 0] * (w / new_w)
    out[..., 1] = out[..., 1] * (h / new_h)
    return out
