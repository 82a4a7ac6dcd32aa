"""Are the GPUs fed? The labeling graph on a local Ray that declares ``gpus`` logical GPUs and ``cpus`` CPUs, with
each image's decode costing ``decode_ms`` (a sleep after the real decode, so logical CPUs decode in parallel on any
machine) and segment actors that return at once. The graph, its resources and Ray Data's scheduling are the real
ones; only the cost of the two ends is set.

The rate the CPUs left to decoding allow is ``decode CPUs / decode seconds per image``, where decode CPUs are the
cluster's CPUs less the segment actors' and the write stage's reservations. A graph that is sized well reaches most
of it; one whose actors hold the CPUs, or whose scheduler keeps decode tasks back, does not.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from operators.decode import decode_images
from operators.segment import mask_columns
from pipeline import schema as col
from pipeline.config.sections import DecodeConfig, LabelConfig, RayConfig

WRITE_CPUS = 0.25
"""The records stage's reservation (as the labeling graph declares it)."""


def slow_decode(batch: dict[str, np.ndarray], *, decode_ms: float, **kwargs) -> dict[str, np.ndarray]:
    """:func:`operators.decode.decode_images`, then ``decode_ms`` per image more."""
    out = decode_images(batch, **kwargs)
    time.sleep(decode_ms / 1000.0 * len(batch[col.IMAGE_ID]))
    return out


class InstantSegment:
    """The segment actor's interface with no model: every image gets no masks, at once."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch[col.IMAGE_ID])
        pixels = (col.IMAGE_RGB, col.IMAGE_ORIGINAL_RGB, col.IMAGE_JPEG)
        out = {k: v for k, v in batch.items() if k not in pixels}
        out.update(mask_columns([None] * n))
        out[col.MASKS_DROPPED] = np.zeros(n, np.int64)
        return out


def feeding_check(folder: Path, images: int, gpus: int, cpus: int, decode_ms: float) -> dict:
    """Runs the check in this process on a fresh local Ray set up as the labeling job sets it up (which it shuts
    down) over ``images`` small JPEGs written to ``folder``; returns the measured and the CPU-bound images/s."""
    import ray

    from operators.graph import build_label_dataset, init_ray, segment_resources
    from pipeline.bench.data import write_images

    uris = [p.as_uri() for p in write_images(folder, 8, (48, 64))]
    uris = [uris[i % len(uris)] for i in range(images)]
    table = pa.table({col.IMAGE_ID: [f"{i:08d}" for i in range(images)], col.IMAGE_URI: uris})
    cfg = LabelConfig()
    cfg = dataclasses.replace(cfg, decode=dataclasses.replace(cfg.decode, batch_size=16))
    init_ray(RayConfig(num_cpus=cpus, num_gpus=gpus, progress=False))
    try:
        resources = segment_resources(cfg, ray.cluster_resources())
        ds = build_label_dataset(
            cfg,
            table,
            run_id="feeding",
            categories=[{"id": 1, "name": "object"}],
            resources=resources,
            decode_fn=_with_cost(decode_ms),
            segment_actor=InstantSegment,
        )
        arrivals = []
        start = time.perf_counter()
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            arrivals.append((time.perf_counter(), len(batch[col.IMAGE_ID])))
        seconds = time.perf_counter() - start
    finally:
        ray.shutdown()
    decode_cpus = cpus - resources.actors * resources.num_cpus - WRITE_CPUS
    bound = max(int(decode_cpus // DecodeConfig().num_cpus), 0) / (decode_ms / 1000.0)
    steady = _steady_rate(arrivals)
    return {
        "gpus": gpus,
        "cpus": cpus,
        "decode_ms_per_image": decode_ms,
        "segment_actors": resources.actors,
        "cpus_per_actor": resources.num_cpus,
        "decode_cpus": decode_cpus,
        "images": sum(n for _, n in arrivals),
        "seconds": round(seconds, 2),
        "images_per_second_steady": round(steady, 1),
        "images_per_second_cpu_bound": round(bound, 1),
        "fraction_of_bound": round(steady / bound, 3) if bound else None,
    }


def _with_cost(decode_ms: float):
    import functools

    return functools.partial(slow_decode, decode_ms=decode_ms)


def _steady_rate(arrivals: list[tuple[float, int]]) -> float:
    """Images/s between the first and the last output block (actor and worker start-up left out)."""
    if len(arrivals) < 2:
        return 0.0
    images = sum(n for _, n in arrivals[1:])
    return images / max(arrivals[-1][0] - arrivals[0][0], 1e-9)
