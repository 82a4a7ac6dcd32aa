"""What a run labels: the input table (one row per image) and the categories, built on the driver before any work."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schema as col
from pipeline.config.sections import LabelConfig
from pipeline.ids import coco_image_id_for
from pipeline.io.boxes_file import read_boxes_file
from pipeline.io.listing import MANIFEST_SUFFIXES, list_images
from pipeline.io.roots import check_within_roots

OBJECT_CATEGORY = {"id": 1, "name": "object", "supercategory": ""}


@dataclass(frozen=True)
class InputPlan:
    table: pa.Table
    """image_id, image_uri, coco_image_id (+ prompt_* list columns for box prompts), sorted by image_id."""
    categories: list[dict]
    """COCO categories of the output."""


def plan_inputs(cfg: LabelConfig, categories: list[dict] | None = None) -> InputPlan:
    """Lists the input (or reads the boxes file); raises ValueError naming the problem before any image is read.

    ``categories`` (the detector's classes for yolo prompts) replace the single "object" category. Every image URI
    must lie inside ``input.allowed_roots`` (default: inside ``--input`` for folders, prefixes and boxes files;
    anywhere for a manifest, whose owner lists what it wants). Boxes past ``segment.max_prompts_per_image`` are
    dropped, keeping the file's order, and counted per image.
    """
    if cfg.prompts.mode == "boxes":
        table, categories = read_boxes_file(cfg.prompts.file, cfg.input.uri, cfg.storage)
        table = limit_prompts(table, cfg.segment.max_prompts_per_image)
    else:
        table = list_images(cfg.input.uri, cfg.storage, cfg.input.extensions, cfg.input.manifest_column)
        table = table.append_column(col.COCO_IMAGE_ID, coco_image_ids(table[col.IMAGE_ID]))
        categories = categories or [OBJECT_CATEGORY]
    roots, resolve_links = allowed_roots(cfg)
    if roots:
        check_within_roots(table[col.IMAGE_URI].to_pylist(), roots, resolve_links)
    if cfg.input.limit is not None:
        table = table.slice(0, cfg.input.limit)
    return InputPlan(table, categories)


def coco_image_ids(image_ids: pa.ChunkedArray, block: int = 100_000) -> pa.Array:
    """The COCO image id of every image id, computed a block at a time (no Python object per image kept)."""
    out = np.empty(len(image_ids), np.int64)
    for start in range(0, len(image_ids), block):
        ids = image_ids.slice(start, block).to_pylist()
        out[start : start + len(ids)] = [coco_image_id_for(i) for i in ids]
    return pa.array(out)


def allowed_roots(cfg: LabelConfig) -> tuple[tuple[str, ...], bool]:
    """The roots image URIs must lie in, and whether symlinks are resolved first (only for configured roots)."""
    if cfg.input.allowed_roots:
        return cfg.input.allowed_roots, True
    if cfg.prompts.mode != "boxes" and cfg.input.uri.lower().endswith(MANIFEST_SUFFIXES):
        return (), False
    return (cfg.input.uri,), False


def limit_prompts(table: pa.Table, max_prompts: int) -> pa.Table:
    """Box rows with at most ``max_prompts`` boxes each (the first ones), plus the ``prompts_dropped`` counts."""
    counts = pc.list_value_length(table[col.PROMPT_BOX_IDS]).fill_null(0).to_pylist()
    dropped = [max(0, n - max_prompts) for n in counts]
    if any(dropped):
        rows = table.to_pylist()
        for row, cut in zip(rows, dropped, strict=True):
            if cut:
                row[col.PROMPT_BOX_IDS] = row[col.PROMPT_BOX_IDS][:max_prompts]
                row[col.PROMPT_CATEGORY_IDS] = row[col.PROMPT_CATEGORY_IDS][:max_prompts]
                row[col.PROMPT_BOXES_XYXY] = row[col.PROMPT_BOXES_XYXY][: 4 * max_prompts]
        table = pa.Table.from_pylist(rows, schema=table.schema)
    return table.append_column(col.PROMPTS_DROPPED, pa.array(dropped, pa.int64()))


def remaining(table: pa.Table, done_image_ids: pa.Array | pa.ChunkedArray) -> pa.Table:
    """The rows whose image is not among ``done_image_ids``."""
    if not len(done_image_ids):
        return table
    return table.filter(pc.invert(pc.is_in(table[col.IMAGE_ID], value_set=done_image_ids)))
