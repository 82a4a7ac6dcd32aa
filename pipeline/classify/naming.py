"""Naming the kept masks of a batch of images: their crops go through the classifier in chunks of
``classify.batch_size`` across images (the crops of a chunk exist only while it runs), and each mask gets a category
id (class index + 1, or the "unknown" id after the classes) and the class score, or is dropped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.classify.classifier import ZeroShotClassifier
from pipeline.classify.crops import classifier_inputs
from pipeline.segment.masks import ImageMasks


@dataclass(frozen=True)
class ImageView:
    """One image as the segment actor holds it: [h,w,3] uint8 resized from the original (h, w)."""

    pixels: torch.Tensor
    original_hw: tuple[int, int]


def name_masks(
    classifier: ZeroShotClassifier, images: Sequence[ImageView], masks: Sequence[ImageMasks]
) -> list[ImageMasks]:
    """``masks`` with ``category_id`` and ``class_score`` set; with ``below: drop`` the masks that are not named are
    left out (and counted in ``unnamed``)."""
    pairs = [(i, k) for i, m in enumerate(masks) for k in range(len(m.rles))]
    index = [np.zeros(len(m.rles), np.int64) for m in masks]
    score = [np.zeros(len(m.rles), np.float32) for m in masks]
    step = classifier.cfg.batch_size
    for start in range(0, len(pairs), step):
        chunk = pairs[start : start + step]
        inputs = []
        for i in sorted({i for i, _ in chunk}):
            ks = [k for j, k in chunk if j == i]
            inputs.append(_inputs(classifier, images[i], masks[i], ks))
        best, value = classifier.name(torch.cat(inputs))
        for (i, k), b, v in zip(chunk, best.cpu().numpy(), value.float().cpu().numpy(), strict=True):
            index[i][k], score[i][k] = b, v
    unknown = len(classifier.classes) + 1
    named = []
    for m, idx, sc in zip(masks, index, score, strict=True):
        m = m.with_names(np.where(idx >= 0, idx + 1, unknown), sc)
        if classifier.cfg.below == "drop":
            m = m.take(np.flatnonzero(idx >= 0), unnamed=int((idx < 0).sum()))
        named.append(m)
    return named


def _inputs(classifier: ZeroShotClassifier, image: ImageView, masks: ImageMasks, ks: list[int]) -> torch.Tensor:
    return classifier_inputs(
        image.pixels,
        image.original_hw,
        [masks.rles[k] for k in ks],
        masks.boxes_xyxy[ks],
        size=classifier.image_size,
        mean=classifier.mean,
        std=classifier.std,
        margin=classifier.cfg.margin,
        keep_background=classifier.cfg.background == "keep",
    )
