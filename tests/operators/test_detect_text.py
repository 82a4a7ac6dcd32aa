"""The text detect operator: each image's boxes become box prompts with category ids in the given class order and
the detector's scores; rows that failed earlier pass through with none."""

from __future__ import annotations

import numpy as np

from operators.detect_text import DetectText
from pipeline import schema as col
from pipeline.bench.text_models import write_tiny_owlv2
from pipeline.config.sections import StorageConfig, TextConfig
from tests.fixtures import decoded_batch, fixture_images


def test_boxes_of_the_named_classes_become_box_prompts(tmp_path) -> None:
    owl = write_tiny_owlv2(tmp_path / "owlv2")
    text = TextConfig(weights=str(owl), classes=("forklift", "pallet"), box_thresh=0.0, max_boxes_per_image=5)
    images = fixture_images()
    batch = decoded_batch([images["img0"], images["img1"]], ["a", "b"], 512)
    batch[col.ERROR_STAGE] = np.array([None, "read"], dtype=object)
    batch[col.ERROR_TYPE] = np.array([None, "missing"], dtype=object)
    batch[col.ERROR_MESSAGE] = np.array([None, "gone"], dtype=object)
    out = DetectText(text, StorageConfig(), device="cpu")(batch)
    boxes = np.asarray(out[col.PROMPT_BOXES_XYXY][0], np.float32).reshape(-1, 4)
    h, w = images["img0"].shape[:2]
    assert 1 <= len(boxes) <= 5 and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert set(out[col.PROMPT_CATEGORY_IDS][0]) <= {1, 2}
    assert len(out[col.PROMPT_SCORES][0]) == len(out[col.PROMPT_BOX_IDS][0]) == len(boxes)
    assert list(out[col.PROMPT_SCORES][0]) == sorted(out[col.PROMPT_SCORES][0], reverse=True)
    assert len(out[col.PROMPT_BOXES_XYXY][1]) == 0 and out[col.ERROR_TYPE][1] == "missing"
