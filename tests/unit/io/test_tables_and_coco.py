"""Per-image records → annotations/errors/images tables → COCO JSON that pycocotools loads (COCO and loadRes)."""

import copy
import json

import numpy as np
import pyarrow as pa
from pycocotools.coco import COCO

from pipeline import schema as col
from pipeline.io.coco import build_coco, rle_to_polygons
from pipeline.io.tables import ANNOTATIONS_SCHEMA, IMAGES_SCHEMA, split_records
from pipeline.segment.masks import decode_rle, encode_rle


def _records() -> pa.Table:
    mask = np.zeros((1, 20, 30), bool)
    mask[0, 5:10, 3:13] = True
    rle = encode_rle(mask)[0]["counts"]
    rows = [
        {
            col.IMAGE_ID: "b.jpg",
            col.STATUS: "labeled",
            col.ANNOTATION_ID: [11, 12],
            col.AREA: [50, 50],
            col.RLE_COUNTS: [rle, rle],
            col.BBOX_XYWH: [[3.0, 5.0, 10.0, 5.0]] * 2,
            col.PROMPT_BOX_XYXY: [None, None],
            col.PROMPT_POINTS: [[[4.0, 6.0]], [[7.0, 7.0]]],
        },
        {
            col.IMAGE_ID: "a.jpg",
            col.STATUS: "labeled",
            col.ANNOTATION_ID: [],
            col.AREA: [],
            col.RLE_COUNTS: [],
            col.BBOX_XYWH: [],
            col.PROMPT_BOX_XYXY: [],
            col.PROMPT_POINTS: [],
        },
        {
            col.IMAGE_ID: "bad.jpg",
            col.STATUS: "error",
            col.ERROR_STAGE: "decode",
            col.ERROR_TYPE: "truncated",
            col.ERROR_MESSAGE: "image file is truncated",
            col.ANNOTATION_ID: [],
            col.AREA: [],
            col.RLE_COUNTS: [],
            col.BBOX_XYWH: [],
            col.PROMPT_BOX_XYXY: [],
            col.PROMPT_POINTS: [],
        },
    ]
    for i, row in enumerate(rows):
        k = len(row[col.ANNOTATION_ID])
        row.update(
            {
                col.IMAGE_URI: f"/in/{row[col.IMAGE_ID]}",
                col.COCO_IMAGE_ID: 100 + i,
                col.IMAGE_WIDTH: 30,
                col.IMAGE_HEIGHT: 20,
                col.CATEGORY_ID: [1] * k,
                col.CATEGORY_NAME: ["object"] * k,
                col.PREDICTED_IOU: [0.9] * k,
                col.STABILITY_SCORE: [0.95] * k,
                col.SCORE: [0.9] * k,
                col.PROMPT_TYPE: "grid",
                col.MODEL: "mini-l",
                col.RUN_ID: "r1",
            }
        )
        row.setdefault(col.ERROR_STAGE, None)
        row.setdefault(col.ERROR_TYPE, None)
        row.setdefault(col.ERROR_MESSAGE, None)
    return pa.Table.from_pylist(rows)


def test_split_records_gives_fixed_schemas_and_one_images_row_per_input():
    annotations, errors, images = split_records(_records())
    assert annotations.schema == ANNOTATIONS_SCHEMA and images.schema == IMAGES_SCHEMA
    assert annotations[col.ANNOTATION_ID].to_pylist() == [11, 12]
    assert annotations[col.IMAGE_ID].to_pylist() == ["b.jpg", "b.jpg"]
    assert annotations[col.PROMPT_POINTS].to_pylist() == [[[4.0, 6.0]], [[7.0, 7.0]]]
    assert errors.to_pylist()[0]["error_type"] == "truncated"
    assert sorted(images[col.IMAGE_ID].to_pylist()) == ["a.jpg", "b.jpg", "bad.jpg"]
    assert dict(zip(images[col.IMAGE_ID].to_pylist(), images["num_annotations"].to_pylist(), strict=True)) == {
        "b.jpg": 2,
        "a.jpg": 0,
        "bad.jpg": 0,
    }


def test_coco_loads_with_pycocotools_and_loadres(tmp_path):
    annotations, _, images = split_records(_records())
    categories = [{"id": 1, "name": "object", "supercategory": ""}]
    document = build_coco(images, annotations, categories, "rle", {"run_id": "r1"})
    assert [i["file_name"] for i in document["images"]] == ["a.jpg", "b.jpg"]  # errored image left out, sorted
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(document))
    coco = COCO(str(path))
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[100]))[0]
    assert ann["area"] == 50 and ann["bbox"] == [3.0, 5.0, 10.0, 5.0] and ann["iscrowd"] == 0
    assert coco.annToMask(ann).sum() == 50
    results = coco.loadRes(copy.deepcopy(document["annotations"]))  # loadRes renumbers ids in place
    assert len(results.getAnnIds()) == 2
    again = build_coco(images, annotations, categories, "rle", {"run_id": "r1"})
    assert json.dumps(again) == json.dumps(document)


def test_polygons_cover_the_mask():
    mask = np.zeros((1, 40, 40), bool)
    mask[0, 10:30, 5:25] = True
    rle = encode_rle(mask)[0]
    polygons = rle_to_polygons(rle)
    assert len(polygons) == 1 and len(polygons[0]) >= 8
    assert decode_rle(rle).sum() == 400
