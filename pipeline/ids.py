"""Deterministic integer ids: the same image id and mask index give the same id in every run.

COCO needs integer ids; they are the first 63 bits of a sha256, so they are positive int64 values. At a billion
annotations the chance of any collision is about 5%; ``pipeline.io.commit`` checks uniqueness before writing.
"""

from __future__ import annotations

import hashlib

_MASK63 = (1 << 63) - 1


def _hash63(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") & _MASK63


def coco_image_id_for(image_id: str) -> int:
    """Integer COCO image id of an image id (when the input did not bring one)."""
    return _hash63(f"image\n{image_id}")


def annotation_id_for(image_id: str, mask_index: int) -> int:
    """Integer annotation id of the ``mask_index``-th kept mask of an image (in the segment operator's order)."""
    return _hash63(f"annotation\n{image_id}\n{mask_index}")
