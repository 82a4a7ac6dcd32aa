"""Benchmark inputs: a folder of photos, or generated photo-like JPEGs, and seeded box prompts.

Generated images have what makes SAM work hard: smooth colour fields, overlapping flat shapes, stripes and sensor
noise, at a chosen size (sizes like phone photos make the reference's full-resolution work visible).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.config.sections import IMAGE_EXTENSIONS


def photo_like(height: int, width: int, seed: int) -> np.ndarray:
    """HWC uint8 RGB: a bicubic colour field, 4–9 flat ellipses/rectangles, faint stripes and noise."""
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    draw = ImageDraw.Draw(field)
    for _ in range(int(rng.integers(4, 10))):
        x0, x1 = sorted(rng.integers(0, width, size=2).tolist())
        y0, y1 = sorted(rng.integers(0, height, size=2).tolist())
        colour = tuple(rng.integers(0, 256, size=3).tolist())
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    period = float(rng.uniform(8, 40))
    stripes = 10 * np.sin((xx * 0.8 + yy * 0.6) * (2 * np.pi / period))
    pixels = np.asarray(field, np.float32) + stripes[..., None] + rng.normal(0, 4, (height, width, 3))
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def write_images(folder: Path, count: int, size_hw: tuple[int, int], seed: int = 0) -> list[Path]:
    """Writes ``count`` photo-like JPEGs (quality 90) of ``size_hw`` (alternating landscape / portrait)."""
    if count < 1 or min(size_hw) < 16:
        raise ValueError(f"need at least one image of at least 16 px, got count={count} size={size_hw}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        h, w = size_hw if i % 2 == 0 else size_hw[::-1]
        path = folder / f"bench_{i:04d}.jpg"
        Image.fromarray(photo_like(h, w, seed * 1_000_003 + i)).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def list_images(folder: Path, limit: int | None = None) -> list[Path]:
    """Image files directly in ``folder`` (extensions as the labeling job lists them), sorted, at most ``limit``."""
    if not folder.is_dir():
        raise ValueError(f"--input {folder} is not a folder")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise ValueError(f"--input {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return paths[:limit] if limit else paths


def random_boxes(height: int, width: int, count: int, seed: int) -> np.ndarray:
    """``count`` XYXY boxes [count,4] float32 inside the image, sides 5–60% of the image's."""
    rng = np.random.default_rng(seed)
    sides = rng.uniform(0.05, 0.6, size=(count, 2)) * np.array([width, height])
    corners = rng.uniform(0, 1, size=(count, 2)) * (np.array([width, height]) - sides)
    return np.concatenate([corners, corners + sides], axis=1).astype(np.float32)
