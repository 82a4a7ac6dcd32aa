"""Overlay drawing (pure numpy / cv2 / PIL): mask fills and outlines, boxes and category labels on an image."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from pipeline.segment.masks import decode_rle

# Saturated, mutually distinct colours; outlines are drawn opaque in exactly these values.
PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (170, 110, 40),
)
FILL_ALPHA = 0.35


@dataclass(frozen=True)
class OverlayMask:
    rle_counts: str
    """COCO compressed RLE counts at the image's size."""
    bbox_xywh: Sequence[float]
    label: str
    """Text drawn at the box (e.g. ``"star 0.93"``)."""


def decode_image(data: bytes) -> np.ndarray:
    """Compressed image bytes → HWC uint8 RGB, EXIF-oriented (as the labeling job decodes it)."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def draw_overlay(image: np.ndarray, masks: Sequence[OverlayMask], max_side: int = 512) -> np.ndarray:
    """The image (scaled so its long side is at most ``max_side``) with every mask's fill, outline, box and label.

    Masks are drawn in the order given with ``PALETTE`` colours in turn; outlines are 2 px, opaque.
    """
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    canvas = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1 else image.copy()
    canvas = canvas.astype(np.float32)
    outlines = []
    for k, m in enumerate(masks):
        colour = np.array(PALETTE[k % len(PALETTE)], np.float32)
        mask = decode_rle({"size": [h, w], "counts": m.rle_counts}).astype(np.uint8)
        if scale < 1:
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        canvas[mask > 0] = canvas[mask > 0] * (1 - FILL_ALPHA) + colour * FILL_ALPHA
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        outlines.append((contours, PALETTE[k % len(PALETTE)]))
    out = np.ascontiguousarray(canvas.round().clip(0, 255).astype(np.uint8))
    for contours, colour in outlines:  # after all fills, so no fill tints another mask's outline
        cv2.drawContours(out, contours, -1, colour, thickness=2)
    return _boxes_and_labels(out, masks, scale)


def _boxes_and_labels(canvas: np.ndarray, masks: Sequence[OverlayMask], scale: float) -> np.ndarray:
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for k, m in enumerate(masks):
        colour = PALETTE[k % len(PALETTE)]
        x, y, bw, bh = (float(v) * scale for v in m.bbox_xywh)
        if bw <= 0 or bh <= 0:
            continue
        # Boxes under a pixel wide after downscaling still get a one-pixel outline.
        draw.rectangle([x, y, max(x, x + bw - 1), max(y, y + bh - 1)], outline=colour, width=1)
        left, top, right, bottom = draw.textbbox((x, y), m.label, font=font)
        ty = max(0.0, y - (bottom - top) - 2)
        draw.rectangle([x, ty, x + (right - left) + 3, ty + (bottom - top) + 2], fill=colour)
        draw.text((x + 1, ty), m.label, fill=(0, 0, 0), font=font)
    return np.asarray(image)


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
