"""Labeling runs with learned prompt sources on the local Ray cluster: --prompts yolo (a randomly initialised
yolov8n saved as a weight file; class names become the COCO categories, score is the detector confidence),
--prompts text (a tiny random OWLv2; the given classes become the categories, in order; the class list is part
of the run's identity), --prompts autoppn (a random head) and grid masks named by a zero-shot classifier (a tiny
random CLIP; its classes and "unknown" become the categories) write valid COCO and Parquet; missing weights fail
fast with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pycocotools.coco import COCO

from jobs.label import main
from pipeline.bench.text_models import write_tiny_classifier, write_tiny_owlv2
from pipeline.prompts.autoppn.checkpoint import save_head
from pipeline.prompts.autoppn.model import AutoPPN, AutoPPNCard
from tests.e2e.conftest import SMALL_RUN, read_dataset
from tests.fixtures import write_fixture_weights
from tests.yolo import write_random_yolo

DATA = Path(__file__).resolve().parents[1] / "data" / "images"


def _label(ray_cluster: str, *args: str) -> int:
    return main([*args, "--set", f"ray.address={ray_cluster}", "--set", "ray.progress=false"])


def _check_outputs(out: Path) -> tuple[list[dict], COCO]:
    rows = read_dataset(out / "annotations", ["image_id", "annotation_id"])
    coco = COCO(str(out / "coco.json"))
    assert (out / "_SUCCESS").exists() and len(coco.getImgIds()) == 4
    assert len(coco.getAnnIds()) == len(rows) > 0
    for ann in coco.loadAnns(coco.getAnnIds()[:5]):
        assert coco.annToMask(ann).sum() == ann["area"]
    return rows, coco


@pytest.mark.slow  # long: in the slow set that .ci/run runs after the default one
def test_yolo_prompts_end_to_end(ray_cluster, tmp_path):
    sam = write_fixture_weights(tmp_path / "mini_l.pt", "l")
    yolo = write_random_yolo(tmp_path / "yolov8n-random.pt", tmp_path / "cache")
    out = tmp_path / "out"
    args = [
        "--input",
        str(DATA),
        "--output",
        str(out),
        "--model",
        "mini-l",
        "--weights",
        str(sam),
        "--prompts",
        "yolo",
    ]
    sets = [
        "yolo.conf=0.0",
        "yolo.max_det=4",
        "yolo.imgsz=320",
        f"yolo.weights={yolo}",
        f"model.cache_dir={tmp_path}/cache",
    ]
    assert _label(ray_cluster, *args, *[x for s in sets for x in ("--set", s)]) == 0
    rows, coco = _check_outputs(out)
    assert len(rows) == 16  # 4 boxes per image, no filters (MobileSAMv2's protocol)
    names = {c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert len(names) == 80 and {r["category_name"] for r in rows} <= names and "class0" in names
    assert all(r["prompt_type"] == "yolo" and r["prompt_box_xyxy"] is not None for r in rows)
    assert all(0.0 <= r["score"] < 0.01 for r in rows)  # the random detector's confidence, not the predicted IoU
    run = json.loads((out / "run.json").read_text())
    assert len(run["prompt_model"]["weights_sha256"]) == 64


@pytest.mark.slow  # long: in the slow set that .ci/run runs after the default one
def test_text_prompts_end_to_end_and_rerun(ray_cluster, tmp_path, capsys):
    sam = write_fixture_weights(tmp_path / "mini_l.pt", "l")
    owl = write_tiny_owlv2(tmp_path / "owlv2")
    classes = tmp_path / "classes.yaml"
    classes.write_text("- forklift: [forklift, lift truck]\n- pallet: {queries: [pallet], threshold: 0.0}\n")
    out = tmp_path / "out"
    args = ["--input", str(DATA), "--output", str(out), "--model", "mini-l", "--weights", str(sam)]
    sets = [f"text.weights={owl}", f"text.file={classes}", "text.box_thresh=0.0", "text.nms_thresh=1.0"]
    sets += ["text.max_boxes_per_image=3"]
    sets += ["boxes.pred_iou_thresh=0.0", "boxes.stability_score_thresh=0.0", "output.images_per_part=1"]
    sets += ["segment.batch_size=1", "text.batch_size=1"]  # a part per image
    command = [*args, "--prompts", "text", *[x for s in sets for x in ("--set", s)]]
    assert _label(ray_cluster, *command) == 0
    rows, coco = _check_outputs(out)
    assert [(c["id"], c["name"]) for c in coco.loadCats(coco.getCatIds())] == [(1, "forklift"), (2, "pallet")]
    assert len(rows) == 12  # 3 boxes per image, every mask kept
    assert {r["category_name"] for r in rows} <= {"forklift", "pallet"}
    assert all(r["prompt_type"] == "text" and r["prompt_box_xyxy"] is not None for r in rows)
    assert all(0.0 < r["score"] <= 1.0 for r in rows)  # the detector's confidence
    run = json.loads((out / "run.json").read_text())
    assert len(run["prompt_model"]["weights_sha256"]) == 64
    page = (out / "report" / "index.html").read_text()
    for name in {r["category_name"] for r in rows}:
        count = sum(r["category_name"] == name for r in rows)
        assert f"<tr><td>{name}</td><td>{count}</td></tr>" in page  # masks per class in the review report
    first = (out / "coco.json").read_bytes()
    capsys.readouterr()
    assert _label(ray_cluster, *command) == 0  # the same settings: this run, already complete
    assert "already holds this completed run" in capsys.readouterr().out
    assert (out / "coco.json").read_bytes() == first
    # As after a crash before the commit: one image's parts and the commit's files gone; the rerun labels that image.
    part = sorted((out / "images").iterdir())[0].name
    for path in (out / "images" / part, out / "annotations" / part, out / "_SUCCESS", out / "coco.json"):
        path.unlink(missing_ok=True)
    assert _label(ray_cluster, *command) == 0
    assert "1 of 4 images to label" in capsys.readouterr().out
    assert (out / "coco.json").read_bytes() == first
    classes.write_text("- pallet\n- forklift: [forklift, lift truck]\n")  # another class order: other labels
    assert _label(ray_cluster, *command) == 2
    assert "already holds a completed run with another configuration" in capsys.readouterr().err


@pytest.mark.slow  # long: in the slow set that .ci/run runs after the default one
def test_grid_masks_named_by_a_classifier_end_to_end_and_resumed(ray_cluster, tmp_path, capsys):
    sam = write_fixture_weights(tmp_path / "mini_l.pt", "l")
    clip = write_tiny_classifier(tmp_path / "clip")
    out = tmp_path / "out"
    args = ["--input", str(DATA), "--output", str(out), *SMALL_RUN, "--weights", str(sam)]
    sets = [f"classify.weights={clip}", "classify.classes=[person, forklift, box]", "classify.min_score=0.4"]
    sets += ["output.images_per_part=1", "segment.batch_size=1"]  # a part per image
    command = [*args, *[x for s in sets for x in ("--set", s)]]
    assert _label(ray_cluster, *command) == 0
    rows, coco = _check_outputs(out)
    categories = [(c["id"], c["name"]) for c in coco.loadCats(coco.getCatIds())]
    assert categories == [(1, "person"), (2, "forklift"), (3, "box"), (4, "unknown")]
    scores = read_dataset(out / "annotations", ["image_id", "annotation_id"])
    assert all(r["prompt_type"] == "grid" and r["category_name"] in dict(categories).values() for r in scores)
    assert all((r["class_score"] < 0.4) == (r["category_name"] == "unknown") for r in scores)
    anns = coco.loadAnns(coco.getAnnIds())
    assert sorted(a["class_score"] for a in anns) == pytest.approx(sorted(r["class_score"] for r in scores), abs=1e-4)
    page = (out / "report" / "index.html").read_text()
    for name in {r["category_name"] for r in rows}:
        count = sum(r["category_name"] == name for r in rows)
        assert f"<tr><td>{name}</td><td>{count}</td></tr>" in page  # masks per class in the review report
    first = (out / "coco.json").read_bytes()
    part = sorted((out / "images").iterdir())[0].name  # as after a crash: one image's parts and the commit gone
    for path in (out / "images" / part, out / "annotations" / part, out / "_SUCCESS", out / "coco.json"):
        path.unlink(missing_ok=True)
    capsys.readouterr()
    assert _label(ray_cluster, *command) == 0
    assert "1 of 4 images to label" in capsys.readouterr().out
    assert (out / "coco.json").read_bytes() == first
    assert _label(ray_cluster, *command, "--set", "classify.min_score=0.6") == 2  # another threshold: other labels
    assert "already holds a completed run with another configuration" in capsys.readouterr().err


def test_autoppn_prompts_end_to_end(ray_cluster, tmp_path):
    sam = write_fixture_weights(tmp_path / "mini_l.pt", "l")
    torch.manual_seed(0)
    head = AutoPPN(AutoPPNCard(channels=16, out_stride=16))
    torch.nn.init.constant_(head.point_head[-1].bias, 0.0)
    weights = save_head(head, tmp_path / "autoppn.safetensors")
    out = tmp_path / "out"
    args = ["--input", str(DATA), "--output", str(out), "--model", "mini-l", "--weights", str(sam)]
    sets = [
        f"autoppn.weights={weights}",
        "autoppn.top_n=8",
        "autoppn.pred_iou_thresh=0.0",
        "autoppn.stability_score_thresh=0.0",
    ]
    assert _label(ray_cluster, *args, "--prompts", "autoppn", *[x for s in sets for x in ("--set", s)]) == 0
    rows, _ = _check_outputs(out)
    assert all(r["prompt_type"] == "autoppn" and r["prompt_points"] for r in rows)
    assert max(len([r for r in rows if r["image_id"] == i]) for i in {r["image_id"] for r in rows}) <= 8


@pytest.mark.parametrize(
    ("prompts", "extra", "message"),
    [
        ("yolo", [], "needs detector weights"),
        ("text", [], "--prompts text needs the detector"),
        ("text", ["--set", "text.weights=/nonexistent/owlv2", "--set", "text.classes=[box]"], "not a folder"),
        ("autoppn", [], "needs its head"),
        ("autoppn", ["--set", "autoppn.weights=/nonexistent/h.safetensors"], "no such file"),
        ("grid", ["--set", "classify.classes=[box]"], "classify needs the classifier"),
        ("grid", ["--set", "classify.classes=[box]", "--set", "classify.weights=/nonexistent/clip"], "not a folder"),
    ],
)
def test_missing_prompt_weights_fail_fast(ray_cluster, tmp_path, capsys, prompts, extra, message):
    out = tmp_path / "out"
    code = _label(
        ray_cluster, "--input", str(DATA), "--output", str(out), "--model", "mini-l", "--prompts", prompts, *extra
    )
    assert code == 2 and message in capsys.readouterr().err and not out.exists()


def test_autoppn_head_of_another_embedding_width_fails_fast(ray_cluster, tmp_path, capsys):
    weights = save_head(AutoPPN(AutoPPNCard(channels=8, out_stride=16, embed_dim=48)), tmp_path / "h48.safetensors")
    out = tmp_path / "out"
    args = ["--input", str(DATA), "--output", str(out), "--model", "mini-l", "--prompts", "autoppn"]
    assert _label(ray_cluster, *args, "--set", f"autoppn.weights={weights}") == 2
    assert "reads 48-channel embeddings" in capsys.readouterr().err and not out.exists()
