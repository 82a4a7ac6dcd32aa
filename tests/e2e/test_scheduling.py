"""The cron example of deploy/ runs: its one command line, with the crontab's variables pointed at the bundled
photos and a temporary root, labels a real night on the local Ray cluster and exits 0 with a JSON summary."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_nightly import SETTINGS

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\d+(-\d+)?))*$")


def _crontab() -> tuple[dict[str, str], list[str], str]:
    env, entries = {}, []
    for line in (DEPLOY / "samlabel.cron").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[A-Z_]+", name.strip()):
            env[name.strip()] = value.strip()
        else:
            entries.append(line)
    assert len(entries) == 1, entries
    parts = entries[0].split(None, 5)
    return env, parts[:5], parts[5]


@pytest.mark.slow  # long: in the slow set that .ci/run runs after the default one
def test_cron_line_runs_a_night(ray_cluster, tmp_path):
    env, schedule, command = _crontab()
    assert all(CRON_FIELD.match(f) for f in schedule) and set(env) >= {"SAMLABEL_INPUT", "SAMLABEL_OUTPUT_ROOT"}
    root, log = tmp_path / "labels", tmp_path / "nightly.log"
    settings = " ".join([*SETTINGS, "--set", f"ray.address={ray_cluster}"])  # split on spaces by nightly.sh
    overrides = {
        "SAMLABEL_HOME": str(REPO),
        "SAMLABEL_INPUT": str(REPO / "tests" / "data" / "images"),
        "SAMLABEL_OUTPUT_ROOT": str(root),
        "SAMLABEL_ARGS": settings,
        "SAMLABEL_LOG": str(log),
        "SAMLABEL_PYTHON": sys.executable,
    }
    result = subprocess.run(["/bin/sh", "-c", command], env={**os.environ, **env, **overrides}, timeout=280)
    lines = log.read_text().splitlines()
    assert result.returncode == 0, "\n".join(lines[-20:])
    summary = json.loads(next(line for line in reversed(lines) if line.startswith("{")))
    assert summary["status"] == "complete" and summary["new_images"] == 4 and (root / "latest.json").exists()
