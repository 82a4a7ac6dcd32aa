"""The ``samlabel`` console command: lists its jobs, runs each with the same flags and exit status as
``python -m jobs.<job>``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from jobs.cli import COMMANDS

SAMLABEL = Path(sys.executable).with_name("samlabel")


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SAMLABEL), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_help_lists_every_job_with_one_line():
    done = _run("--help")
    assert done.returncode == 0
    listed = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("  ")}
    assert set(listed) == set(COMMANDS)
    assert "Label an image bucket with EfficientViT-SAM" in listed["label"]
    assert all(len(line.split()) > 2 for line in listed.values())  # every job has a description


def test_a_job_runs_with_the_same_flags_and_output_as_its_module(tmp_path):
    by_command = _run("shapes", "--out", str(tmp_path / "a"), "--num-images", "2", "--seed", "3")
    by_module = subprocess.run(
        [sys.executable, "-m", "jobs.shapes", "--out", str(tmp_path / "b"), "--num-images", "2", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert by_command.returncode == by_module.returncode == 0
    assert (tmp_path / "a" / "val.json").read_bytes() == (tmp_path / "b" / "val.json").read_bytes()
    assert _run("label", "--help").stdout.startswith("usage: samlabel label")


def test_unknown_command_and_bad_flag_fail_with_exit_2():
    unknown = _run("lable")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().startswith("samlabel: error: unknown command 'lable'")
    assert _run("label", "--prompts", "nope").returncode == 2
