"""One local Ray cluster for all end-to-end tests: 4 logical CPUs and 1 logical GPU, so GPU operators schedule on
CPU-only machines (the actors pick their device themselves)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow.dataset as pads
import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "images"
"""The bundled sample photos."""
FAST_GRID = [
    "--set",
    "grid.points_per_side=4",
    "--set",
    "grid.pred_iou_thresh=0.0",
    "--set",
    "grid.stability_score_thresh=0.0",
    "--set",
    "ray.progress=false",
]
"""A 4×4 grid with the filters opened up: seconds per run, and masks are kept even from random weights."""
FP32 = ["--set", "model.precision=fp32", "--set", "model.decoder_precision=fp32"]
"""The official outputs, for comparisons with the reference code (the default, auto, may pick a gated bf16)."""
SMALL_RUN = [
    "--model",
    "mini-l",
    *FAST_GRID,
    "--set",
    "output.images_per_part=2",
    "--set",
    "segment.batch_size=2",
    "--set",
    "decode.batch_size=2",
]
"""FAST_GRID on the tiny mini-l model, in batches and parts of 2 images (several parts from the bundled photos)."""


@pytest.fixture(scope="session")
def ray_context() -> Iterator[object]:
    """Starts the cluster (with the dashboard, for the Jobs API) and yields its ``RayContext``; its session folder
    (logs, job packages, spilled objects) is removed at the end."""
    import ray

    context = ray.init(
        num_cpus=4,
        num_gpus=1,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        object_store_memory=400 * 2**20,
        log_to_driver=False,
    )
    try:
        yield context
    finally:
        ray.shutdown()
        shutil.rmtree(context.address_info["session_dir"], ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster(ray_context) -> str:
    """Address of the session cluster, for ``--set ray.address=...``."""
    return ray_context.address_info["address"]


def read_dataset(path: Path | str, sort_by: list[str]) -> list[dict]:
    """All rows of a Parquet output dataset, sorted, as dicts."""
    table = pads.dataset(str(path), format="parquet").to_table()
    return table.sort_by([(c, "ascending") for c in sort_by]).to_pylist() if table.num_rows else []
