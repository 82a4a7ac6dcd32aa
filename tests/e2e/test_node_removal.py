"""A worker node of a multi-node local cluster (``ray.cluster_utils.Cluster``) removed mid-run: the segment actor
that lived there is restarted on a replacement node and the run completes with every image exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import read_dataset
from tests.images import write_good_images

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_removed_worker_node_does_not_lose_or_duplicate_labels(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    write_good_images(folder, 10, seed=51)
    driver = subprocess.run(
        [sys.executable, "-m", "tests.e2e.node_removal_driver", str(folder), str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=580,
    )
    report = json.loads(driver.stdout.strip().splitlines()[-1])
    assert report["parts_at_removal"] is not None and report["parts_at_removal"] < 5, report
    assert report["returncode"] == 0, report["stderr"]
    images = [r["image_id"] for r in read_dataset(out / "images", ["image_id"])]
    assert images == sorted(p.name for p in folder.iterdir())
    annotations = read_dataset(out / "annotations", ["annotation_id"])
    assert len({r["annotation_id"] for r in annotations}) == len(annotations) and (out / "_SUCCESS").exists()
