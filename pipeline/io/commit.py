"""Commit a run: de-duplicate and verify the parts, then write COCO (one coco.json, or shards under coco/ for large
runs), run.json, report/ and _SUCCESS (last). Every step streams over the parts: the driver holds image ids and
offsets, never the annotations."""

from __future__ import annotations

import json
import logging

import pyarrow as pa
import ray

from pipeline.config.sections import OutputConfig, StorageConfig
from pipeline.io import storage as st
from pipeline.io.coco import (
    ANNOTATION_COLUMNS,
    COCO_DIR,
    IMAGE_COLUMNS,
    annotation_texts,
    image_texts,
    write_coco_index,
    write_coco_json,
    write_coco_shard,
)
from pipeline.io.run_output import (
    ANNOTATIONS,
    COCO_JSON,
    IMAGES,
    RUN_JSON,
    SUCCESS,
    dedupe_parts,
    part_names,
    read_part,
)
from pipeline.io.verify import IncompleteRunError, verify_parts
from pipeline.redact import redact
from pipeline.report.write import write_report

log = logging.getLogger(__name__)

__all__ = ["IncompleteRunError", "commit_run"]


def commit_run(
    output_uri: str,
    storage: StorageConfig,
    *,
    expected_image_ids: pa.Array | pa.ChunkedArray,
    categories: list[dict],
    output: OutputConfig,
    run_info: dict,
) -> dict[str, int]:
    """De-duplicates and verifies the parts, writes COCO (``output.coco``), run.json, the review report
    (``output.report``; see :mod:`pipeline.report.write`), then _SUCCESS; returns the counts.

    Images written by two parts (task retries, zombie writers) are first reduced to one copy (see
    :func:`pipeline.io.run_output.dedupe_parts`); the check that follows still refuses any duplicate.
    """
    duplicates_removed = dedupe_parts(output_uri, storage)
    parts = part_names(output_uri, storage)
    counts = {**verify_parts(output_uri, storage, parts, expected_image_ids), "duplicates_removed": duplicates_removed}
    if output.coco:
        info = {"description": "samlabel", "model": run_info["model"]["name"], "run_id": run_info["run_id"]}
        if counts["labeled"] > output.coco_max_images:
            write_shards(output_uri, storage, parts, categories, info, output)
        else:
            sources = (_part_texts(output_uri, storage, part, output) for part in parts)
            write_coco_json(st.join_uri(output_uri, COCO_JSON), sources, categories, info, storage)
    run_json = json.dumps({**run_info, "counts": counts}, indent=2).encode()
    st.write_bytes(st.join_uri(output_uri, RUN_JSON), run_json, storage)
    if output.report:
        meta = {
            "run": run_info["run_id"],
            "model": run_info["model"]["name"],
            "prompts": run_info.get("config", {}).get("prompts", {}).get("mode", ""),
            "output": redact(output_uri),
        }
        try:
            write_report(output_uri, storage, output.report_sample, meta)
        except Exception as e:  # the report is a view of the labels: never fail a finished run over it
            log.warning("review report not written (%s: %s)", type(e).__name__, redact(str(e)))
    st.write_bytes(st.join_uri(output_uri, SUCCESS), b"", storage)
    return counts


def write_shards(
    output_uri: str,
    storage: StorageConfig,
    parts: list[str],
    categories: list[dict],
    info: dict,
    output: OutputConfig,
) -> None:
    """One COCO shard per part under ``coco/`` (Ray tasks in parallel when Ray is up), then ``coco/index.json``."""
    args = (categories, info, output.coco_segmentation, storage)
    if ray.is_initialized():
        task = ray.remote(num_cpus=1)(write_coco_shard)
        shards = ray.get([task.remote(output_uri, part, *args) for part in parts])
    else:
        shards = [write_coco_shard(output_uri, part, *args) for part in parts]
    write_coco_index(output_uri, shards, categories, info, storage)
    log.info("COCO written as %d shards under %s", len(shards), redact(st.join_uri(output_uri, COCO_DIR)))


def _part_texts(output_uri: str, storage: StorageConfig, part: str, output: OutputConfig) -> tuple[list, list]:
    images = read_part(st.join_uri(output_uri, IMAGES, part), storage, IMAGE_COLUMNS)
    annotations = read_part(st.join_uri(output_uri, ANNOTATIONS, part), storage, ANNOTATION_COLUMNS)
    return image_texts(images), annotation_texts(annotations, output.coco_segmentation)
