"""Naming the masks of several images: the crops of different images share classifier calls without changing any
name, a mask that is not named gets the "unknown" category or is dropped and counted, and the other mask fields
follow the kept masks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.bench.text_models import write_tiny_classifier
from pipeline.classify.classifier import ZeroShotClassifier
from pipeline.classify.naming import ImageView, name_masks
from pipeline.config.sections import ClassifyConfig, StorageConfig
from pipeline.ontology import NamedClass
from pipeline.segment.masks import ImageMasks, encode_rle

CLASSES = [NamedClass("person", ("person",)), NamedClass("forklift", ("forklift",)), NamedClass("box", ("box",))]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_classifier(tmp_path_factory.mktemp("clip") / "clip")


def _image(seed: int, masks: int) -> tuple[ImageView, ImageMasks]:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    stack = np.zeros((masks, 120, 160), bool)
    for k in range(masks):
        y, x = rng.integers(0, 80), rng.integers(0, 120)
        stack[k, y : y + 30, x : x + 25] = True
    boxes = np.zeros((masks, 4), np.float32)
    for k, mask in enumerate(stack):
        cols, rows = np.nonzero(mask.any(axis=0))[0], np.nonzero(mask.any(axis=1))[0]
        boxes[k] = (cols.min(), rows.min(), cols.max(), rows.max())
    f32 = np.linspace(0.5, 0.9, masks).astype(np.float32)
    result = ImageMasks(
        encode_rle(stack), boxes, stack.sum((1, 2)), f32, f32, f32, np.arange(masks), np.zeros((masks, 1, 2))
    )
    return ImageView(torch.from_numpy(pixels), (120, 160)), result


def _classifier(clip: Path, **settings) -> ZeroShotClassifier:
    cfg = ClassifyConfig(classes=tuple(c.name for c in CLASSES), weights=str(clip), precision="fp32", **settings)
    return ZeroShotClassifier(cfg, CLASSES, StorageConfig(), torch.device("cpu"))


def test_shared_calls_change_no_name_and_unnamed_masks_are_unknown_or_dropped(clip: Path) -> None:
    views, masks = zip(*[_image(0, 2), _image(1, 0), _image(2, 3)], strict=True)
    one_call = name_masks(_classifier(clip), views, masks)
    in_threes = name_masks(_classifier(clip, batch_size=3), views, masks)
    for a, b in zip(one_call, in_threes, strict=True):
        assert a.category_id.tolist() == b.category_id.tolist()
        assert np.allclose(a.class_score, b.class_score, atol=1e-5)
    assert [len(m.rles) for m in one_call] == [2, 0, 3] and {c for m in one_call for c in m.category_id} <= {1, 2, 3}
    scores = np.concatenate([m.class_score for m in one_call])
    middle = float(np.median(scores))
    unknown = name_masks(_classifier(clip, min_score=middle), views, masks)
    below = [m.class_score < middle for m in one_call]
    for m, low in zip(unknown, below, strict=True):
        assert (m.category_id == 4).tolist() == low.tolist()  # 4: the id after the three classes
    dropped = name_masks(_classifier(clip, min_score=middle, below="drop"), views, masks)
    for m, named, low, original in zip(dropped, one_call, below, masks, strict=True):
        assert m.unnamed == int(low.sum()) and len(m.rles) == int((~low).sum())
        assert m.category_id.tolist() == named.category_id[~low].tolist()
        assert m.rles == [r for r, lo in zip(original.rles, low, strict=True) if not lo]
        assert m.areas.tolist() == original.areas[~low].tolist()
    assert sum(m.unnamed for m in dropped) > 0 and sum(len(m.rles) for m in dropped) > 0
    assert dataclasses.replace(masks[0]).category_id is None  # the input masks are left as they were
