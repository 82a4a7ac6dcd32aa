"""The classification benchmark names every generated mask and reports its cost per mask, split into the crops
and the model, for each count of masks per image."""

from __future__ import annotations

from pipeline.bench.classify_cost import classify_cost_bench, random_masks
from pipeline.bench.text_models import write_tiny_classifier
from pipeline.config.loading import load_config
from pipeline.config.sections import LabelConfig


def test_classify_cost_reports_ms_per_mask_for_each_count(tmp_path) -> None:
    clip = write_tiny_classifier(tmp_path / "clip")
    overrides = ["model.name=mini-l", f"classify.weights={clip}", "classify.classes=[person, box]"]
    cfg = load_config(LabelConfig, None, [*overrides, "classify.batch_size=4"])
    report = classify_cost_bench(cfg, images=2, size_hw=(120, 160), masks_per_image=[3, 6], work=tmp_path, seed=0)
    assert report["classifier"]["classes"] == ["person", "box"] and report["image_long_side"] == 512
    assert [r["masks_per_image"] for r in report["rows"]] == [3, 6]
    for row in report["rows"]:
        assert row["ms_per_mask"] > 0 and row["crops_ms_per_mask"] > 0 and row["masks_per_second"] > 0


def test_random_masks_have_tight_boxes_and_areas() -> None:
    masks = random_masks(90, 120, 5, seed=1)
    assert len(masks.rles) == 5 and (masks.areas > 0).all()
    assert (masks.boxes_xyxy[:, 2] < 120).all() and (masks.boxes_xyxy[:, 0] <= masks.boxes_xyxy[:, 2]).all()
