"""The output folder of a run: part files, the start marker, resume state (pure storage calls, no Ray).

Layout under ``--output``::

    annotations/part-<h>.parquet   one row per kept mask
    errors/part-<h>.parquet        one row per image that could not be labeled
    images/part-<h>.parquet        one row per image the part completed (labeled or error): the completion record
    _started.json                  config fingerprint of the run being written (resume refuses another config)
    coco.json, run.json, _SUCCESS  written by the commit, _SUCCESS last

``<h>`` is a hash of the image ids in the part, so a retried write task rewrites the same files. A part's
``images`` file is written after its other files: an image is done exactly when it appears in ``images/``, and
``annotations``/``errors`` files without their ``images`` file (a crash between writes) are deleted on resume.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pipeline import schema as col
from pipeline.config.sections import StorageConfig
from pipeline.io import storage as st
from pipeline.io.tables import split_records

ANNOTATIONS, ERRORS, IMAGES = "annotations", "errors", "images"
STARTED, RUN_JSON, COCO_JSON, SUCCESS = "_started.json", "run.json", "coco.json", "_SUCCESS"


_NO_IDS = pa.chunked_array([], pa.string())
# Output columns newer than the first parts that may exist, with their types.
LATER_COLUMNS = {col.CLASS_SCORE: pa.float32(), col.MASKS_UNNAMED: pa.int64()}


class OutputConflictError(ValueError):
    """The output folder holds something this run must not touch or mix with."""


@dataclass(frozen=True)
class OutputState:
    complete: bool
    """A run with the same fingerprint already committed here."""
    done_image_ids: pa.ChunkedArray
    """Images completed by an earlier, interrupted attempt of the same run (Arrow strings: compact at any size)."""


def part_name(image_ids: list[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(image_ids)).encode("utf-8")).hexdigest()
    return f"part-{digest[:24]}.parquet"


def write_part(output_uri: str, storage: StorageConfig, records: pa.Table) -> dict[str, int]:
    """Writes one part (annotations, errors, then images last) and returns its counts and stage seconds.

    The ``seconds_<stage>`` columns of ``records`` (per-row timings of earlier operators) are summed into the
    returned dict under their column names; they are not written.
    """
    annotations, errors, images = (t.sort_by(col.IMAGE_ID) for t in split_records(records))
    name = part_name(images[col.IMAGE_ID].to_pylist())
    start = time.perf_counter()
    for folder, table in ((ANNOTATIONS, annotations), (ERRORS, errors)):
        if table.num_rows:
            st.write_bytes(st.join_uri(output_uri, folder, name), _parquet_bytes(table), storage)
    st.write_bytes(st.join_uri(output_uri, IMAGES, name), _parquet_bytes(images), storage)
    stage_seconds = {
        name: float(pc.sum(records[name]).as_py() or 0.0)
        for name in records.column_names
        if name.startswith(col.SECONDS_PREFIX)
    }
    return {
        "images": images.num_rows,
        "labeled": images.num_rows - errors.num_rows,
        "errors": errors.num_rows,
        "annotations": annotations.num_rows,
        "write_seconds": time.perf_counter() - start,
        **stage_seconds,
    }


def prepare_output(output_uri: str, storage: StorageConfig, fingerprint: str, config: dict) -> OutputState:
    """Checks the output folder before any work: fresh, resumable (same fingerprint) or complete."""
    if st.exists(st.join_uri(output_uri, SUCCESS), storage):
        previous = _read_json(st.join_uri(output_uri, RUN_JSON), storage).get("fingerprint")
        if previous != fingerprint:
            raise OutputConflictError(
                f"{output_uri} already holds a completed run with another configuration "
                f"(fingerprint {str(previous)[:12]} vs {fingerprint[:12]}); choose a new --output"
            )
        return OutputState(complete=True, done_image_ids=_NO_IDS)
    started_uri = st.join_uri(output_uri, STARTED)
    if st.exists(started_uri, storage):
        previous = _read_json(started_uri, storage).get("fingerprint")
        if previous != fingerprint:
            raise OutputConflictError(
                f"{output_uri} holds an unfinished run with another configuration "
                f"(fingerprint {str(previous)[:12]} vs {fingerprint[:12]}); rerun it with its own config or "
                f"choose a new --output"
            )
        delete_orphan_parts(output_uri, storage)
        return OutputState(complete=False, done_image_ids=read_done_image_ids(output_uri, storage))
    if _has_files(output_uri, storage):
        raise OutputConflictError(f"{output_uri} is not empty and holds no samlabel run; choose an empty --output")
    payload = {"fingerprint": fingerprint, "config": config, "started_at": time.time()}
    st.write_bytes(started_uri, json.dumps(payload, indent=2).encode(), storage)
    return OutputState(complete=False, done_image_ids=_NO_IDS)


def read_table(
    output_uri: str,
    folder: str,
    storage: StorageConfig,
    columns: list[str] | None = None,
    filter: pads.Expression | None = None,  # noqa: A002 (pyarrow's own name)
) -> pa.Table:
    """All part files of one output dataset as one table (empty table with no columns when there are none).

    ``filter`` is pushed down to the Parquet reader (e.g. ``pc.field("image_id").isin([...])``).
    """
    uris = [uri for uri, _ in _list(st.join_uri(output_uri, folder), storage) if uri.endswith(".parquet")]
    if not uris:
        return pa.table({})
    fs, _ = st.filesystem(uris[0], storage)
    paths = [st.filesystem(uri, storage)[1] for uri in uris]
    return pads.dataset(paths, filesystem=fs, format="parquet").to_table(columns=columns, filter=filter)


def read_done_image_ids(output_uri: str, storage: StorageConfig) -> pa.ChunkedArray:
    """The ids of the images in the output's ``images`` parts (read part by part, only that column)."""
    columns = [read_part(st.join_uri(output_uri, IMAGES, part), storage, [col.IMAGE_ID])[col.IMAGE_ID]
               for part in part_names(output_uri, storage)]  # fmt: skip
    return pa.chunked_array([c for column in columns for c in column.chunks], pa.string())


def delete_orphan_parts(output_uri: str, storage: StorageConfig) -> list[str]:
    """Deletes annotations/errors parts whose images part is missing (their images will be labeled again)."""
    done = {uri.rsplit("/", 1)[-1] for uri, _ in _list(st.join_uri(output_uri, IMAGES), storage)}
    orphans = []
    for folder in (ANNOTATIONS, ERRORS):
        for uri, _ in _list(st.join_uri(output_uri, folder), storage):
            if uri.rsplit("/", 1)[-1] not in done:
                st.delete(uri, storage)
                orphans.append(uri)
    return orphans


def read_part(uri: str, storage: StorageConfig, columns: list[str] | None) -> pa.Table:
    """One part file's ``columns`` (all when None); an empty table when the file does not exist. Columns added to
    the output after a part was written (``LATER_COLUMNS``) come back as nulls, so older parts still resume."""
    if not st.exists(uri, storage):
        return pa.table({})
    # One whole-object GET per part: pyarrow's small ranged footer reads fail without retry when S3 throttles.
    data = pa.BufferReader(st.read_bytes(uri, storage))
    if columns is None:
        return pq.read_table(data)
    present = set(pq.read_schema(data).names)
    data.seek(0)
    missing = [c for c in columns if c not in present and c in LATER_COLUMNS]
    table = pq.read_table(data, columns=[c for c in columns if c not in missing])
    for name in missing:
        table = table.append_column(pa.field(name, LATER_COLUMNS[name]), pa.nulls(table.num_rows, LATER_COLUMNS[name]))
    return table.select(columns)


def part_names(output_uri: str, storage: StorageConfig) -> list[str]:
    """The file names of the run's ``images`` parts (one per completed part), sorted."""
    return [
        uri.rsplit("/", 1)[-1]
        for uri, _ in _list(st.join_uri(output_uri, IMAGES), storage)
        if uri.endswith(".parquet")
    ]


def dedupe_parts(output_uri: str, storage: StorageConfig) -> int:
    """Keeps one copy of every image written by more than one part; returns how many copies were removed.

    A retried write task can regroup images into another part, and a zombie task of a killed driver can write
    late, so the same image may be complete in two parts. The copy in the part whose name sorts first is kept;
    the other parts are rewritten without that image (annotations and errors first, their images file last, as
    :func:`write_part` does, so a crash mid-way leaves parts that the next commit de-duplicates the same way).
    """
    parts = part_names(output_uri, storage)
    owners = [
        pa.table({"image_id": ids, "part": pa.array(np.full(len(ids), k, np.int32))})
        for k, part in enumerate(parts)
        for ids in [read_part(st.join_uri(output_uri, IMAGES, part), storage, [col.IMAGE_ID])[col.IMAGE_ID]]
    ]
    if not owners:
        return 0
    table = pa.concat_tables(owners)
    counts = table.group_by("image_id").aggregate([("part", "count")])
    repeated = counts.filter(pc.greater(counts["part_count"], 1))["image_id"]
    drop: dict[str, set[str]] = {}
    if len(repeated):
        rows = table.filter(pc.is_in(table["image_id"], value_set=repeated)).to_pylist()
        by_image: dict[str, list[int]] = {}
        for row in rows:
            by_image.setdefault(row["image_id"], []).append(row["part"])
        for image_id, ks in by_image.items():
            for k in sorted(ks)[1:]:  # the part whose name sorts first keeps the image
                drop.setdefault(parts[k], set()).add(image_id)
    for part, image_ids in sorted(drop.items()):
        _rewrite_without(output_uri, storage, part, image_ids)
    return sum(len(ids) for ids in drop.values())


def _rewrite_without(output_uri: str, storage: StorageConfig, part: str, image_ids: set[str]) -> None:
    drop = pa.array(sorted(image_ids), pa.string())
    images_uri = st.join_uri(output_uri, IMAGES, part)
    images = pq.read_table(pa.BufferReader(st.read_bytes(images_uri, storage)))
    kept_images = images.filter(pc.invert(pc.is_in(images[col.IMAGE_ID], value_set=drop)))
    for folder in (ANNOTATIONS, ERRORS):
        uri = st.join_uri(output_uri, folder, part)
        if not st.exists(uri, storage):
            continue
        table = pq.read_table(pa.BufferReader(st.read_bytes(uri, storage)))
        kept = table.filter(pc.invert(pc.is_in(table[col.IMAGE_ID], value_set=drop)))
        if kept.num_rows:
            st.write_bytes(uri, _parquet_bytes(kept), storage)
        else:
            st.delete(uri, storage)
    if kept_images.num_rows:
        st.write_bytes(images_uri, _parquet_bytes(kept_images), storage)
    else:
        st.delete(images_uri, storage)


def _list(prefix_uri: str, storage: StorageConfig) -> list[tuple[str, int]]:
    if not st.exists(prefix_uri, storage):
        return []
    return st.list_files(prefix_uri, storage, recursive=False)


def _has_files(output_uri: str, storage: StorageConfig) -> bool:
    return st.exists(output_uri, storage) and bool(st.list_files(output_uri, storage, recursive=True))


def _read_json(uri: str, storage: StorageConfig) -> dict:
    try:
        return json.loads(st.read_bytes(uri, storage))
    except (OSError, ValueError):
        return {}


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()
