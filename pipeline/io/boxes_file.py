"""Box prompts from a file: COCO instances JSON (``file_name`` resolved against the input root) or Parquet.

Parquet columns: ``image_id`` or ``file_name``; ``bbox_xywh`` or ``bbox`` (COCO x, y, w, h); ``category_id``;
optional ``category_name``, ``annotation_id`` or ``id``, ``coco_image_id`` (our own annotations/ output works).
Returns the input table (one row per image, boxes as lists, XYXY) and the categories.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema as col
from pipeline.config.sections import StorageConfig
from pipeline.ids import coco_image_id_for
from pipeline.io import storage as st


def read_boxes_file(uri: str, input_uri: str, storage: StorageConfig) -> tuple[pa.Table, list[dict]]:
    data = st.read_bytes(uri, storage)
    input_root = _absolute(input_uri)
    if uri.lower().endswith(".json"):
        images, boxes, categories = _from_coco(uri, data)
    elif uri.lower().endswith(".parquet"):
        images, boxes, categories = _from_parquet(uri, data)
    else:
        raise ValueError(f"prompts file {uri} must be a COCO .json or a .parquet file")
    rows = []
    for file_name in sorted(images):
        items = boxes.get(file_name, [])
        rows.append(
            {
                col.IMAGE_ID: file_name,
                col.IMAGE_URI: st.join_uri(input_root, file_name),
                col.COCO_IMAGE_ID: images[file_name],
                col.PROMPT_BOXES_XYXY: [v for b, _, _ in items for v in b],
                col.PROMPT_BOX_IDS: [i for _, i, _ in items],
                col.PROMPT_CATEGORY_IDS: [c for _, _, c in items],
            }
        )
    schema = pa.schema(
        [
            (col.IMAGE_ID, pa.string()),
            (col.IMAGE_URI, pa.string()),
            (col.COCO_IMAGE_ID, pa.int64()),
            (col.PROMPT_BOXES_XYXY, pa.list_(pa.float32())),
            (col.PROMPT_BOX_IDS, pa.list_(pa.int64())),
            (col.PROMPT_CATEGORY_IDS, pa.list_(pa.int64())),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema), categories


def _absolute(uri: str) -> str:
    """Local roots become absolute paths, so image URIs stay valid in workers with another working directory."""
    scheme, path = st.split_uri(uri)
    return path if scheme == "file" else uri


def _xyxy(uri: str, bbox: object, ann_id: object) -> list[float]:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise ValueError(f"{uri}: annotation {ann_id} has bbox {bbox!r}; expected [x, y, w, h]")
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y + h]


def _from_coco(uri: str, data: bytes) -> tuple[dict, dict, list[dict]]:
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise ValueError(f"prompts file {uri} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or not {"images", "annotations"} <= doc.keys():
        raise ValueError(f"prompts file {uri} is not a COCO instances file (needs 'images' and 'annotations')")
    by_id, images = {}, {}
    for image in doc["images"]:
        name = str(image["file_name"])
        if name in images:
            raise ValueError(f"prompts file {uri} lists file_name {name!r} twice")
        images[name], by_id[image["id"]] = int(image["id"]), name
    boxes: dict[str, list] = defaultdict(list)
    for ann in doc["annotations"]:
        if ann.get("image_id") not in by_id:
            raise ValueError(
                f"prompts file {uri}: annotation {ann.get('id')} refers to unknown image {ann.get('image_id')}"
            )
        boxes[by_id[ann["image_id"]]].append(
            (_xyxy(uri, ann.get("bbox"), ann.get("id")), int(ann["id"]), int(ann["category_id"]))
        )
    categories = [
        {"id": int(c["id"]), "name": str(c["name"]), "supercategory": str(c.get("supercategory", ""))}
        for c in doc.get("categories", [])
    ]
    used = {c for items in boxes.values() for _, _, c in items}
    missing = used - {c["id"] for c in categories}
    categories += [{"id": c, "name": str(c), "supercategory": ""} for c in sorted(missing)]
    return images, boxes, categories


def _from_parquet(uri: str, data: bytes) -> tuple[dict, dict, list[dict]]:
    table = pq.read_table(io.BytesIO(data))
    names = set(table.column_names)
    key = next((c for c in ("image_id", "file_name") if c in names), None)
    bbox = next((c for c in ("bbox_xywh", "bbox") if c in names), None)
    ann_key = next((c for c in ("annotation_id", "id") if c in names), None)
    if key is None or bbox is None or "category_id" not in names:
        raise ValueError(
            f"prompts file {uri} needs columns image_id|file_name, bbox_xywh|bbox and category_id; "
            f"found {', '.join(sorted(names))}"
        )
    images, boxes, categories = {}, defaultdict(list), {}
    for i, row in enumerate(table.to_pylist()):
        name = str(row[key])
        images.setdefault(
            name, int(row["coco_image_id"]) if row.get("coco_image_id") is not None else coco_image_id_for(name)
        )
        ann_id = int(row[ann_key]) if ann_key else i + 1
        boxes[name].append((_xyxy(uri, row[bbox], ann_id), ann_id, int(row["category_id"])))
        categories.setdefault(int(row["category_id"]), str(row.get("category_name") or row["category_id"]))
    return images, boxes, [{"id": c, "name": n, "supercategory": ""} for c, n in sorted(categories.items())]
