"""``python -m jobs.evaluate`` equals numbers computed independently, with pycocotools, from a labeling run's written
COCO / Parquet outputs; on the fixture model (mini-l with the official-code fixture weights) and the demo model.

Independent here means: masks read back from ``annotations/`` Parquet or ``coco.json`` and scored with
``pycocotools.mask.iou`` / ``COCOeval`` directly, while ``jobs.evaluate`` ran the model itself through the batched
API (box, detector with ``--detections``) or read the run's outputs through its own code (``--labels``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from jobs.evaluate import main as evaluate_main
from jobs.label import main as label_main
from pipeline.datasets.shapes import write_split
from pipeline.evaluation.ground_truth import area_bucket
from tests.e2e.conftest import FP32, read_dataset
from tests.fixtures import write_fixture_weights

MODELS = {"mini-l": "fixture", "demo-shapes": None}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_split(root, "val", 3, seed=11)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, list[str]]:
    path = write_fixture_weights(tmp_path_factory.mktemp("w") / "mini_l.pt", "l")
    return {"mini-l": ["--model", "mini-l", "--weights", str(path)], "demo-shapes": ["--model", "demo-shapes"]}


def _label(ray_cluster: str, *args: str) -> None:
    assert label_main([*args, "--set", f"ray.address={ray_cluster}", "--set", "ray.progress=false"]) == 0


def _evaluate(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / f"eval-{len(list(tmp_path.glob('eval-*')))}.json"
    assert evaluate_main([*args, "--output", str(out)]) == 0
    return json.loads(out.read_text())


def _gt_rle(ann: dict, image: dict) -> dict:
    seg = ann["segmentation"]
    return {"size": seg["size"], "counts": seg["counts"].encode()} if isinstance(seg["counts"], str) else seg


def _independent_box_miou(gt_file: Path, annotations: Path) -> dict[str, float]:
    gt = json.loads(gt_file.read_text())
    images = {im["file_name"]: im for im in gt["images"]}
    by_id = {a["id"]: a for a in gt["annotations"]}
    per_bucket: dict[str, list[float]] = {"all": [], "small": [], "medium": [], "large": []}
    for row in read_dataset(annotations, ["annotation_id"]):
        ann = by_id[row["annotation_id"]]
        image = images[row["image_id"]]
        ours = {"size": [image["height"], image["width"]], "counts": row["rle_counts"].encode()}
        iou = float(mask_utils.iou([ours], [_gt_rle(ann, image)], [0])[0, 0])
        per_bucket["all"].append(iou)
        per_bucket[area_bucket(ann["area"])].append(iou)
    return {k: float(np.mean(v)) for k, v in per_bucket.items() if v}


def _cocoeval(gt_file: Path, results: list[dict], max_dets: list[int] | None = None) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        evaluator = COCOeval(gt, gt.loadRes(results), "segm")
        if max_dets:
            evaluator.params.maxDets = max_dets
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


# mini-l's run takes about a minute: in the slow set that .ci/run runs after the default one.
@pytest.mark.parametrize("model", [pytest.param("mini-l", marks=pytest.mark.slow), "demo-shapes"])
def test_box_and_detector_protocols_equal_pycocotools_on_the_written_outputs(
    model, ray_cluster, shapes, weights, tmp_path
):
    gt_file, images = shapes / "val.json", shapes / "val"
    run = tmp_path / "boxes-run"
    _label(
        ray_cluster,
        "--input",
        str(images),
        "--output",
        str(run),
        *weights[model],
        "--prompts",
        "boxes",
        "--prompts-file",
        str(gt_file),
        *FP32,  # evaluate runs the model in fp32
    )
    independent = _independent_box_miou(gt_file, run / "annotations")
    from_model = _evaluate(
        tmp_path, "--gt", str(gt_file), "--images", str(images), *weights[model], "--protocols", "box"
    )
    from_outputs = _evaluate(tmp_path, "--gt", str(gt_file), "--labels", str(run), "--protocols", "box")
    for bucket, value in independent.items():
        assert from_outputs["box"]["miou"][bucket] == pytest.approx(value, abs=1e-6), bucket
        assert from_model["box"]["miou"][bucket] == pytest.approx(value, abs=2e-3), bucket  # batching rounds ~1e-6
    # Detector AP: the run's coco.json scored by COCOeval directly vs. the same boxes segmented by evaluate.
    coco_out = json.loads((run / "coco.json").read_text())
    gt_ids = {im["file_name"]: im["id"] for im in json.loads(gt_file.read_text())["images"]}
    out_ids = {im["id"]: gt_ids[im["file_name"]] for im in coco_out["images"]}
    results = [{**a, "image_id": out_ids[a["image_id"]]} for a in coco_out["annotations"]]
    ap = _cocoeval(gt_file, copy.deepcopy(results)).stats[0]
    detections = tmp_path / "detections.json"
    rng = np.random.default_rng(0)
    gt_boxes = {a["id"]: a["bbox"] for a in json.loads(gt_file.read_text())["annotations"]}
    dets = [  # the run's prompts: its annotation ids are the GT ids of the boxes it was given
        {"image_id": a["image_id"], "bbox": gt_boxes[a["id"]], "category_id": a["category_id"], "score": float(s)}
        for a, s in zip(results, rng.uniform(0.3, 1.0, len(results)), strict=True)
    ]
    detections.write_text(json.dumps(dets))
    by_labels = _evaluate(tmp_path, "--gt", str(gt_file), "--labels", str(run), "--protocols", "detector")
    assert by_labels["detector"]["AP"] == pytest.approx(ap, abs=1e-6)
    by_model = _evaluate(
        tmp_path,
        "--gt",
        str(gt_file),
        "--images",
        str(images),
        *weights[model],
        "--protocols",
        "detector",
        "--detections",
        str(detections),
    )
    rescored = [{**r, "score": d["score"]} for r, d in zip(results, dets, strict=True)]
    assert by_model["detector"]["AP"] == pytest.approx(_cocoeval(gt_file, rescored).stats[0], abs=5e-3)


@pytest.mark.slow  # long: in the slow set that .ci/run runs after the default one
def test_segment_everything_ar_equals_class_agnostic_cocoeval(ray_cluster, shapes, weights, tmp_path):
    gt_file, images = shapes / "val.json", shapes / "val"
    run = tmp_path / "grid-run"
    _label(
        ray_cluster,
        "--input",
        str(images),
        "--output",
        str(run),
        *weights["demo-shapes"],
        "--set",
        "grid.points_per_side=8",
        "--set",
        "grid.pred_iou_thresh=0.0",
        "--set",
        "grid.stability_score_thresh=0.0",
    )
    result = _evaluate(tmp_path, "--gt", str(gt_file), "--labels", str(run))
    assert result["protocols"] == ["everything"]
    gt = json.loads(gt_file.read_text())
    gt["categories"] = [{"id": 1, "name": "object"}]
    for ann in gt["annotations"]:
        ann["category_id"] = 1
    agnostic = tmp_path / "agnostic.json"
    agnostic.write_text(json.dumps(gt))
    gt_ids = {im["file_name"]: im["id"] for im in gt["images"]}
    rows = read_dataset(run / "annotations", ["image_id", "annotation_id"])
    assert rows  # the committed demo-shapes weights, opened-up filters: masks are kept
    dets = [
        {
            "image_id": gt_ids[r["image_id"]],
            "category_id": 1,
            "score": r["score"],
            "segmentation": {"size": [r["image_height"], r["image_width"]], "counts": r["rle_counts"]},
        }
        for r in rows
    ]
    stats = _cocoeval(agnostic, dets, [10, 100, 1000]).stats
    assert result["everything"]["AR@10"] == pytest.approx(stats[6], abs=1e-6)
    assert result["everything"]["AR@100"] == pytest.approx(stats[7], abs=1e-6)
    assert result["everything"]["AR@1000"] == pytest.approx(stats[8], abs=1e-6)
    assert 0 <= stats[8] <= 1


def test_bad_requests_fail_with_one_line(shapes, tmp_path, capsys):
    gt = str(shapes / "val.json")
    assert evaluate_main(["--gt", gt, "--protocols", "everything"]) == 2
    assert "pass --labels" in capsys.readouterr().err
    assert evaluate_main(["--gt", gt, "--protocols", "box"]) == 2
    assert "pass --model and --images" in capsys.readouterr().err
    missing = ["--gt", str(tmp_path / "none.json"), "--model", "demo-shapes", "--images", str(shapes / "val")]
    assert evaluate_main(missing) == 2
    assert "none.json" in capsys.readouterr().err
