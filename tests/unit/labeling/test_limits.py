"""Per-image limits: grid prompt counts, boxes past the limit dropped in file order, masks past it by score."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipeline import schema as col
from pipeline.config.loading import load_config
from pipeline.config.sections import ConfigError, GridConfig, LabelConfig
from pipeline.labeling.inputs import limit_prompts
from pipeline.labeling.rules import grid_prompts_per_image, validate_label_config
from pipeline.segment.masks import ImageMasks


@pytest.mark.parametrize(
    ("grid", "expected"),
    [
        (GridConfig(points_per_side=32), 1024),
        (GridConfig(points_per_side=32, crop_n_layers=1), 1024 + 4 * 1024),
        (GridConfig(points_per_side=32, crop_n_layers=2, crop_n_points_downscale_factor=2), 1024 + 4 * 256 + 16 * 64),
    ],
)
def test_grid_prompts_per_image_counts_every_crop_layer(grid, expected):
    assert grid_prompts_per_image(grid) == expected


def test_a_grid_over_the_prompt_limit_is_refused():
    base = ["input.uri=in", "output.uri=out", "model.name=mini-l", "grid.crop_n_layers=2"]
    validate_label_config(load_config(LabelConfig, None, base))  # the default admits SAM's heaviest usual setting
    lower = load_config(LabelConfig, None, [*base, "segment.max_prompts_per_image=10000"])
    with pytest.raises(ConfigError, match="makes 21504 prompts per image, over segment.max_prompts_per_image=10000"):
        validate_label_config(lower)


def test_boxes_past_the_limit_are_dropped_in_file_order_and_counted():
    table = pa.table(
        {
            col.IMAGE_ID: ["a", "b"],
            col.PROMPT_BOXES_XYXY: [[float(v) for v in range(12)], [0.0, 0.0, 1.0, 1.0]],
            col.PROMPT_BOX_IDS: [[10, 11, 12], [20]],
            col.PROMPT_CATEGORY_IDS: [[1, 2, 3], [1]],
        }
    )
    out = limit_prompts(table, 2).to_pylist()
    assert out[0][col.PROMPT_BOX_IDS] == [10, 11] and out[0][col.PROMPT_CATEGORY_IDS] == [1, 2]
    assert out[0][col.PROMPT_BOXES_XYXY] == [float(v) for v in range(8)]
    assert [r[col.PROMPTS_DROPPED] for r in out] == [1, 0] and out[1][col.PROMPT_BOX_IDS] == [20]


def test_masks_past_the_limit_keep_the_best_scores_in_their_order():
    k = 5
    scores = np.array([0.5, 0.9, 0.1, 0.9, 0.7], np.float32)
    masks = ImageMasks(
        rles=[{"counts": str(i)} for i in range(k)],
        boxes_xyxy=np.arange(4 * k, dtype=np.float32).reshape(k, 4),
        areas=np.arange(k, dtype=np.int64),
        predicted_iou=scores,
        stability_score=scores,
        scores=scores,
        prompt_index=np.arange(k, dtype=np.int64),
    )
    kept, dropped = masks.top(3)
    assert dropped == 2 and kept.prompt_index.tolist() == [1, 3, 4]  # 0.9, 0.9, 0.7 in the original order
    assert [r["counts"] for r in kept.rles] == ["1", "3", "4"] and kept.areas.tolist() == [1, 3, 4]
    assert masks.top(5) == (masks, 0)
