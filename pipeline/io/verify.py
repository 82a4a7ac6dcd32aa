"""Verification of a run's parts before its commit, streaming: every input image done exactly once, annotation ids
unique. Only id and count columns are read, one part at a time; image ids are held as Arrow arrays and annotation
ids are checked in hash buckets spooled to local files, so the driver's memory does not grow with the masks."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schema as col
from pipeline.config.sections import StorageConfig
from pipeline.io import storage as st
from pipeline.io.run_output import ANNOTATIONS, IMAGES, read_part

ANNOTATION_IDS_PER_BUCKET = 2_000_000
IMAGE_COUNT_COLUMNS = [
    col.IMAGE_ID,
    col.STATUS,
    col.PROMPTS_DROPPED,
    col.MASKS_DROPPED,
    col.MASKS_UNNAMED,
    "num_annotations",
]


class IncompleteRunError(RuntimeError):
    """The written parts do not cover the input exactly once; the run is not committed."""


def verify_parts(
    output_uri: str, storage: StorageConfig, parts: list[str], expected_image_ids: pa.Array | pa.ChunkedArray
) -> dict[str, int]:
    """Checks that ``parts`` (images part file names) hold every expected image exactly once and unique annotation
    ids; returns the counts (images, labeled, errors, annotations, prompts_dropped, masks_dropped, masks_unnamed)."""
    names = ("images", "labeled", "errors", "prompts_dropped", "masks_dropped", "masks_unnamed", "declared")
    counts = dict.fromkeys(names, 0)
    ids = []
    for part in parts:
        table = read_part(st.join_uri(output_uri, IMAGES, part), storage, IMAGE_COUNT_COLUMNS)
        ids.append(table[col.IMAGE_ID])
        counts["images"] += table.num_rows
        counts["labeled"] += _count(pc.equal(table[col.STATUS], "labeled"))
        counts["errors"] += _count(pc.equal(table[col.STATUS], "error"))
        for name in ("prompts_dropped", "masks_dropped", "masks_unnamed"):
            counts[name] += int(pc.sum(table[name]).as_py() or 0)
        counts["declared"] += int(pc.sum(table["num_annotations"]).as_py() or 0)
    done = pa.chunked_array([c for chunked in ids for c in chunked.chunks], pa.string())
    if len(pc.unique(done)) != len(done):
        repeated = pc.value_counts(done).filter(pc.greater(pc.struct_field(pc.value_counts(done), "counts"), 1))
        example = repeated[0]["values"].as_py()
        raise IncompleteRunError(f"{len(repeated)} images were written twice (e.g. {example!r})")
    missing = pc.filter(expected_image_ids, pc.invert(pc.is_in(expected_image_ids, value_set=done)))
    if len(missing):
        example = pc.min(missing).as_py()
        raise IncompleteRunError(f"{len(missing)} input images have no result (e.g. {example!r})")
    counts["annotations"] = check_annotation_ids(output_uri, storage, parts, counts.pop("declared"))
    return counts


def check_annotation_ids(output_uri: str, storage: StorageConfig, parts: list[str], expected_count: int) -> int:
    """Counts the annotations of ``parts`` and raises IncompleteRunError when an annotation id repeats. The ids go
    to ``ceil(expected_count / ANNOTATION_IDS_PER_BUCKET)`` local files by id modulo that number; each file is then
    checked alone."""
    buckets = max(1, math.ceil(expected_count / ANNOTATION_IDS_PER_BUCKET))
    total = 0
    with tempfile.TemporaryDirectory(prefix="samlabel-ids-") as folder:
        files = [Path(folder) / f"{b}.int64" for b in range(buckets)]
        for part in parts:
            table = read_part(st.join_uri(output_uri, ANNOTATIONS, part), storage, [col.ANNOTATION_ID])
            if not table.num_rows:
                continue
            ids = table[col.ANNOTATION_ID].to_numpy().astype(np.int64)
            total += len(ids)
            which = ids % buckets
            for b, path in enumerate(files):
                with open(path, "ab") as out:
                    ids[which == b].tofile(out)
        for path in files:
            ids = np.fromfile(path, np.int64) if path.exists() else np.zeros(0, np.int64)
            ids.sort()
            if np.any(ids[1:] == ids[:-1]):
                raise IncompleteRunError("annotation ids are not unique; the run is not committed")
    return total


def _count(mask: pa.ChunkedArray) -> int:
    return int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)
