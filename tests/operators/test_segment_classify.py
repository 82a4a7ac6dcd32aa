"""The segment operator with a mask classifier (a tiny random CLIP): every kept mask of any prompt mode gets a
category and a class score, the records carry them as category_id, category_name and class_score, and a classifier
that drops unnamed masks counts them."""

from __future__ import annotations

import numpy as np
import pytest

from operators.records import to_records
from operators.segment import Segment, SegmentPrompts
from pipeline import schema as col
from pipeline.bench.text_models import write_tiny_classifier
from pipeline.config.sections import ClassifyConfig, GridConfig, ModelConfig, SegmentConfig, StorageConfig
from tests.fixtures import decoded_batch, fixture_images, write_fixture_weights

CATEGORIES = {1: "person", 2: "forklift", 3: "unknown"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classify")
    weights = write_fixture_weights(folder / "mini_l.pt", "l")
    model = ModelConfig(name="mini-l", weights=str(weights), precision="fp32", decoder_precision="fp32")
    return model, write_tiny_classifier(folder / "clip")


def _batch(boxes: bool):
    images = fixture_images()
    batch = decoded_batch([images["img0"], images["img1"]], ["img0", "img1"], 512)
    if boxes:
        batch[col.PROMPT_BOXES_XYXY] = col.object_column([np.ravel([[50, 40, 300, 250], [10, 10, 120, 90]])] * 2)
        batch[col.PROMPT_BOX_IDS] = col.object_column([[7, 8], [9, 10]])
        batch[col.PROMPT_CATEGORY_IDS] = col.object_column([[5, 5], [5, 5]])
    return batch


@pytest.mark.parametrize("mode", ["boxes", "grid"])
def test_every_kept_mask_is_named_and_the_records_carry_it(setup, mode) -> None:
    model, clip = setup
    classify = ClassifyConfig(classes=("person", "forklift"), weights=str(clip))
    grid = GridConfig(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    prompts = SegmentPrompts(mode, grid=grid)
    out = Segment(model, prompts, SegmentConfig(), StorageConfig(), classify=classify)(_batch(mode == "boxes"))
    for row in range(2):
        k = len(out[col.MASK_RLE_COUNTS][row])
        assert k > 0 and len(out[col.MASK_CATEGORY_ID][row]) == len(out[col.MASK_CLASS_SCORE][row]) == k
        assert set(out[col.MASK_CATEGORY_ID][row]) <= {1, 2}  # min_score 0: every mask is named
        assert all(0.5 <= s <= 1.0 for s in out[col.MASK_CLASS_SCORE][row])  # the best of two softmax scores
    records = to_records(out, run_id="r", model_name="mini-l", prompt_type=mode, categories=CATEGORIES)
    assert list(records[col.CATEGORY_ID][0]) == list(out[col.MASK_CATEGORY_ID][0])  # not the boxes' category 5
    assert list(records[col.CATEGORY_NAME][0]) == [CATEGORIES[c] for c in out[col.MASK_CATEGORY_ID][0]]
    assert list(records[col.CLASS_SCORE][1]) == list(out[col.MASK_CLASS_SCORE][1])
    assert list(out[col.MASKS_UNNAMED]) == [0, 0]


def test_unnamed_masks_are_dropped_and_counted(setup) -> None:
    model, clip = setup
    classify = ClassifyConfig(classes=("person", "forklift"), weights=str(clip), min_score=1.0, below="drop")
    out = Segment(model, SegmentPrompts("boxes"), SegmentConfig(), StorageConfig(), classify=classify)(_batch(True))
    assert [len(v) for v in out[col.MASK_RLE_COUNTS]] == [0, 0] and list(out[col.MASKS_UNNAMED]) == [2, 2]
    records = to_records(out, run_id="r", model_name="mini-l", prompt_type="boxes", categories=CATEGORIES)
    assert [len(v) for v in records[col.ANNOTATION_ID]] == [0, 0]


def test_without_classes_there_is_no_classifier(setup) -> None:
    model, _ = setup
    out = Segment(model, SegmentPrompts("boxes"), SegmentConfig(), StorageConfig(), classify=ClassifyConfig())(
        _batch(True)
    )
    records = to_records(out, run_id="r", model_name="mini-l", prompt_type="boxes", categories={5: "pallet"})
    assert col.MASK_CATEGORY_ID not in out and list(records[col.CATEGORY_NAME][0]) == ["pallet", "pallet"]
    assert list(records[col.CLASS_SCORE][0]) == [None, None]
