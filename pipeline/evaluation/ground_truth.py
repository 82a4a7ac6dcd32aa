"""COCO ground truth for evaluation, local or on S3: annotations, masks, area buckets, and image loading."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageOps
from pycocotools.coco import COCO

from pipeline.config.sections import StorageConfig
from pipeline.io import storage as st

SMALL_MAX = 32**2
LARGE_MIN = 96**2
BUCKETS = ("all", "large", "medium", "small")


def load_coco(uri: str, storage: StorageConfig) -> COCO:
    """A pycocotools COCO object from a local or ``s3://`` instances file (ValueError naming the file when bad)."""
    try:
        document = json.loads(st.read_bytes(uri, storage))
    except ValueError as e:
        raise ValueError(f"ground truth {uri} is not valid JSON: {e}") from None
    if not isinstance(document, dict) or not {"images", "annotations", "categories"} <= document.keys():
        raise ValueError(f"ground truth {uri} is not a COCO instances file (needs images, annotations, categories)")
    coco = COCO()
    coco.dataset = document
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def area_bucket(area: float) -> str:
    """COCO size bucket of an annotation area: small < 32², large > 96², medium otherwise (the official split)."""
    if area < SMALL_MAX:
        return "small"
    return "large" if area > LARGE_MIN else "medium"


def evaluated_annotations(coco: COCO, image_id: int) -> list[dict]:
    """The annotations of an image the prompted protocols use: every one with area >= 1, in id order."""
    return sorted((a for a in coco.imgToAnns[image_id] if a["area"] >= 1), key=lambda a: a["id"])


def load_image(images_uri: str, file_name: str, storage: StorageConfig) -> np.ndarray:
    """HWC uint8 RGB image ``file_name`` under ``images_uri``, EXIF-oriented, as the labeling job decodes it."""
    data = st.read_bytes(st.join_uri(images_uri, file_name), storage)
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def iter_images(coco: COCO, image_ids: list[int], chunk: int) -> Iterator[list[dict]]:
    """Image records in chunks of ``chunk`` (one encoder call each)."""
    for start in range(0, len(image_ids), chunk):
        yield [coco.imgs[i] for i in image_ids[start : start + chunk]]


def bucket_means(ious: list[float], buckets: list[str]) -> dict[str, dict[str, float | int]]:
    """``{"miou": {bucket: mean IoU}, "count": {bucket: n}}`` over all / large / medium / small (empty: null)."""
    values = np.asarray(ious, np.float64)
    names = np.asarray(buckets)
    miou, count = {}, {}
    for bucket in BUCKETS:
        selected = values if bucket == "all" else values[names == bucket]
        miou[bucket] = round(float(selected.mean()), 6) if len(selected) else None
        count[bucket] = int(len(selected))
    return {"miou": miou, "count": count}
