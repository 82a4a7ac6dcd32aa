"""Crash and resume, and submission through the Ray Jobs API.

A run on the embedded default (its own local Ray, 2 CPUs) writes parts while it goes on; killed (SIGKILL, with the
Ray it started) after some parts, it is rerun with the same command, labels only the rest, and the result equals
an uninterrupted run's exactly (same annotation rows, byte-identical coco.json, every image once). The same job
submitted through ``JobSubmissionClient`` with the repository as working_dir succeeds and writes the outputs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.label import main
from tests.e2e.conftest import DATA, FAST_GRID, REPO, read_dataset
from tests.e2e.conftest import SMALL_RUN as SETTINGS
from tests.images import write_good_images


def _parts(out: Path) -> int:
    return len(list((out / "images").glob("*.parquet"))) if (out / "images").exists() else 0


def _wait_for_parts(out: Path, proc: subprocess.Popen, count: int, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if _parts(out) >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the driver exited ({proc.returncode}) with {_parts(out)} of {count} parts written")
        time.sleep(0.05)
    raise AssertionError(f"{_parts(out)} of {count} parts written in time")


@pytest.mark.slow  # a minute: in the slow set that .ci/run runs after the default one
def test_killed_run_on_the_embedded_default_keeps_its_parts_and_resumes_to_the_uninterrupted_result(
    ray_cluster, tmp_path
):
    # 16 images in parts of 2: the killed run, on its own local Ray with 2 CPUs and no GPU (a laptop, a CI box),
    # must write parts while it goes on. Killed when its first part appears, it must have most images still to do
    # (a run that writes every part at the end has them all labeled by then, and writes the rest at once).
    folder = tmp_path / "in"
    write_good_images(folder, 16, seed=3)
    args = ["--input", str(folder), "--model", "mini-l", *FAST_GRID, "--set", "output.images_per_part=2"]
    reference = tmp_path / "reference"
    assert main([*args, "--set", f"ray.address={ray_cluster}", "--output", str(reference)]) == 0

    out = tmp_path / "out"
    embedded = [*args, "--set", "ray.num_cpus=2", "--set", "ray.num_gpus=0", "--output", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.label", *embedded],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the driver and the Ray it started die together
    )
    try:
        _wait_for_parts(out, proc, count=1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "_SUCCESS").exists(), "the run finished before it could be killed"
    time.sleep(1)  # let the killed processes go
    done = len(read_dataset(out / "images", ["image_id"]))
    # The part seen, the tasks in flight, the part being gathered.
    assert 2 <= done <= 8, f"{done} of 16 images were done when the first part appeared"

    summary = tmp_path / "summary.json"
    rerun = [*args, "--set", f"ray.address={ray_cluster}", "--output", str(out), "--summary-json", str(summary)]
    assert main(rerun) == 0
    assert json.loads(summary.read_text())["attempt_images"] == 16 - done  # only the rest is labeled again

    keys = ["image_id", "annotation_id"]
    assert read_dataset(out / "annotations", keys) == read_dataset(reference / "annotations", keys)
    assert (out / "coco.json").read_bytes() == (reference / "coco.json").read_bytes()
    images = [r["image_id"] for r in read_dataset(out / "images", ["image_id"])]
    assert images == sorted({p.name for p in folder.iterdir()})


@pytest.mark.slow  # long: in the slow set that .ci/run runs after the default one
def test_submit_through_the_ray_jobs_api(ray_context, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(f"http://{ray_context.dashboard_url}")
    out = tmp_path / "out"
    entrypoint = " ".join([sys.executable, "-m", "jobs.label", "--input", str(DATA), "--output", str(out), *SETTINGS])
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": str(REPO)})
    deadline = time.time() + 300
    while client.get_job_status(job_id) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.time() < deadline, "job did not finish in time"
        time.sleep(1)
    logs = client.get_job_logs(job_id)
    assert client.get_job_status(job_id) == JobStatus.SUCCEEDED, logs[-2000:]
    assert (out / "_SUCCESS").exists() and "samlabel: done" in logs
