"""Commit a run: check that every input image is done exactly once, then write coco.json, run.json, report/ and
_SUCCESS (last)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schema as col
from pipeline.config.sections import StorageConfig
from pipeline.io import storage as st
from pipeline.io.coco import build_coco
from pipeline.io.run_output import ANNOTATIONS, COCO_JSON, IMAGES, RUN_JSON, SUCCESS, dedupe_parts, read_table
from pipeline.io.tables import ANNOTATIONS_SCHEMA, IMAGES_SCHEMA
from pipeline.redact import redact
from pipeline.report.write import write_report

log = logging.getLogger(__name__)


class IncompleteRunError(RuntimeError):
    """The written parts do not cover the input exactly once; the run is not committed."""


def commit_run(
    output_uri: str,
    storage: StorageConfig,
    *,
    expected_image_ids: set[str],
    categories: list[dict],
    coco: bool,
    segmentation: Literal["rle", "polygon"],
    run_info: dict,
    report_sample: int | None = None,
) -> dict[str, int]:
    """De-duplicates and verifies the parts, writes coco.json (optional), run.json, the review report (unless
    ``report_sample`` is None; see :mod:`pipeline.report.write`), then _SUCCESS; returns the counts.

    Images written by two parts (task retries, zombie writers) are first reduced to one copy (see
    :func:`pipeline.io.run_output.dedupe_parts`); the check that follows still refuses any duplicate.
    """
    duplicates_removed = dedupe_parts(output_uri, storage)
    images = _read(output_uri, IMAGES, storage, IMAGES_SCHEMA)
    ids = images[col.IMAGE_ID].to_pylist()
    duplicated = [i for i, n in Counter(ids).items() if n > 1]
    if duplicated:
        raise IncompleteRunError(f"{len(duplicated)} images were written twice (e.g. {duplicated[0]!r})")
    missing = expected_image_ids - set(ids)
    if missing:
        raise IncompleteRunError(f"{len(missing)} input images have no result (e.g. {sorted(missing)[0]!r})")
    annotations = _read(output_uri, ANNOTATIONS, storage, ANNOTATIONS_SCHEMA)
    if annotations.num_rows != len(set(annotations[col.ANNOTATION_ID].to_pylist())):
        raise IncompleteRunError("annotation ids are not unique; the run is not committed")
    statuses = Counter(images[col.STATUS].to_pylist())
    counts = {
        "images": images.num_rows,
        "labeled": statuses.get("labeled", 0),
        "errors": statuses.get("error", 0),
        "annotations": annotations.num_rows,
        "prompts_dropped": int(pc.sum(images[col.PROMPTS_DROPPED]).as_py() or 0),
        "masks_dropped": int(pc.sum(images[col.MASKS_DROPPED]).as_py() or 0),
        "duplicates_removed": duplicates_removed,
    }
    if coco:
        info = {"description": "samlabel", "model": run_info["model"]["name"], "run_id": run_info["run_id"]}
        document = build_coco(images, annotations, categories, segmentation, info)
        _write_json(st.join_uri(output_uri, COCO_JSON), document, storage, indent=None)
    _write_json(st.join_uri(output_uri, RUN_JSON), {**run_info, "counts": counts}, storage, indent=2)
    if report_sample is not None:
        meta = {
            "run": run_info["run_id"],
            "model": run_info["model"]["name"],
            "prompts": run_info.get("config", {}).get("prompts", {}).get("mode", ""),
            "output": redact(output_uri),
        }
        try:
            write_report(output_uri, storage, report_sample, meta)
        except Exception as e:  # the report is a view of the labels: never fail a finished run over it
            log.warning("review report not written (%s: %s)", type(e).__name__, redact(str(e)))
    st.write_bytes(st.join_uri(output_uri, SUCCESS), b"", storage)
    return counts


def _read(output_uri: str, folder: str, storage: StorageConfig, schema: pa.Schema) -> pa.Table:
    table = read_table(output_uri, folder, storage)
    return table.cast(schema) if table.num_columns else schema.empty_table()


def _write_json(uri: str, document: dict, storage: StorageConfig, indent: int | None) -> None:
    separators = (",", ":") if indent is None else None
    st.write_bytes(uri, json.dumps(document, indent=indent, separators=separators).encode(), storage)
