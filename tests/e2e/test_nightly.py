"""Nightly runs end to end on the local Ray cluster, through ``jobs.nightly.main`` and its command line.

Three nights over a growing folder, the second one killed mid-run (SIGKILL of the driver) and resumed: every image
is labeled exactly once across the runs, the ledger records each once, and the consolidated view equals one full
``jobs.label`` run over all images (rows compared without ``run_id``, which names the night by design, and scores
to 1e-6: decoder batches mix images differently). Rerunning
a night is a no-op; changed settings are refused without ``--relabel`` and get a view of their own with it; a held
lock gives exit 3; the JSON summary tells a scheduler what happened.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from jobs.label import main as label_main
from jobs.nightly import main as nightly_main
from pipeline.config.sections import StorageConfig
from pipeline.nightly.ledger import read_ledger
from pipeline.nightly.lock import OutputLock
from tests.e2e.conftest import DATA, REPO, read_dataset
from tests.e2e.conftest import SMALL_RUN as SETTINGS
from tests.images import write_good_images


def _night(ray_cluster: str, folder: Path, root: Path, *extra: str) -> int:
    args = ["--input", str(folder), "--output-root", str(root), *SETTINGS, *extra]
    return nightly_main([*args, "--set", f"ray.address={ray_cluster}"])


def _summary(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _kill_after_first_part(folder: Path, root: Path, ray_cluster: str) -> None:
    """Runs a night in a driver process and SIGKILLs it once its new run has written a part."""
    earlier = {p.name for p in (root / "runs").iterdir()}
    args = ["--input", str(folder), "--output-root", str(root), *SETTINGS, "--set", f"ray.address={ray_cluster}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.nightly", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 240
        while not [p for p in root.glob("runs/*/images/*.parquet") if p.parents[1].name not in earlier]:
            assert proc.poll() is None, f"the night exited ({proc.returncode}) before writing a part"
            assert time.time() < deadline, "no part was written in time"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    pending = json.loads((root / "_pending.json").read_text())["run_id"]
    assert pending not in earlier and not (root / "runs" / pending / "_SUCCESS").exists(), "the night finished first"


SCORES = ("predicted_iou", "stability_score", "score")


def _rows(path: Path, keys: tuple[str, ...] = ("image_id", "annotation_id")) -> list[dict]:
    """Rows without ``run_id`` (it names the night), sorted by ``keys``."""
    rows = read_dataset(path, list(keys))
    return [{k: v for k, v in r.items() if k != "run_id"} for r in rows]


def _assert_same_rows(ours: list[dict], reference: list[dict]) -> None:
    """Equal rows; scores to 1e-6, because the mask decoder batches prompts of several images together and a
    night groups images differently from one full run, which moves float32 scores in their last bits (the masks,
    boxes, areas and ids are exactly equal)."""
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference, strict=True):
        assert {k: v for k, v in a.items() if k not in SCORES} == {k: v for k, v in b.items() if k not in SCORES}
        assert all(abs(a[k] - b[k]) <= 1e-6 for k in SCORES if k in a), (a["image_id"], a["annotation_id"])


@pytest.mark.slow  # long: in the slow set that .ci/run runs after the default one
def test_three_nights_label_every_image_once_and_equal_one_full_run(ray_cluster, tmp_path, capsys):
    folder, root = tmp_path / "bucket", tmp_path / "labels"
    write_good_images(folder / "night1", 3, seed=11)
    assert _night(ray_cluster, folder, root) == 0
    first = _summary(capsys)
    assert first["status"] == "complete" and first["new_images"] == 3

    write_good_images(folder / "night2", 5, seed=12)
    _kill_after_first_part(folder, root, ray_cluster)
    assert _night(ray_cluster, folder, root) == 0  # the killed driver's lock is stale at once: it is resumed
    second = _summary(capsys)
    assert second["runs"][0]["resumed"] and second["new_images"] < 5  # what the killed night finished is kept

    write_good_images(folder / "night3", 2, seed=13)
    assert _night(ray_cluster, folder, root) == 0
    third = _summary(capsys)
    assert third["new_images"] == 2
    assert _night(ray_cluster, folder, root) == 0  # the same night again: a no-op
    assert _summary(capsys)["status"] == "nothing_new"

    all_ids = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))
    runs = sorted(p.name for p in (root / "runs").iterdir())
    assert len(runs) == 3 and not (root / "_pending.json").exists() and not (root / "_lock.json").exists()
    per_run = [r["image_id"] for run in runs for r in read_dataset(root / "runs" / run / "images", ["image_id"])]
    assert sorted(per_run) == all_ids  # every image labeled exactly once across the runs
    ledger = read_ledger(str(root), StorageConfig())
    assert sorted(ledger.entries["image_id"].to_pylist()) == all_ids and [r["run_id"] for r in ledger.runs] == runs
    latest = json.loads((root / "latest.json").read_text())
    assert latest["run_id"] == runs[-1] == third["latest_run"]

    full = tmp_path / "full"
    assert (
        label_main(["--input", str(folder), "--output", str(full), *SETTINGS, "--set", f"ray.address={ray_cluster}"])
        == 0
    )
    view = Path(latest["view"])
    _assert_same_rows(_rows(view / "annotations"), _rows(full / "annotations"))
    assert _rows(view / "images", ("image_id",)) == _rows(full / "images", ("image_id",))
    table = pads.dataset(str(view / "annotations"), format="parquet", partitioning="hive").to_table()
    assert sorted(set(table["run"].to_pylist())) == runs and table.num_rows == len(_rows(full / "annotations"))


@pytest.mark.slow  # long: in the slow set that .ci/run runs after the default one
def test_changed_settings_need_relabel_and_get_their_own_view(ray_cluster, tmp_path, capsys):
    root = tmp_path / "labels"
    assert _night(ray_cluster, DATA, root) == 0
    old_view = _summary(capsys)["view"]
    changed = ["--set", "grid.box_nms_thresh=0.5"]
    assert _night(ray_cluster, DATA, root, *changed) == 2
    out = capsys.readouterr()
    assert "pass --relabel" in out.err and len(out.err.strip().splitlines()) == 1
    assert json.loads(out.out.strip().splitlines()[-1])["status"] == "bad_input"
    assert _night(ray_cluster, DATA, root, *changed, "--relabel") == 0
    relabel = _summary(capsys)
    assert relabel["new_images"] == 4 and relabel["view"] != old_view
    assert json.loads((root / "latest.json").read_text())["view"] == relabel["view"]
    ledger = read_ledger(str(root), StorageConfig())
    assert len({r["fingerprint"] for r in ledger.runs}) == 2 and ledger.entries.num_rows == 8
    assert len(read_dataset(Path(old_view) / "images", ["image_id"])) == 4  # the old view is left as it was


def test_a_held_lock_gives_exit_3_and_a_summary_file(ray_cluster, tmp_path, capsys):
    root = tmp_path / "labels"
    summary = tmp_path / "summary.json"
    with OutputLock(str(root), StorageConfig(), ttl_s=600, owner="other-host:1"):
        assert _night(ray_cluster, DATA, root, "--summary-json", str(summary)) == 3
    err = capsys.readouterr().err
    assert "held by other-host:1" in err and len(err.strip().splitlines()) == 1
    document = json.loads(summary.read_text())
    assert document["status"] == "locked" and document["exit_code"] == 3
    assert not (root / "runs").exists()
