"""Run and commit: stream the images not done yet through the Ray Data graph into the output's parts, then commit
the whole run (verify, de-duplicate, write COCO, run.json and ``_SUCCESS``)."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass

import pyarrow as pa
import ray

from pipeline import schema as col
from pipeline.config.loading import to_dict
from pipeline.io import storage as st
from pipeline.io.commit import commit_run
from pipeline.labeling.inputs import remaining
from pipeline.labeling.output import OpenedOutput
from pipeline.labeling.prepare import Labeling
from pipeline.labeling.summary import LabelResult
from pipeline.redact import redact, redact_data
from pipeline.timing import STAGES


@dataclass(frozen=True)
class Attempt:
    """What one attempt wrote, and where it ran."""

    totals: dict[str, float]
    """The sink's sums: ``images``, ``annotations``, ``errors`` and the per-stage ``seconds_*``."""
    label_seconds: float
    cluster: dict


def label_output(labeling: Labeling, opened: OpenedOutput, images: pa.Table, started_at: float) -> LabelResult:
    """Labels the rows of ``images`` (the whole run) not done yet in the opened folder, and commits the run."""
    todo = remaining(images, opened.state.done_image_ids)
    print(
        f"samlabel: {todo.num_rows} of {images.num_rows} images to label with {labeling.cfg.model.name} "
        f"({labeling.cfg.prompts.mode} prompts) into {redact(opened.cfg.output.uri)}"
    )
    attempt = run(labeling, opened, todo)
    return commit(labeling, opened, images, attempt, started_at)


def run(labeling: Labeling, opened: OpenedOutput, todo: pa.Table) -> Attempt:
    """Streams ``todo`` through the graph into the output's parts; returns what this attempt wrote."""
    from operators.graph import build_label_dataset, init_ray, segment_resources
    from operators.sink import LabelSink

    cfg = opened.cfg
    init_ray(cfg.ray)
    resources = ray.cluster_resources()
    segment = segment_resources(cfg, resources)
    sink = LabelSink(cfg.output.uri, cfg.storage, min_rows_per_write=cfg.output.images_per_part)
    start = time.time()
    if todo.num_rows:
        categories = labeling.plan.categories
        ds = build_label_dataset(cfg, todo, run_id=opened.run_id, categories=categories, resources=segment)
        # A fraction of a CPU, as the records stage it fuses with: with a whole one, Ray Data holds the writes
        # back on a small machine (the segment actor and decode tasks take every CPU) until the stream drains.
        ds.write_datasink(sink, ray_remote_args={"num_cpus": 0.25})
    cluster = {"resources": resources, "segment_actors": segment.actors, "gpus_per_actor": segment.num_gpus}
    return Attempt(dict(sink.totals), time.time() - start, cluster)


def commit(
    labeling: Labeling, opened: OpenedOutput, images: pa.Table, attempt: Attempt, started_at: float
) -> LabelResult:
    """Commits the run of ``images`` in the opened folder, with its run.json; returns the result."""
    cfg = opened.cfg
    done_now = int(attempt.totals.get("images", 0))
    timings = {
        "stage_seconds": _stage_seconds(attempt.totals),
        "label_seconds": round(attempt.label_seconds, 3),
        "total_seconds": round(time.time() - started_at, 3),
        "images_per_second": round(done_now / attempt.label_seconds, 3) if attempt.label_seconds > 0 else None,
    }
    start = time.time()
    counts = commit_run(
        cfg.output.uri,
        cfg.storage,
        expected_image_ids=images[col.IMAGE_ID],
        categories=labeling.plan.categories,
        output=cfg.output,
        run_info=redact_data({**_run_info(labeling, opened), **_attempt_info(attempt, timings)}),
    )
    timings["commit_seconds"] = round(time.time() - start, 3)
    report = st.join_uri(cfg.output.uri, "report", "index.html") if cfg.output.report else None
    return LabelResult(opened.run_id, counts, done_now, timings, cfg.output.uri, report)


def _run_info(labeling: Labeling, opened: OpenedOutput) -> dict:
    """What run.json says about the run: its identity, config and model."""
    from pipeline.runtime.weights import resolve_weights

    cfg = opened.cfg
    return {
        "run_id": opened.run_id,
        "fingerprint": opened.fingerprint,
        "settings_fingerprint": labeling.settings_fingerprint,
        "config": to_dict(cfg),
        "model": {
            "name": cfg.model.name,
            "weights": resolve_weights(cfg.model),
            "weights_sha256": labeling.weights_sha256,
            "backend": cfg.model.backend,
            "precision": cfg.model.precision,
        },
        "prompt_model": {
            "weights": labeling.prompt_model.weights_uri,
            "weights_sha256": labeling.prompt_model.weights_sha256,
        },
        "versions": _versions(),
    }


def _attempt_info(attempt: Attempt, timings: dict) -> dict:
    return {"cluster": attempt.cluster, "this_attempt": attempt.totals, "timings": timings}


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
