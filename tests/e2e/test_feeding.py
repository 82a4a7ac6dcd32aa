"""One node with 8 GPUs (logical, on a local Ray): decode tasks get the CPUs the segment actors leave, so the
images/s the decode CPUs allow is reached (at Ray Data's default reservation, decode got 4 of 7.75 free CPUs and
57% of that rate)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_decode_tasks_feed_eight_gpu_actors(tmp_path) -> None:
    # In its own process: the check starts and stops its own Ray, next to the session's.
    argv = ["--feeding", "8,24,200", "--images", "640", "--json", str(tmp_path / "feeding.json")]
    run = subprocess.run([sys.executable, "-m", "jobs.bench", *argv], capture_output=True, text=True, timeout=280)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "feeding.json").read_text())
    assert report["segment_actors"] == 8 and report["images"] == 640
    assert report["images_per_second_cpu_bound"] == 35.0  # 7 decode tasks of 0.2 s per image
    assert report["fraction_of_bound"] >= 0.85, report
