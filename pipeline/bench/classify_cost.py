"""What naming masks costs (``classify``): milliseconds per mask of the segment actor's naming step (the mask's RLE
decoded at the original size and sampled, the image crop, the classifier), split into the crops and the model, at
several masks per image. Without ``classify.weights`` the classifier is CLIP ViT-B/16's architecture with seeded
random weights (the cost of the real model, not its names); masks are seeded random ellipses."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.bench.data import photo_like
from pipeline.bench.text_models import write_random_clip_base
from pipeline.classify.classifier import ZeroShotClassifier, read_classify_classes
from pipeline.classify.crops import classifier_inputs
from pipeline.classify.naming import ImageView, name_masks
from pipeline.config.sections import LabelConfig
from pipeline.models import model_card
from pipeline.ontology import NamedClass
from pipeline.segment.geometry import resize_longest_side
from pipeline.segment.masks import ImageMasks, encode_rle

DEFAULT_CLASSES = ("person", "forklift", "pallet", "box")


def random_masks(height: int, width: int, count: int, seed: int) -> ImageMasks:
    """``count`` filled ellipses of 2–30 % of the shorter side, as kept masks at the original size."""
    rng = np.random.default_rng(seed)
    stack = np.zeros((count, height, width), np.uint8)
    side = min(height, width)
    for k in range(count):
        axes = (int(rng.uniform(0.02, 0.3) * side), int(rng.uniform(0.02, 0.3) * side))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.ellipse(stack[k], centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    boxes = np.zeros((count, 4), np.float32)
    for k, mask in enumerate(stack.astype(bool)):
        cols, rows = np.nonzero(mask.any(axis=0))[0], np.nonzero(mask.any(axis=1))[0]
        boxes[k] = (cols.min(), rows.min(), cols.max(), rows.max())
    f32 = np.ones(count, np.float32)
    return ImageMasks(encode_rle(stack.astype(bool)), boxes, stack.sum((1, 2)), f32, f32, f32, np.arange(count))


def classify_cost_bench(
    cfg: LabelConfig, images: int, size_hw: tuple[int, int], masks_per_image: Sequence[int], work: Path, seed: int
) -> dict:
    """Times naming the masks of ``images`` photo-like images, for each count of ``masks_per_image``."""
    classify = cfg.classify
    if not classify.weights:
        classify = dataclasses.replace(classify, weights=str(write_random_clip_base(work / "clip-b16-random", seed)))
    if classify.enabled:
        classes = read_classify_classes(classify, cfg.storage)
    else:
        classes = [NamedClass(c, (c,)) for c in DEFAULT_CLASSES]
    device = torch.device("cuda" if cfg.model.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    classifier = ZeroShotClassifier(classify, classes, cfg.storage, device, cfg.model.cache_dir)
    load_seconds = time.perf_counter() - start
    long_side = model_card(cfg.model.name).encoder_input_size
    pictures = [photo_like(*size_hw, seed=seed + i) for i in range(images)]
    views = [
        ImageView(torch.from_numpy(np.array(resize_longest_side(p, long_side))).to(device), size_hw) for p in pictures
    ]
    rows = []
    for count in masks_per_image:
        masks = [random_masks(*size_hw, count, seed + i) for i in range(images)]
        name_masks(classifier, views[:1], masks[:1])  # warm-up
        _sync(device)
        start = time.perf_counter()
        name_masks(classifier, views, masks)
        _sync(device)
        total = time.perf_counter() - start
        start = time.perf_counter()
        for view, m in zip(views, masks, strict=True):
            for s in range(0, count, classify.batch_size):
                ks = list(range(s, min(s + classify.batch_size, count)))
                classifier_inputs(
                    view.pixels,
                    size_hw,
                    [m.rles[k] for k in ks],
                    m.boxes_xyxy[ks],
                    size=classifier.image_size,
                    mean=classifier.mean,
                    std=classifier.std,
                    margin=classify.margin,
                    keep_background=classify.background == "keep",
                )
        _sync(device)
        crops = time.perf_counter() - start
        n = images * count
        rows.append(
            {
                "masks_per_image": count,
                "ms_per_mask": round(1000 * total / n, 2),
                "crops_ms_per_mask": round(1000 * crops / n, 2),
                "model_ms_per_mask": round(1000 * max(total - crops, 0.0) / n, 2),
                "masks_per_second": round(n / total, 1),
                "seconds_per_image": round(total / images, 3),
            }
        )
    return {
        "device": str(device),
        "images": images,
        "size_hw": list(size_hw),
        "image_long_side": long_side,
        "classifier": {
            "weights": cfg.classify.weights or "CLIP ViT-B/16 architecture, random (seeded)",
            "input_size": classifier.image_size,
            "precision": classifier.precision,
            "classes": [c.name for c in classes],
            "batch_size": classify.batch_size,
            "load_embed_texts_and_gate_seconds": round(load_seconds, 2),
        },
        "rows": rows,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
