"""The "shapes" dataset: synthetic images with instance masks, deterministic given a seed, written as COCO.

Each image has a textured background and 3-8 objects (ellipses, rectangles, triangles, stars; solid or textured
fills) of several sizes. Objects are painted in order, so a later object occludes earlier ones; some objects are
*nested*, placed wholly inside an earlier one. A mask is always the object's visible pixels (COCO convention), so a
nested child cuts a hole in its parent and an occluder cuts away part of what it covers; every pixel belongs to at
most one mask. Objects left with less than half of their own area, or under ``min_area`` pixels, get no
annotation. Annotations are COCO RLE with ``bbox`` and ``area`` from pycocotools, ``iscrowd`` 0.

    write_split(out_dir, "val", num_images=200, seed=1)   # out_dir/val/*.png and out_dir/val.json
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from pipeline.segment.masks import encode_rle

CATEGORIES = ("ellipse", "rectangle", "triangle", "star")
IMAGE_SIZES = ((256, 256), (192, 256), (256, 192))  # (h, w)


@dataclass(frozen=True)
class ShapesConfig:
    min_objects: int = 3
    """Objects painted per image, at least."""
    max_objects: int = 8
    """Objects painted per image, at most."""
    min_size: int = 18
    """Smallest object extent in pixels."""
    max_size_frac: float = 0.75
    """Largest object extent as a fraction of the image's short side."""
    nest_prob: float = 0.3
    """Chance that an object is placed wholly inside a large enough earlier object."""
    min_visible_frac: float = 0.5
    """Objects with less of their own area visible get no annotation."""
    min_area: int = 40
    """Objects with fewer visible pixels get no annotation."""


@dataclass(frozen=True)
class ShapeInstance:
    category: str
    """One of CATEGORIES."""
    mask: np.ndarray
    """[h,w] bool, visible pixels."""


def generate_image(rng: np.random.Generator, cfg: ShapesConfig) -> tuple[np.ndarray, list[ShapeInstance]]:
    """One image (HWC uint8 RGB) and its annotated instances, in painting order."""
    h, w = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    image = _texture(rng, h, w, saturated=False)
    painted: list[tuple[str, np.ndarray]] = []
    for _ in range(int(rng.integers(cfg.min_objects, cfg.max_objects + 1))):
        parent = _pick_parent(rng, painted, cfg)
        shape = _shape_mask(rng, h, w, cfg, inside=None if parent is None else parent[1])
        if shape is None:
            continue
        category, full = shape
        fill = _texture(rng, h, w, saturated=True)
        image[full] = fill[full]
        painted.append((category, full))
    instances = []
    covered = np.zeros((h, w), bool)
    for category, full in reversed(painted):  # visible = not covered by anything painted later
        visible = full & ~covered
        covered |= full
        area = int(visible.sum())
        if area >= cfg.min_area and area >= cfg.min_visible_frac * full.sum():
            instances.append(ShapeInstance(category, visible))
    instances.reverse()
    image = np.clip(image.astype(np.int16) + rng.integers(-6, 7, image.shape), 0, 255).astype(np.uint8)
    return image, instances


def _pick_parent(
    rng: np.random.Generator, painted: list[tuple[str, np.ndarray]], cfg: ShapesConfig
) -> tuple[str, np.ndarray] | None:
    big = [p for p in painted if p[1].sum() >= (4 * cfg.min_size) ** 2 * 0.5]
    if not big or rng.random() >= cfg.nest_prob:
        return None
    return big[rng.integers(len(big))]


def _shape_mask(
    rng: np.random.Generator, h: int, w: int, cfg: ShapesConfig, inside: np.ndarray | None
) -> tuple[str, np.ndarray] | None:
    """A random shape's full mask; with ``inside``, one that fits wholly in that mask (None after 10 tries)."""
    for _ in range(10):
        category = CATEGORIES[rng.integers(len(CATEGORIES))]
        if inside is None:
            hi = cfg.max_size_frac * min(h, w)
            size = float(np.exp(rng.uniform(np.log(cfg.min_size), np.log(hi))))
            cx, cy = rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.9 * h)
        else:
            dist = cv2.distanceTransform(np.pad(inside, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
            ys, xs = np.nonzero(dist >= cfg.min_size * 0.75)
            if len(ys) == 0:
                return None
            k = rng.integers(len(ys))
            cx, cy = float(xs[k]), float(ys[k])
            size = rng.uniform(cfg.min_size, max(cfg.min_size, 1.6 * dist[ys[k], xs[k]]))
        mask = _raster(category, rng, h, w, cx, cy, size)
        if mask.sum() < cfg.min_area or (inside is not None and (mask & ~inside).any()):
            continue
        return category, mask
    return None


def _raster(category: str, rng: np.random.Generator, h: int, w: int, cx: float, cy: float, size: float) -> np.ndarray:
    """Binary mask of one shape of extent ``size`` centred at (cx, cy), randomly rotated and stretched."""
    canvas = np.zeros((h, w), np.uint8)
    angle = rng.uniform(0, 180)
    aspect = rng.uniform(0.5, 1.0)
    if category == "ellipse":
        axes = (max(1, int(size / 2)), max(1, int(size * aspect / 2)))
        cv2.ellipse(canvas, (int(cx), int(cy)), axes, angle, 0, 360, 1, thickness=-1)
        return canvas.astype(bool)
    if category == "rectangle":
        points = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * [size / 2, size * aspect / 2]
    elif category == "triangle":
        t = np.deg2rad([90, 210, 330]) + rng.uniform(-0.3, 0.3, 3)
        points = np.stack([np.cos(t), np.sin(t)], 1) * size / 2
    else:
        n = int(rng.integers(5, 8))
        t = np.arange(2 * n) * np.pi / n
        radius = np.where(np.arange(2 * n) % 2 == 0, size / 2, size / 2 * rng.uniform(0.4, 0.6))
        points = np.stack([np.cos(t) * radius, np.sin(t) * radius], 1)
    theta = np.deg2rad(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    points = points @ rotation.T + [cx, cy]
    cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)
    return canvas.astype(bool)


def _texture(rng: np.random.Generator, h: int, w: int, saturated: bool) -> np.ndarray:
    """[h,w,3] uint8: a flat colour, a gradient, stripes, a checkerboard or blotchy noise between two colours."""
    a, b = _colour(rng, saturated), _colour(rng, saturated)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = rng.integers(5)
    if kind == 0:
        t = np.zeros((h, w), np.float32)
    elif kind == 1:
        theta = rng.uniform(0, 2 * np.pi)
        t = (np.cos(theta) * xs + np.sin(theta) * ys) / max(h, w) * 0.5 + 0.5
    elif kind == 2:
        theta, period = rng.uniform(0, np.pi), rng.uniform(4, 16)
        t = ((np.cos(theta) * xs + np.sin(theta) * ys) // (period / 2) % 2).astype(np.float32)
    elif kind == 3:
        cell = int(rng.integers(4, 12))
        t = ((xs // cell + ys // cell) % 2).astype(np.float32)
    else:
        noise = rng.random((h // 8 + 2, w // 8 + 2)).astype(np.float32)
        t = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    mix = t[..., None] * 0.6  # the second colour never fully replaces the first: the texture keeps one tone
    return (a * (1 - mix) + b * mix).astype(np.uint8)


def _colour(rng: np.random.Generator, saturated: bool) -> np.ndarray:
    hsv = np.array(
        [
            [
                [
                    rng.integers(0, 180),
                    rng.integers(150, 256) if saturated else rng.integers(0, 90),
                    rng.integers(60, 256),
                ]
            ]
        ],
        np.uint8,
    )
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def coco_split(out_dir: Path, split: str, num_images: int, seed: int, cfg: ShapesConfig | None = None) -> dict:
    """Writes ``out_dir/<split>/<split>_NNNNN.png``; returns the COCO document (file names relative to the split)."""
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    cfg = cfg or ShapesConfig()
    folder = Path(out_dir) / split
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for index in range(num_images):
        image, instances = generate_image(rng, cfg)
        name = f"{split}_{index:05d}.png"
        Image.fromarray(image).save(folder / name, optimize=False, compress_level=1)
        images.append({"id": index + 1, "file_name": name, "height": image.shape[0], "width": image.shape[1]})
        if not instances:
            continue
        rles = encode_rle(np.stack([inst.mask for inst in instances]))
        for inst, rle in zip(instances, rles, strict=True):
            encoded = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": CATEGORIES.index(inst.category) + 1,
                    "segmentation": rle,
                    "area": int(mask_utils.area(encoded)),
                    "bbox": [float(v) for v in mask_utils.toBbox(encoded)],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CATEGORIES)]
    return {
        "info": {"description": f"samlabel shapes {split}", "seed": seed},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def write_split(out_dir: Path, split: str, num_images: int, seed: int, cfg: ShapesConfig | None = None) -> Path:
    """Writes the images and ``out_dir/<split>.json``; returns the JSON's path."""
    document = coco_split(out_dir, split, num_images, seed, cfg)
    path = Path(out_dir) / f"{split}.json"
    path.write_text(json.dumps(document, separators=(",", ":")))
    return path
