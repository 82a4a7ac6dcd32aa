"""Output tables (pure pyarrow): the per-image record rows become ``annotations``, ``errors`` and ``images`` rows.

Schemas are fixed here so every part file of a dataset has the same types, whatever a block happened to hold.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schema as col

BOX4 = pa.list_(pa.float32(), 4)
ANNOTATIONS_SCHEMA = pa.schema(
    [
        (col.IMAGE_ID, pa.string()),
        (col.IMAGE_URI, pa.string()),
        (col.COCO_IMAGE_ID, pa.int64()),
        (col.IMAGE_WIDTH, pa.int32()),
        (col.IMAGE_HEIGHT, pa.int32()),
        (col.ANNOTATION_ID, pa.int64()),
        (col.CATEGORY_ID, pa.int64()),
        (col.CATEGORY_NAME, pa.string()),
        (col.BBOX_XYWH, BOX4),
        (col.AREA, pa.int64()),
        (col.RLE_COUNTS, pa.string()),
        (col.PREDICTED_IOU, pa.float32()),
        (col.STABILITY_SCORE, pa.float32()),
        (col.SCORE, pa.float32()),
        (col.CLASS_SCORE, pa.float32()),
        (col.PROMPT_TYPE, pa.string()),
        (col.PROMPT_BOX_XYXY, BOX4),
        (col.PROMPT_POINTS, pa.list_(pa.list_(pa.float32(), 2))),
        (col.MODEL, pa.string()),
        (col.RUN_ID, pa.string()),
    ]
)
ERRORS_SCHEMA = pa.schema(
    [
        (col.IMAGE_ID, pa.string()),
        (col.IMAGE_URI, pa.string()),
        ("stage", pa.string()),
        ("error_type", pa.string()),
        ("message", pa.string()),
        (col.RUN_ID, pa.string()),
    ]
)
IMAGES_SCHEMA = pa.schema(
    [
        (col.IMAGE_ID, pa.string()),
        (col.IMAGE_URI, pa.string()),
        (col.COCO_IMAGE_ID, pa.int64()),
        (col.IMAGE_WIDTH, pa.int32()),
        (col.IMAGE_HEIGHT, pa.int32()),
        (col.STATUS, pa.string()),
        ("num_annotations", pa.int64()),
        (col.PROMPTS_DROPPED, pa.int64()),
        (col.MASKS_DROPPED, pa.int64()),
        (col.MASKS_UNNAMED, pa.int64()),
        (col.RUN_ID, pa.string()),
    ]
)


def split_records(records: pa.Table) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Per-image record rows → (annotations, errors, images) tables with the schemas above.

    ``images`` has one row per input image, labeled or not: it is the list of images this part completed.
    """
    labeled = records.filter(pc.equal(records[col.STATUS], "labeled"))
    failed = records.filter(pc.equal(records[col.STATUS], "error"))
    return _annotations(labeled), _errors(failed), _images(records)


def _annotations(labeled: pa.Table) -> pa.Table:
    if labeled.num_rows == 0:
        return ANNOTATIONS_SCHEMA.empty_table()
    parents = pc.list_parent_indices(labeled[col.ANNOTATION_ID])
    columns = {}
    for field in ANNOTATIONS_SCHEMA:
        if field.name == col.CLASS_SCORE and field.name not in labeled.column_names:  # not every writer names masks
            values = pa.nulls(len(parents), field.type)
        elif field.name in col.ANNOTATION_LISTS:
            values = pc.list_flatten(labeled[field.name])
        else:
            values = pc.take(labeled[field.name], parents)
        columns[field.name] = values.cast(field.type) if values.type != field.type else values
    return pa.table(columns, schema=ANNOTATIONS_SCHEMA)


def _errors(failed: pa.Table) -> pa.Table:
    return pa.table(
        {
            col.IMAGE_ID: failed[col.IMAGE_ID],
            col.IMAGE_URI: failed[col.IMAGE_URI],
            "stage": failed[col.ERROR_STAGE],
            "error_type": failed[col.ERROR_TYPE],
            "message": failed[col.ERROR_MESSAGE],
            col.RUN_ID: failed[col.RUN_ID],
        }
    ).cast(ERRORS_SCHEMA)


def _images(records: pa.Table) -> pa.Table:
    counts = pc.list_value_length(records[col.ANNOTATION_ID]).fill_null(0)
    return pa.table(
        {
            col.IMAGE_ID: records[col.IMAGE_ID],
            col.IMAGE_URI: records[col.IMAGE_URI],
            col.COCO_IMAGE_ID: records[col.COCO_IMAGE_ID],
            col.IMAGE_WIDTH: records[col.IMAGE_WIDTH],
            col.IMAGE_HEIGHT: records[col.IMAGE_HEIGHT],
            col.STATUS: records[col.STATUS],
            "num_annotations": counts,
            col.PROMPTS_DROPPED: _count_column(records, col.PROMPTS_DROPPED),
            col.MASKS_DROPPED: _count_column(records, col.MASKS_DROPPED),
            col.MASKS_UNNAMED: _count_column(records, col.MASKS_UNNAMED),
            col.RUN_ID: records[col.RUN_ID],
        }
    ).cast(IMAGES_SCHEMA)


def _count_column(records: pa.Table, name: str) -> pa.Array:
    if name not in records.column_names:
        return pa.array([0] * records.num_rows, pa.int64())
    return records[name].cast(pa.int64()).fill_null(0)
