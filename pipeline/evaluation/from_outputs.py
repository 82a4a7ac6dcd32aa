"""A labeling run's output as COCO results against a ground truth: images matched by file name.

The run's ``file_name`` is its image id (the path relative to ``--input``), which equals the GT ``file_name`` when
the run labeled the GT's image folder. Categories are matched by name (a detector's class names), else kept by id
(a run with ``--prompts boxes`` from the GT file keeps its ids). The results are read from ``annotations/``
(Parquet), so they exist even for runs with ``output.coco=false``.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
from pycocotools.coco import COCO

from pipeline import schema as col
from pipeline.config.sections import StorageConfig
from pipeline.evaluation.ground_truth import area_bucket, bucket_means, evaluated_annotations
from pipeline.io import storage as st
from pipeline.io.run_output import ANNOTATIONS, RUN_JSON, SUCCESS, read_table
from pipeline.segment.masks import decode_rle, mask_iou

RESULT_COLUMNS = [
    col.IMAGE_ID,
    col.IMAGE_HEIGHT,
    col.IMAGE_WIDTH,
    col.ANNOTATION_ID,
    col.CATEGORY_ID,
    col.CATEGORY_NAME,
    col.RLE_COUNTS,
    col.SCORE,
]


def run_info(output_uri: str, storage: StorageConfig) -> dict:
    """``run.json`` of a completed run (ValueError when the run has no ``_SUCCESS``)."""
    if not st.exists(st.join_uri(output_uri, SUCCESS), storage):
        raise ValueError(f"{output_uri} holds no completed labeling run (no _SUCCESS)")
    return json.loads(st.read_bytes(st.join_uri(output_uri, RUN_JSON), storage))


def run_results(gt: COCO, output_uri: str, storage: StorageConfig) -> tuple[list[dict], int]:
    """The run's masks on GT images as COCO results (with ``annotation_id``), and how many of its rows were skipped.

    Rows whose image is not in the GT (by file name) are skipped and counted.
    """
    table = read_table(output_uri, ANNOTATIONS, storage, columns=RESULT_COLUMNS)
    if table.num_columns == 0:
        return [], 0
    image_ids = {img["file_name"]: img["id"] for img in gt.dataset["images"]}
    by_name = {c["name"]: c["id"] for c in gt.dataset["categories"]}
    known = pc.is_in(table[col.IMAGE_ID], value_set=pa.array(list(image_ids), pa.string()))
    skipped = table.num_rows - int(pc.sum(known).as_py() or 0)
    results = []
    for row in table.filter(known).to_pylist():
        results.append(
            {
                "image_id": image_ids[row[col.IMAGE_ID]],
                "category_id": by_name.get(row[col.CATEGORY_NAME], row[col.CATEGORY_ID]),
                "segmentation": {"size": [row[col.IMAGE_HEIGHT], row[col.IMAGE_WIDTH]], "counts": row[col.RLE_COUNTS]},
                "score": float(row[col.SCORE]),
                "annotation_id": row[col.ANNOTATION_ID],
            }
        )
    return results, skipped


def box_miou_from_results(gt: COCO, results: list[dict]) -> dict[str, dict]:
    """Box-prompt mIoU from a ``--prompts boxes`` run of the GT file: each GT annotation (area >= 1) of an image the
    run labeled is compared with the run's mask of the same annotation id (IoU 0 when the run dropped it)."""
    by_id = {(r["image_id"], r["annotation_id"]): r for r in results}
    labeled = {r["image_id"] for r in results}
    ious, buckets = [], []
    for image_id in sorted(labeled):
        for ann in evaluated_annotations(gt, image_id):
            found = by_id.get((image_id, ann["id"]))
            mask = decode_rle(found["segmentation"]) if found else None
            truth = gt.annToMask(ann).astype(bool)
            ious.append(mask_iou(mask, truth) if mask is not None else 0.0)
            buckets.append(area_bucket(ann["area"]))
    return bucket_means(ious, buckets)
