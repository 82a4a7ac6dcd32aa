"""COCO instances JSON from the output tables. Loads with pycocotools ``COCO`` and ``COCO.loadRes``.

Images are the labeled ones (``file_name`` = image id, the path relative to the input); annotations carry
``id, image_id, category_id, segmentation{size, counts}, area, bbox, iscrowd=0, score, predicted_iou,
stability_score``, and ``class_score`` when a classifier named the masks. Images are sorted by image id and
annotations by (image id, annotation id), so identical labels give a byte-identical file however they were split
into parts.

A run writes one ``coco.json`` (:func:`write_coco_json`: streamed through a local spool file, so the driver holds
only image ids and offsets, never the annotations), or, above ``output.coco_max_images``, one shard per part under
``coco/`` listed in ``coco/index.json`` (:func:`write_coco_shard`, one Ray task per part). :func:`merge_coco_shards`
turns shards into the single file the small run would have written.
"""

from __future__ import annotations

import array
import json
import tempfile
from collections.abc import Iterable, Iterator
from typing import Literal

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schema as col
from pipeline.config.sections import StorageConfig
from pipeline.io import storage as st
from pipeline.io.run_output import ANNOTATIONS, IMAGES, read_part
from pipeline.segment.masks import decode_rle

Segmentation = Literal["rle", "polygon"]
COCO_DIR, COCO_INDEX = "coco", "index.json"
IMAGE_COLUMNS = [col.COCO_IMAGE_ID, col.IMAGE_ID, col.IMAGE_WIDTH, col.IMAGE_HEIGHT, col.STATUS]
ANNOTATION_COLUMNS = [
    col.IMAGE_ID,
    col.ANNOTATION_ID,
    col.COCO_IMAGE_ID,
    col.CATEGORY_ID,
    col.IMAGE_HEIGHT,
    col.IMAGE_WIDTH,
    col.RLE_COUNTS,
    col.AREA,
    col.BBOX_XYWH,
    col.SCORE,
    col.PREDICTED_IOU,
    col.STABILITY_SCORE,
    col.CLASS_SCORE,
]
_COMPACT = (",", ":")


def build_coco(
    images: pa.Table,
    annotations: pa.Table,
    categories: list[dict],
    segmentation: Segmentation = "rle",
    info: dict | None = None,
) -> dict:
    """The COCO document of (a part of) a run, in memory: for one part's tables, or a small run's."""
    return {
        "info": info or {},
        "images": [entry for _, entry in image_entries(images)],
        "annotations": [a for _, group in annotation_groups(annotations, segmentation) for a in group],
        "categories": sorted(categories, key=lambda c: c["id"]),
    }


def image_entries(images: pa.Table) -> list[tuple[str, dict]]:
    """(image id, COCO image) of the labeled images, sorted by image id."""
    if not images.num_rows:
        return []
    labeled = images.filter(pc.equal(images[col.STATUS], "labeled")).sort_by(col.IMAGE_ID)
    rows = labeled.select([col.COCO_IMAGE_ID, col.IMAGE_ID, col.IMAGE_WIDTH, col.IMAGE_HEIGHT]).to_pylist()
    return [
        (
            r[col.IMAGE_ID],
            {
                "id": r[col.COCO_IMAGE_ID],
                "file_name": r[col.IMAGE_ID],
                "width": r[col.IMAGE_WIDTH],
                "height": r[col.IMAGE_HEIGHT],
            },
        )
        for r in rows
    ]


def annotation_groups(annotations: pa.Table, segmentation: Segmentation) -> list[tuple[str, list[dict]]]:
    """(image id, its COCO annotations by annotation id), sorted by image id."""
    groups: list[tuple[str, list[dict]]] = []
    if not annotations.num_rows:
        return groups
    order = [(col.IMAGE_ID, "ascending"), (col.ANNOTATION_ID, "ascending")]
    rows = annotations.select(ANNOTATION_COLUMNS).sort_by(order).to_pylist()
    for row in rows:
        if not groups or groups[-1][0] != row[col.IMAGE_ID]:
            groups.append((row[col.IMAGE_ID], []))
        groups[-1][1].append(_annotation(row, segmentation))
    return groups


def image_texts(images: pa.Table) -> list[tuple[str, bytes]]:
    """(image id, its COCO image as compact JSON) of the labeled images, sorted by image id."""
    return [(image_id, _dumps(entry)) for image_id, entry in image_entries(images)]


def annotation_texts(annotations: pa.Table, segmentation: Segmentation) -> list[tuple[str, bytes]]:
    """(image id, its COCO annotations as compact JSON joined by commas), sorted by image id: the bytes
    ``json.dumps`` gives for :func:`annotation_groups`, formatted directly (no dict per annotation) for RLE."""
    if segmentation != "rle":
        return [
            (image_id, b",".join(map(_dumps, group)))
            for image_id, group in annotation_groups(annotations, segmentation)
        ]
    if not annotations.num_rows:
        return []
    order = [(col.IMAGE_ID, "ascending"), (col.ANNOTATION_ID, "ascending")]
    table = annotations.select(ANNOTATION_COLUMNS).sort_by(order)
    columns = [table[name].to_pylist() for name in ANNOTATION_COLUMNS]
    texts: list[tuple[str, list[str]]] = []
    for image_id, aid, coco_id, category, h, w, rle, area, bbox, score, iou, stability, named in zip(
        *columns, strict=True
    ):
        box = ",".join(repr(round(float(v), 2)) for v in bbox)
        class_score = "" if named is None else f',"class_score":{_round(named)!r}'
        text = (
            f'{{"id":{aid},"image_id":{coco_id},"category_id":{category},"segmentation":{{"size":[{h},{w}],'
            f'"counts":{json.dumps(rle)}}},"area":{area},"bbox":[{box}],"iscrowd":0,"score":{_round(score)!r},'
            f'"predicted_iou":{_round(iou)!r},"stability_score":{_round(stability)!r}{class_score}}}'
        )
        if not texts or texts[-1][0] != image_id:
            texts.append((image_id, []))
        texts[-1][1].append(text)
    return [(image_id, ",".join(group).encode()) for image_id, group in texts]


def write_coco_json(
    uri: str,
    sources: Iterable[tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]],
    categories: list[dict],
    info: dict,
    storage: StorageConfig,
) -> dict[str, int]:
    """Writes one COCO file from ``sources`` (each: the images and the annotations of whole images as JSON text, as
    :func:`image_texts` / :func:`annotation_texts` give them), sorted across sources; returns its image count. Each
    text goes to a local spool file as it comes; memory holds (image id, offset, length)."""
    with tempfile.TemporaryFile() as spool:
        image_keys, annotation_keys = _Keys(), _Keys()
        for images, groups in sources:
            for image_id, text in images:
                image_keys.add(image_id, spool, text)
            for image_id, text in groups:
                annotation_keys.add(image_id, spool, text)
        with st.open_writer(uri, storage) as out:
            out.write(b'{"info":' + _dumps(info) + b',"images":[')
            image_keys.copy_sorted(spool, out)
            out.write(b'],"annotations":[')
            annotation_keys.copy_sorted(spool, out)
            out.write(b'],"categories":' + _dumps(sorted(categories, key=lambda c: c["id"])) + b"}")
    return {"images": len(image_keys)}


def write_coco_shard(
    output_uri: str,
    part: str,
    categories: list[dict],
    info: dict,
    segmentation: Segmentation,
    storage: StorageConfig,
) -> dict:
    """Writes ``coco/<part>.json`` from one part's images and annotations; returns its index entry."""
    images = read_part(st.join_uri(output_uri, IMAGES, part), storage, IMAGE_COLUMNS)
    annotations = read_part(st.join_uri(output_uri, ANNOTATIONS, part), storage, ANNOTATION_COLUMNS)
    name = part.removesuffix(".parquet") + ".json"
    source = (image_texts(images), annotation_texts(annotations, segmentation))
    counts = write_coco_json(st.join_uri(output_uri, COCO_DIR, name), [source], categories, info, storage)
    return {"file": name, **counts, "annotations": annotations.num_rows}


def write_coco_index(output_uri: str, shards: list[dict], categories: list[dict], info: dict, storage) -> None:
    """``coco/index.json``: the shards in order with their counts, and the run's totals, info and categories."""
    index = {
        "info": info,
        "categories": sorted(categories, key=lambda c: c["id"]),
        "images": sum(s["images"] for s in shards),
        "annotations": sum(s["annotations"] for s in shards),
        "shards": sorted(shards, key=lambda s: s["file"]),
    }
    st.write_bytes(st.join_uri(output_uri, COCO_DIR, COCO_INDEX), json.dumps(index, indent=2).encode(), storage)


def merge_coco_shards(output_uri: str, uri: str, storage: StorageConfig) -> dict[str, int]:
    """Merges the shards of ``output_uri``'s ``coco/`` into the one file ``uri``, shard by shard; returns counts."""
    index = json.loads(st.read_bytes(st.join_uri(output_uri, COCO_DIR, COCO_INDEX), storage))
    shard_uris = [st.join_uri(output_uri, COCO_DIR, s["file"]) for s in index["shards"]]
    counts = write_coco_json(uri, _shard_sources(shard_uris, storage), index["categories"], index["info"], storage)
    return {**counts, "annotations": index["annotations"]}


def rle_to_polygons(rle: dict) -> list[list[float]]:
    """Outer contours of a mask as COCO polygons (x1, y1, x2, y2, ...); parts under 3 points are dropped."""
    mask = decode_rle(rle).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


class _Keys:
    """Where each image's spooled bytes are: image ids, offsets and lengths."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.offsets = array.array("q")
        self.lengths = array.array("q")

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, image_id: str, spool, data: bytes) -> None:
        spool.seek(0, 2)
        self.ids.append(image_id)
        self.offsets.append(spool.tell())
        self.lengths.append(len(data))
        spool.write(data)

    def copy_sorted(self, spool, out) -> None:
        order = pc.sort_indices(pa.array(self.ids, pa.string())).to_numpy()
        for n, i in enumerate(order):
            spool.seek(self.offsets[i])
            out.write((b"," if n else b"") + spool.read(self.lengths[i]))


def _shard_sources(uris: list[str], storage: StorageConfig) -> Iterator[tuple[list, list]]:
    for uri in uris:
        document = json.loads(st.read_bytes(uri, storage))
        file_names = {image["id"]: image["file_name"] for image in document["images"]}
        groups: dict[str, list[bytes]] = {}
        for annotation in document["annotations"]:
            groups.setdefault(file_names[annotation["image_id"]], []).append(_dumps(annotation))
        images = [(image["file_name"], _dumps(image)) for image in document["images"]]
        yield images, [(image_id, b",".join(texts)) for image_id, texts in groups.items()]


def _annotation(row: dict, segmentation: str) -> dict:
    rle = {"size": [row[col.IMAGE_HEIGHT], row[col.IMAGE_WIDTH]], "counts": row[col.RLE_COUNTS]}
    named = {} if row.get(col.CLASS_SCORE) is None else {"class_score": _round(row[col.CLASS_SCORE])}
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
        **named,
    }


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=_COMPACT).encode()


def _round(value: float) -> float:
    return round(float(value), 6)
