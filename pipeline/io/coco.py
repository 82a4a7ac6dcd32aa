"""COCO instances JSON from the output tables (pure). Loads with pycocotools ``COCO`` and ``COCO.loadRes``.

Images are the labeled ones (``file_name`` = image id, the path relative to the input); annotations carry
``id, image_id, category_id, segmentation{size, counts}, area, bbox, iscrowd=0, score, predicted_iou,
stability_score``. Everything is sorted, so identical tables give a byte-identical file.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import pyarrow as pa

from pipeline import schema as col
from pipeline.segment.masks import decode_rle


def build_coco(
    images: pa.Table,
    annotations: pa.Table,
    categories: list[dict],
    segmentation: Literal["rle", "polygon"] = "rle",
    info: dict | None = None,
) -> dict:
    labeled = images.filter(pa.compute.equal(images[col.STATUS], "labeled")).sort_by(col.IMAGE_ID)
    coco_images = [
        {
            "id": r[col.COCO_IMAGE_ID],
            "file_name": r[col.IMAGE_ID],
            "width": r[col.IMAGE_WIDTH],
            "height": r[col.IMAGE_HEIGHT],
        }
        for r in labeled.select([col.COCO_IMAGE_ID, col.IMAGE_ID, col.IMAGE_WIDTH, col.IMAGE_HEIGHT]).to_pylist()
    ]
    rows = annotations.sort_by([(col.IMAGE_ID, "ascending"), (col.ANNOTATION_ID, "ascending")]).to_pylist()
    return {
        "info": info or {},
        "images": coco_images,
        "annotations": [_annotation(r, segmentation) for r in rows],
        "categories": sorted(categories, key=lambda c: c["id"]),
    }


def _annotation(row: dict, segmentation: str) -> dict:
    rle = {"size": [row[col.IMAGE_HEIGHT], row[col.IMAGE_WIDTH]], "counts": row[col.RLE_COUNTS]}
    return {
        "id": row[col.ANNOTATION_ID],
        "image_id": row[col.COCO_IMAGE_ID],
        "category_id": row[col.CATEGORY_ID],
        "segmentation": rle if segmentation == "rle" else rle_to_polygons(rle),
        "area": row[col.AREA],
        "bbox": [round(float(v), 2) for v in row[col.BBOX_XYWH]],
        "iscrowd": 0,
        "score": _round(row[col.SCORE]),
        "predicted_iou": _round(row[col.PREDICTED_IOU]),
        "stability_score": _round(row[col.STABILITY_SCORE]),
    }


def rle_to_polygons(rle: dict) -> list[list[float]]:
    """Outer contours of a mask as COCO polygons (x1, y1, x2, y2, ...); parts under 3 points are dropped."""
    mask = decode_rle(rle).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def _round(value: float) -> float:
    return round(float(value), 6)
