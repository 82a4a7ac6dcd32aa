"""JPEG decoding inside the segment actor, on its device (``decode.device: cuda``): nvJPEG through torchvision,
all of a batch's JPEGs in one call, then the resize to the encoder's input on the device.

The decode task has already read the header, checked the limits and set ``input_h`` / ``input_w`` and the original
size, and left the file in ``image_jpeg``. A file the device decoder rejects (or whose decoded size differs from its
header) is decoded by the CPU decode path instead, so it gets the same pixels or the same error row as with
``decode.device: cpu``. Pixels: torchvision's CPU decoder gives PIL's pixels exactly; nvJPEG and the device's
antialiased bilinear resize may differ from PIL by a few levels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_jpeg

from operators.decode import STAGE, decode_one
from operators.rows import mark_error
from pipeline import schema as col


def decode_jpegs_on_device(
    batch: dict[str, np.ndarray], rows: list[int], errors: dict[str, np.ndarray], device: torch.device, max_pixels: int
) -> dict[int, torch.Tensor]:
    """The rows' ``image_jpeg`` decoded and resized on ``device``: row → [input_h, input_w, 3] uint8 there.

    Rows whose file fails on the CPU too become error rows of stage ``decode`` in ``errors``.
    """
    jpegs = {i: batch[col.IMAGE_JPEG][i] for i in rows if batch[col.IMAGE_JPEG][i]}
    if not jpegs:
        return {}
    data = [torch.frombuffer(bytearray(raw), dtype=torch.uint8) for raw in jpegs.values()]
    try:
        decoded = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:  # one bad file fails the batched call: then one at a time
        decoded = [_decode_or_none(d, device) for d in data]
    images = {}
    for i, image in zip(jpegs, decoded, strict=True):
        original_hw = (int(batch[col.IMAGE_HEIGHT][i]), int(batch[col.IMAGE_WIDTH][i]))
        input_hw = (int(batch[col.INPUT_H][i]), int(batch[col.INPUT_W][i]))
        if image is not None and tuple(image.shape[1:]) == original_hw:
            images[i] = _resize(image, input_hw)
            continue
        fallback = _on_cpu(jpegs[i], max_pixels, input_hw, device)
        if isinstance(fallback, tuple):
            mark_error(errors, i, STAGE, *fallback)
        else:
            images[i] = fallback
    return images


def _decode_or_none(data: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return None


def _resize(image: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
    """[3,H,W] uint8 → [h,w,3] uint8, antialiased bilinear as PIL's resize."""
    if tuple(image.shape[1:]) != input_hw:
        x = F.interpolate(image[None].float(), input_hw, mode="bilinear", antialias=True, align_corners=False)
        image = x[0].round().clamp(0, 255).to(torch.uint8)
    return image.permute(1, 2, 0).contiguous()


def _on_cpu(
    raw: bytes, max_pixels: int, input_hw: tuple[int, int], device: torch.device
) -> torch.Tensor | tuple[str, str]:
    """The CPU decode path's image [h,w,3] on ``device``, or its (error type, message)."""
    result = decode_one(raw, max_pixels, max(input_hw), keep_original=False, detect_side=None)
    if result.error is not None:
        return result.error
    pixels = np.frombuffer(result.rgb, np.uint8).reshape(*result.input_hw, 3)
    return torch.from_numpy(pixels.copy()).to(device)
