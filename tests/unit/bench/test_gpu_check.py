"""The one-command GPU check's dry run (``--device cpu``): the script runs as written on a fresh machine would (its
own Python, no installed project), runs the GPU tests (skipped here) and the table, and writes JSON and markdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.bench.gpu_check import table_parts

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow  # 20 s: in the slow set that .ci/run runs after the default one
def test_the_dry_run_writes_the_table(tmp_path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "SAMLABEL_WHEELS": str(tmp_path / "no-wheels")}
    run = subprocess.run(
        [str(REPO / "scripts" / "gpu_check.sh"), str(tmp_path / "out"), "--device", "cpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert [p["status"] for p in report["parts"]] == ["ok", "ok"]
    assert report["parts"][0]["tests"]["failed"] == 0 and report["parts"][0]["tests"]["skipped"] > 0
    assert [(r["what"], r["batch"]) for r in report["rows"]] == [
        ("encoder-only", 1),
        ("encoder-only", 2),
        ("segment+10box", 2),
        ("grid4", 2),
    ]
    assert all(r["images_per_second"] > 0 for r in report["rows"])
    markdown = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "| segment+10box | mini-l | fp32 | eager | 2 |" in markdown


def test_without_a_gpu_the_real_check_refuses_in_one_line(tmp_path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(
        [str(REPO / "scripts" / "gpu_check.sh"), str(tmp_path / "out")], env=env, capture_output=True, text=True
    )
    assert run.returncode == 2
    assert run.stderr.strip().endswith("no CUDA device here (use --device cpu for the dry run)")
    assert not (tmp_path / "out").exists()


def test_the_gpu_parts_cover_both_models_four_batches_and_the_compiled_encoder() -> None:
    eager, aot = table_parts("cuda")
    assert "efficientvit-sam-l0,efficientvit-sam-xl1" in eager.args and "8,16,32,64" in eager.args
    assert aot.args[aot.args.index("--compile-modes") + 1] == "aot"
