"""One labeling run on Ray: stream the remaining images through the graph into the sink, then commit."""

from __future__ import annotations

import platform
import time

import pyarrow as pa
import ray

from operators.graph import build_label_dataset, init_ray, segment_resources
from operators.sink import LabelSink
from pipeline import schema as col
from pipeline.config.sections import LabelConfig
from pipeline.io import storage as st
from pipeline.io.commit import commit_run
from pipeline.labeling.inputs import InputPlan
from pipeline.redact import redact
from pipeline.timing import STAGES


def run_and_commit(cfg: LabelConfig, plan: InputPlan, todo: pa.Table, info: dict, started_at: float) -> dict:
    """Labels ``todo`` (the images of ``plan`` not done yet), commits the whole run and returns its summary.

    The summary holds ``counts`` (the committed run's), ``this_attempt`` (images written now), ``timings`` and
    ``line``, a human-readable one-line report.
    """
    init_ray(cfg.ray)
    cluster = ray.cluster_resources()
    resources = segment_resources(cfg, cluster)
    sink = LabelSink(cfg.output.uri, cfg.storage, min_rows_per_write=cfg.output.images_per_part)
    label_start = time.time()
    if todo.num_rows:
        ds = build_label_dataset(cfg, todo, run_id=info["run_id"], categories=plan.categories, resources=resources)
        # A fraction of a CPU, as the records stage it fuses with: with a whole one, Ray Data holds the writes
        # back on a small machine (the segment actor and decode tasks take every CPU) until the stream drains.
        ds.write_datasink(sink, ray_remote_args={"num_cpus": 0.25})
    label_seconds = time.time() - label_start
    commit_start = time.time()
    done_now = int(sink.totals.get("images", 0))
    timings = {
        "stage_seconds": _stage_seconds(sink.totals),
        "label_seconds": round(label_seconds, 3),
        "total_seconds": round(time.time() - started_at, 3),
        "images_per_second": round(done_now / label_seconds, 3) if label_seconds > 0 else None,
    }
    run_info = {
        **info,
        "versions": _versions(),
        "cluster": {"resources": cluster, "segment_actors": resources.actors, "gpus_per_actor": resources.num_gpus},
        "this_attempt": {k: v for k, v in sink.totals.items()},
        "timings": timings,
    }
    counts = commit_run(
        cfg.output.uri,
        cfg.storage,
        expected_image_ids=set(plan.table[col.IMAGE_ID].to_pylist()),
        categories=plan.categories,
        coco=cfg.output.coco,
        segmentation=cfg.output.coco_segmentation,
        run_info=run_info,
        report_sample=cfg.output.report_sample if cfg.output.report else None,
    )
    commit_seconds = time.time() - commit_start
    rate = f"{done_now / label_seconds:.2f} images/s" if label_seconds > 0 and done_now else "n/a"
    line = (
        f"samlabel: done: {counts['labeled']} images labeled, {counts['errors']} in errors/, "
        f"{counts['annotations']} masks; this attempt {done_now} images in {label_seconds:.1f} s ({rate}), "
        f"commit {commit_seconds:.1f} s; outputs in {redact(cfg.output.uri)}"
        + (
            f"; review report in {redact(st.join_uri(cfg.output.uri, 'report', 'index.html'))}"
            if cfg.output.report
            else ""
        )
    )
    timings["commit_seconds"] = round(commit_seconds, 3)
    return {"run_id": info["run_id"], "counts": counts, "attempt_images": done_now, "timings": timings, "line": line}


def _stage_seconds(totals: dict[str, float]) -> dict[str, float]:
    """Summed per-stage seconds of this attempt (all workers; stages overlap in time), in pipeline order."""
    seconds = {stage: totals.get(col.seconds_column(stage)) for stage in STAGES}
    seconds["write"] = (seconds["write"] or 0.0) + totals.get("write_seconds", 0.0)
    return {stage: round(value, 3) for stage, value in seconds.items() if value is not None}


def _versions() -> dict[str, str]:
    import numpy
    import torch

    import pipeline

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "pyarrow": pa.__version__,
        "numpy": numpy.__version__,
        "samlabel": getattr(pipeline, "__version__", "0.1.0"),
    }
