"""Generated shapes for AutoPPN tests: images of filled ellipses and rectangles on a noisy background, with their
masks written as a COCO instances file (compressed RLE)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pipeline.segment.masks import encode_rle


def shape_image(
    rng: np.random.Generator, size: int, max_shapes: int, ellipses: bool = True
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One RGB image [size,size,3] and the masks of its 1..max_shapes non-overlapping shapes (rectangles, and
    ellipses unless ``ellipses`` is off)."""
    image = rng.integers(90, 130, (size, size, 3)).astype(np.uint8)
    occupied = np.zeros((size, size), bool)
    masks = []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        for _attempt in range(20):
            mask = np.zeros((size, size), np.uint8)
            r = int(rng.integers(size // 12, size // 5))
            cx, cy = (int(v) for v in rng.integers(r + 2, size - r - 2, 2))
            if ellipses and rng.random() < 0.5:
                cv2.ellipse(
                    mask, (cx, cy), (r, int(r * rng.uniform(0.6, 1.0))), float(rng.uniform(0, 180)), 0, 360, 1, -1
                )
            else:
                cv2.rectangle(mask, (cx - r, cy - r), (cx + r, cy + int(r * rng.uniform(0.6, 1.0))), 1, -1)
            mask = mask.astype(bool)
            if not (mask & cv2.dilate(occupied.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)).any():
                break
        else:
            continue
        occupied |= mask
        colour = rng.choice([rng.integers(0, 50, 3), rng.integers(200, 256, 3)])
        image[mask] = colour
        masks.append(mask)
    return image, masks


def write_shapes_dataset(
    folder: Path, n_images: int, seed: int, size: int = 256, max_shapes: int = 3, ellipses: bool = True
) -> Path:
    """Writes ``n_images`` PNGs and ``coco.json`` into ``folder``; returns the COCO file."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "shape"}]}
    for i in range(n_images):
        image, masks = shape_image(rng, size, max_shapes, ellipses)
        name = f"shape_{seed}_{i:04d}.png"
        Image.fromarray(image).save(folder / name)
        coco["images"].append({"id": i + 1, "file_name": name, "height": size, "width": size})
        for rle, mask in zip(encode_rle(np.stack(masks)), masks, strict=True):
            ys, xs = np.nonzero(mask)
            bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "segmentation": rle,
                    "area": int(mask.sum()),
                    "bbox": bbox,
                    "iscrowd": 0,
                }
            )
    path = folder / "coco.json"
    path.write_text(json.dumps(coco))
    return path
