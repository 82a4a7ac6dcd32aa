"""What a run labels: the input table (one row per image) and the categories, built on the driver before any work."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schema as col
from pipeline.config import LabelConfig
from pipeline.ids import coco_image_id_for
from pipeline.io.boxes_file import read_boxes_file
from pipeline.io.listing import list_images

OBJECT_CATEGORY = {"id": 1, "name": "object", "supercategory": ""}


@dataclass(frozen=True)
class InputPlan:
    table: pa.Table
    """image_id, image_uri, coco_image_id (+ prompt_* list columns for box prompts), sorted by image_id."""
    categories: list[dict]
    """COCO categories of the output."""


def plan_inputs(cfg: LabelConfig, categories: list[dict] | None = None) -> InputPlan:
    """Lists the input (or reads the boxes file); raises ValueError naming the problem before any image is read.

    ``categories`` (the detector's classes for yolo prompts) replace the single "object" category.
    """
    if cfg.prompts.mode == "boxes":
        table, categories = read_boxes_file(cfg.prompts.file, cfg.input.uri, cfg.storage)
    else:
        table = list_images(cfg.input.uri, cfg.storage, cfg.input.extensions, cfg.input.manifest_column)
        ids = [coco_image_id_for(i) for i in table[col.IMAGE_ID].to_pylist()]
        table = table.append_column(col.COCO_IMAGE_ID, pa.array(ids, pa.int64()))
        categories = categories or [OBJECT_CATEGORY]
    if cfg.input.limit is not None:
        table = table.slice(0, cfg.input.limit)
    return InputPlan(table, categories)


def remaining(table: pa.Table, done_image_ids: frozenset[str]) -> pa.Table:
    """The rows whose image is not done yet."""
    if not done_image_ids:
        return table
    done = pa.array(sorted(done_image_ids), pa.string())
    return table.filter(pc.invert(pc.is_in(table[col.IMAGE_ID], value_set=done)))
