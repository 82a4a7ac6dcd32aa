"""Crash and resume, and submission through the Ray Jobs API.

A driver killed (SIGKILL) after it wrote some parts is rerun with the same command: the result equals an
uninterrupted run's exactly (same annotation rows, byte-identical coco.json, every image once). The same job
submitted through ``JobSubmissionClient`` with the repository as working_dir succeeds and writes the outputs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from jobs.label import main
from tests.e2e.conftest import DATA, REPO, read_dataset
from tests.e2e.conftest import SMALL_RUN as SETTINGS
from tests.images import write_good_images


def _wait_for_parts(out: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list((out / "images").glob("*.parquet")) if (out / "images").exists() else []:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the driver exited ({proc.returncode}) before writing a part")
        time.sleep(0.05)
    raise AssertionError("no part was written in time")


def test_killed_driver_is_resumed_to_the_uninterrupted_result(ray_cluster, tmp_path):
    folder = tmp_path / "in"
    write_good_images(folder, 8, seed=3)
    args = ["--input", str(folder), *SETTINGS, "--set", f"ray.address={ray_cluster}"]
    reference = tmp_path / "reference"
    assert main([*args, "--output", str(reference)]) == 0

    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.label", *args, "--output", str(out)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_parts(out, proc)
    finally:
        proc.kill()
        proc.wait()
    assert not (out / "_SUCCESS").exists(), "the driver finished before it could be killed"
    partial = len(list((out / "images").glob("*.parquet")))
    assert main([*args, "--output", str(out)]) == 0
    assert len(list((out / "images").glob("*.parquet"))) >= partial

    keys = ["image_id", "annotation_id"]
    assert read_dataset(out / "annotations", keys) == read_dataset(reference / "annotations", keys)
    assert (out / "coco.json").read_bytes() == (reference / "coco.json").read_bytes()
    images = [r["image_id"] for r in read_dataset(out / "images", ["image_id"])]
    assert images == sorted({p.name for p in folder.iterdir()})


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
