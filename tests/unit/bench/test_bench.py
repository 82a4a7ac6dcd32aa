"""``python -m jobs.bench`` runs both sides on CPU and reports times, stages, the ratio and the agreement."""

from __future__ import annotations

import json

from jobs.bench import main
from pipeline.timing import STAGES
from tests.fixtures import needs_bf16


def test_boxes_bench_reports_both_sides_and_agreement(tmp_path, capsys) -> None:
    out = tmp_path / "report.json"
    argv = ["--model", "mini-l", "--images", "1", "--size", "120x160", "--prompts", "boxes", "--boxes-per-image", "3"]
    assert main([*argv, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    for side in ("ours", "reference"):
        assert report[side]["seconds"] > 0 and report[side]["prompts_per_image"] == 3
        assert report[side]["masks_per_image"] == 3  # thresholds 0: one mask per box
    assert set(report["ours"]["stage_seconds"]) <= set(STAGES)
    assert {"read", "decode", "encode", "decode_masks", "rle", "write"} <= set(report["ours"]["stage_seconds"])
    assert report["speedup"] > 0
    assert report["agreement"]["mask_iou"]["n"] == 3 and report["agreement"]["mask_iou"]["min"] >= 0.99
    assert report["conditions"]["weights"].startswith("random")
    # Our side runs with the label job's malloc settings; the report says what each side had.
    assert report["conditions"]["allocator"]["ours"].startswith("glibc keeps freed memory")
    assert set(report["conditions"]["allocator"]) == {"ours", "reference"}
    table = capsys.readouterr().out
    assert "speedup" in table and "reference" in table and "malloc: ours" in table


@needs_bf16
def test_reduced_precision_bench_reports_the_accuracy_gate(tmp_path, capsys) -> None:
    out = tmp_path / "report.json"
    argv = ["--model", "mini-l", "--images", "1", "--size", "120x160", "--decoder-precision", "bf16", "--no-reference"]
    assert main([*argv, "--json", str(out)]) == 0
    gate = json.loads(out.read_text())["gate"]
    assert gate["passed"] and gate["prompts"] == 54 and gate["mask_iou_mean"] >= gate["threshold"] == 0.98
    assert "accuracy gate vs fp32: passed" in capsys.readouterr().out


def test_a_bf16_bench_the_cpu_cannot_run_is_refused_in_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setenv("SAMLABEL_CPU_BF16", "0")  # as on an AVX2-only CPU
    argv = ["--model", "mini-l", "--images", "1", "--size", "120x160", "--decoder-precision", "bf16", "--no-reference"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.decoder_precision=bf16 cannot run on cpu (" in err


def test_grid_bench_on_a_folder_reports_matched_masks(tmp_path) -> None:
    from pipeline.bench.data import write_images

    folder = tmp_path / "photos"
    write_images(folder, 1, (100, 150), seed=3)
    out = tmp_path / "grid.json"
    argv = ["--model", "mini-l", "--input", str(folder), "--prompts", "grid", "--points-per-side", "2"]
    # Random weights: thresholds off so that both sides keep masks (all boxes are the whole image: one survives NMS).
    lax = [
        "--set",
        "grid.pred_iou_thresh=0",
        "--set",
        "grid.stability_score_thresh=0",
        "--set",
        "grid.max_mask_area_frac=1",
    ]
    assert main([*argv, *lax, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["ours"]["prompts_per_image"] == report["reference"]["prompts_per_image"] == 4
    agreement = report["agreement"]
    assert agreement["reference_masks"] >= 1 and agreement["fraction_matched"] == 1.0


def test_encoder_only_and_bad_flags(tmp_path, capsys) -> None:
    out = tmp_path / "enc.json"
    argv = ["--model", "mini-l", "--encoder-only", "--batch-sizes", "1,2", "--iterations", "1", "--json", str(out)]
    assert main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["batch"] for r in rows] == [1, 2] and all(r["images_per_second"] > 0 for r in rows)
    assert main(["--model", "mini-l", "--input", str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err
