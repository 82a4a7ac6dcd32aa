"""The labeling job end to end on the local Ray cluster (logical GPU), through ``jobs.label.main``.

Covers: grid prompts on photos with a tiny model; box prompts from a COCO file whose masks equal the official
predictor's; a folder of hostile files (every good image labeled, every bad one in errors/, nothing missing or
twice); the same run against moto's S3 server giving the same results as the local run; identical reruns giving
identical outputs; an unchanged rerun being a no-op; bad flags failing fast with exit 2 and nothing written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from jobs.label import main
from pipeline.config.sections import IMAGE_EXTENSIONS
from pipeline.runtime import accuracy
from pipeline.segment.masks import decode_rle, mask_iou
from pipeline.segment.reference import ReferencePredictor
from tests.e2e.conftest import DATA, FAST_GRID, FP32, read_dataset
from tests.fixtures import fixture_model, needs_bf16, write_fixture_weights
from tests.images import write_hostile_corpus

ANNOTATION_COLUMNS = {
    "image_id",
    "image_uri",
    "image_width",
    "image_height",
    "annotation_id",
    "category_id",
    "category_name",
    "bbox_xywh",
    "area",
    "rle_counts",
    "predicted_iou",
    "stability_score",
    "score",
    "prompt_type",
    "prompt_box_xyxy",
    "prompt_points",
    "model",
    "run_id",
}


def _label(ray_cluster: str, *args: str) -> int:
    return main([*args, "--set", f"ray.address={ray_cluster}"])


@pytest.fixture(scope="module")
def grid_run(ray_cluster, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("grid") / "out"
    assert _label(ray_cluster, "--input", str(DATA), "--output", str(out), "--model", "mini-l", *FAST_GRID) == 0
    return out


def test_grid_run_writes_the_documented_layout(grid_run):
    for name in ("annotations", "errors", "images", "coco.json", "run.json", "_SUCCESS"):
        assert (grid_run / name).exists() or name == "errors", name
    rows = read_dataset(grid_run / "annotations", ["image_id", "annotation_id"])
    assert rows and set(rows[0]) >= ANNOTATION_COLUMNS
    assert {r["image_id"] for r in rows} == {p.name for p in DATA.glob("*.jpg")}
    assert len({r["annotation_id"] for r in rows}) == len(rows)
    coco = COCO(str(grid_run / "coco.json"))
    assert len(coco.getImgIds()) == 4 and len(coco.getAnnIds()) == len(rows)
    for ann in coco.loadAnns(coco.getAnnIds()[:5]):
        assert coco.annToMask(ann).sum() == ann["area"]
    run = json.loads((grid_run / "run.json").read_text())
    assert run["counts"] == {
        "images": 4,
        "labeled": 4,
        "errors": 0,
        "annotations": len(rows),
        "prompts_dropped": 0,
        "masks_dropped": 0,
        "masks_unnamed": 0,
        "duplicates_removed": 0,
    }
    assert run["config"]["grid"]["points_per_side"] == 4 and run["model"]["name"] == "mini-l"
    assert run["timings"]["images_per_second"] > 0
    stages = run["timings"]["stage_seconds"]  # per-stage seconds summed by the sink; not written as columns
    assert {"read", "decode", "encode", "prompts", "decode_masks", "filter", "rle", "write"} <= set(stages)
    assert all(seconds >= 0 for seconds in stages.values()) and stages["decode_masks"] > 0
    assert not any(name.startswith("seconds_") for name in rows[0])


@pytest.mark.slow  # long: in the slow set that .ci/run runs after the default one
def test_unchanged_rerun_is_a_noop_and_identical_rerun_identical(ray_cluster, grid_run, tmp_path, capsys):
    assert _label(ray_cluster, "--input", str(DATA), "--output", str(grid_run), "--model", "mini-l", *FAST_GRID) == 0
    assert "nothing to do" in capsys.readouterr().out
    again = tmp_path / "again"
    assert _label(ray_cluster, "--input", str(DATA), "--output", str(again), "--model", "mini-l", *FAST_GRID) == 0
    assert (again / "coco.json").read_bytes() == (grid_run / "coco.json").read_bytes()
    keys = ["image_id", "annotation_id"]
    assert read_dataset(again / "annotations", keys) == read_dataset(grid_run / "annotations", keys)


def test_box_prompts_match_the_official_predictor(ray_cluster, tmp_path):
    weights = write_fixture_weights(tmp_path / "mini_l.pt", "l")
    images = sorted(DATA.glob("*.jpg"))[:2]
    coco = {"images": [], "annotations": [], "categories": [{"id": 7, "name": "thing"}, {"id": 9, "name": "other"}]}
    rng = np.random.default_rng(0)
    for i, path in enumerate(images):
        w, h = Image.open(path).size
        coco["images"].append({"id": 100 + i, "file_name": path.name, "width": w, "height": h})
        for k in range(3):
            x, y = rng.uniform(0, w * 0.5), rng.uniform(0, h * 0.5)
            bw, bh = rng.uniform(20, w * 0.5), rng.uniform(20, h * 0.5)
            coco["annotations"].append(
                {
                    "id": 1000 + 10 * i + k,
                    "image_id": 100 + i,
                    "category_id": 7 + 2 * (k % 2),
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                }
            )
    boxes_file = tmp_path / "boxes.json"
    boxes_file.write_text(json.dumps(coco))
    out = tmp_path / "out"
    code = _label(
        ray_cluster,
        "--input",
        str(DATA),
        "--output",
        str(out),
        "--model",
        "mini-l",
        "--weights",
        str(weights),
        "--prompts",
        "boxes",
        "--prompts-file",
        str(boxes_file),
        *FP32,
        "--set",
        "ray.progress=false",
    )
    assert code == 0
    rows = {r["annotation_id"]: r for r in read_dataset(out / "annotations", ["annotation_id"])}
    assert set(rows) == {a["id"] for a in coco["annotations"]}
    predictor = ReferencePredictor(fixture_model("l"))
    by_image = {im["id"]: im for im in coco["images"]}
    for ann in coco["annotations"]:
        image = by_image[ann["image_id"]]
        predictor.set_image(np.asarray(Image.open(DATA / image["file_name"]).convert("RGB")))
        x, y, w, h = ann["bbox"]
        masks, iou, _ = predictor.predict(box=np.array([x, y, x + w, y + h]), multimask_output=True)
        row = rows[ann["id"]]
        ours = decode_rle({"size": [image["height"], image["width"]], "counts": row["rle_counts"]})
        assert mask_iou(ours, masks[int(np.argmax(iou))]) >= 0.99
        assert abs(row["predicted_iou"] - iou.max()) <= 1e-3
        assert row["category_id"] == ann["category_id"] and row["prompt_box_xyxy"] == pytest.approx(
            [x, y, x + w, y + h]
        )
    output = COCO(str(out / "coco.json"))
    assert sorted(output.getImgIds()) == [100, 101] and sorted(output.getCatIds()) == [7, 9]


@pytest.mark.slow  # long: in the slow set that .ci/run runs after the default one
def test_hostile_folder_every_image_accounted_for_once(ray_cluster, tmp_path):
    folder = tmp_path / "in"
    corpus = write_hostile_corpus(folder)
    expected = {k: v for k, v in corpus.items() if Path(k).suffix.lower() in IMAGE_EXTENSIONS}
    assert "animated/loop.gif" in set(corpus) - set(expected)  # GIF is not a listed extension
    out = tmp_path / "out"
    assert _label(ray_cluster, "--input", str(folder), "--output", str(out), "--model", "mini-l", *FAST_GRID) == 0
    images = read_dataset(out / "images", ["image_id"])
    errors = {r["image_id"]: r for r in read_dataset(out / "errors", ["image_id"])}
    labeled = {r["image_id"] for r in read_dataset(out / "annotations", ["image_id"])}
    assert sorted(r["image_id"] for r in images) == sorted(expected)  # nothing missing, nothing twice
    for image_id, error_type in expected.items():
        if error_type is None:
            assert image_id not in errors and image_id in labeled, image_id
        else:
            assert errors[image_id]["error_type"] == error_type and errors[image_id]["message"], image_id
            assert image_id not in labeled


def test_s3_run_equals_local_run(ray_cluster, s3_endpoint, s3_bucket, grid_run, tmp_path):
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for path in DATA.glob("*.jpg"):
        client.upload_file(str(path), s3_bucket, f"photos/{path.name}")
    output = f"s3://{s3_bucket}/labels"
    code = _label(
        ray_cluster,
        "--input",
        f"s3://{s3_bucket}/photos",
        "--output",
        output,
        "--model",
        "mini-l",
        "--set",
        f"storage.s3_endpoint_url={s3_endpoint}",
        *FAST_GRID,
    )
    assert code == 0
    local = tmp_path / "s3copy"
    for obj in client.list_objects_v2(Bucket=s3_bucket, Prefix="labels/")["Contents"]:
        target = local / obj["Key"].removeprefix("labels/")
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(s3_bucket, obj["Key"], str(target))
    assert (local / "_SUCCESS").exists()
    assert (local / "coco.json").read_bytes() == (grid_run / "coco.json").read_bytes()
    keys = ["image_id", "annotation_id"]
    strip = [{k: v for k, v in r.items() if k != "image_uri"} for r in read_dataset(local / "annotations", keys)]
    assert strip == [
        {k: v for k, v in r.items() if k != "image_uri"} for r in read_dataset(grid_run / "annotations", keys)
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompts", "boxes"], "--prompts boxes needs --prompts-file"),
        (["--set", "grid.points_per_side=0"], "grid.points_per_side must be at least 1"),
        (["--model", "vit_h"], "unknown model 'vit_h'"),
        (["--set", "grid.pred_iou_thres=0.5"], "unknown config key 'grid.pred_iou_thres'"),
        (["--weights", "/nonexistent/w.pt"], "/nonexistent/w.pt"),
        (["--set", "model.backend=onnx", "--set", "model.decoder_precision=bf16"], "needs model.backend=torch"),
        (["--set", "model.backend=onnx", "--set", "model.precision=bf16"], "model.precision=bf16 needs model.backend"),
        (["--set", "model.backend=onnx", "--set", "model.aot_compile=true"], "aot_compile needs model.backend=torch"),
        (["--set", "model.aot_compile=true", "--set", "model.compile=true"], "two ways to compile the encoder"),
        (["--set", "model.compile_buckets=[4, 0]"], "model.compile_buckets must be batch sizes >= 1"),
        (
            ["--set", "decode.device=cuda", "--set", "model.device=cpu"],
            "decode.device=cuda decodes on the segment actor's GPU",
        ),
        (["--set", "decode.device=gpu"], "decode.device"),
    ],
)
def test_bad_flags_fail_fast_with_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main(["--input", str(DATA), "--output", str(out), "--model", "mini-l", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


@needs_bf16
def test_a_decoder_precision_that_fails_the_gate_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    # mini-l's bf16 decoder keeps ~0.99 of its masks (passes the 0.98 bar); a bar above that must stop the run.
    monkeypatch.setattr(accuracy, "GATE_MASK_IOU", 0.9999)
    out = tmp_path / "out"
    assert (
        main(
            ["--input", str(DATA), "--output", str(out), "--model", "mini-l", "--set", "model.decoder_precision=bf16"]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "model.decoder_precision=bf16 fails the accuracy gate for mini-l" in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("setting", ["model.precision=bf16", "model.decoder_precision=bf16"])
def test_a_bf16_the_cpu_cannot_run_is_refused_before_any_work(tmp_path, capsys, monkeypatch, setting):
    monkeypatch.setenv("SAMLABEL_CPU_BF16", "0")  # as on an AVX2-only CPU
    out = tmp_path / "out"
    assert main(["--input", str(DATA), "--output", str(out), "--model", "mini-l", "--set", setting]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{setting} cannot run on cpu (" in err and "set it to auto" in err and len(err.splitlines()) == 1
    assert "Traceback" not in err and not out.exists()


def test_missing_input_fails_fast(tmp_path, capsys):
    assert main(["--input", str(tmp_path / "nope"), "--output", str(tmp_path / "out"), "--model", "mini-l"]) == 2
    assert "nope" in capsys.readouterr().err


def test_output_of_another_config_is_refused(ray_cluster, grid_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(grid_run, copy)
    args = ["--input", str(DATA), "--output", str(copy), "--model", "mini-l", *FAST_GRID]
    assert _label(ray_cluster, *args, "--set", "grid.box_nms_thresh=0.5") == 2
    assert "another configuration" in capsys.readouterr().err
