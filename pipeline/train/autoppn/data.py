"""Mask datasets for AutoPPN training: COCO instances files and SA-1B per-image JSON folders, local or S3.

- COCO: one ``.json`` with ``images`` (``id``, ``file_name``, ``height``, ``width``) and ``annotations``
  (``image_id``, ``segmentation`` as polygons, RLE or compressed RLE); ``file_name`` is resolved against
  ``images_root`` (default: the folder of the JSON). Crowd annotations (``iscrowd=1``) are skipped.
- SA-1B: a folder of ``<name>.jpg`` + ``<name>.json`` pairs, each JSON ``{"image": {file_name, height, width, ...},
  "annotations": [{"segmentation": {size, counts}, ...}]}``.

Every mask becomes a COCO compressed RLE dict (``counts`` as str) at the image's size. Images without masks are kept
(they teach the head where nothing is).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass

from pycocotools import mask as mask_utils

from pipeline.config.sections import StorageConfig
from pipeline.io.storage import list_files, read_bytes, uri_scheme


@dataclass(frozen=True)
class Sample:
    image_id: str
    """Unique id (COCO: the ``file_name``; SA-1B: the file's name)."""
    image_uri: str
    image_hw: tuple[int, int]
    masks: tuple[dict, ...]
    """COCO compressed RLEs at ``image_hw``."""


def read_dataset(uri: str, storage: StorageConfig, images_root: str | None = None) -> list[Sample]:
    """A COCO ``.json`` file or an SA-1B folder → samples sorted by image id; ValueError naming the problem."""
    if uri.lower().endswith(".json"):
        return read_coco(uri, storage, images_root)
    return read_sa1b(uri, storage)


def read_coco(uri: str, storage: StorageConfig, images_root: str | None = None) -> list[Sample]:
    data = _json(uri, storage)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{uri}: not a COCO instances file (no 'images' list)")
    root = images_root or _parent(uri)
    by_image: dict[int, list[dict]] = {}
    for ann in data.get("annotations", []):
        if not ann.get("iscrowd", 0):
            by_image.setdefault(ann["image_id"], []).append(ann)
    samples = []
    for image in data["images"]:
        hw = (int(image["height"]), int(image["width"]))
        masks = tuple(_to_rle(a["segmentation"], hw, uri) for a in by_image.get(image["id"], []))
        name = image["file_name"]
        samples.append(Sample(name, _join(root, name), hw, masks))
    return sorted(samples, key=lambda s: s.image_id)


def read_sa1b(folder: str, storage: StorageConfig) -> list[Sample]:
    files = [u for u, _ in list_files(folder, storage) if u.lower().endswith(".json")]
    if not files:
        raise ValueError(f"{folder}: no SA-1B .json files found (expected <name>.jpg + <name>.json pairs)")
    samples = []
    for uri in files:
        data = _json(uri, storage)
        try:
            image = data["image"]
            hw = (int(image["height"]), int(image["width"]))
            masks = tuple(_to_rle(a["segmentation"], hw, uri) for a in data["annotations"])
            name = image.get("file_name") or posixpath.basename(uri)[: -len(".json")] + ".jpg"
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{uri}: not an SA-1B annotation file (missing {exc})") from None
        samples.append(Sample(name, _join(_parent(uri), name), hw, masks))
    return sorted(samples, key=lambda s: s.image_id)


def _json(uri: str, storage: StorageConfig) -> object:
    try:
        return json.loads(read_bytes(uri, storage))
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{uri}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _to_rle(segmentation: object, hw: tuple[int, int], uri: str) -> dict:
    h, w = hw
    if isinstance(segmentation, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, h, w)
    elif isinstance(segmentation, dict) and "counts" in segmentation:
        counts = segmentation["counts"]
        rle = {"size": list(segmentation["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}
    else:
        raise ValueError(f"{uri}: unsupported segmentation {type(segmentation).__name__}")
    if list(rle["size"]) != [h, w]:
        raise ValueError(f"{uri}: mask size {list(rle['size'])} differs from its image size {[h, w]}")
    counts = rle["counts"]
    return {"size": [h, w], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _parent(uri: str) -> str:
    return uri.rsplit("/", 1)[0] if "/" in uri else "."


def _join(root: str, name: str) -> str:
    if uri_scheme(name) is not None or name.startswith("/"):
        return name
    return f"{root.rstrip('/')}/{name}"
