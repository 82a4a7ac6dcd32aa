"""The text-prompt benchmark runs the detector and the segment stage on its boxes and reports both rates."""

from __future__ import annotations

from pipeline.bench.text_models import write_tiny_owlv2
from pipeline.bench.text_prompts import text_prompt_bench
from pipeline.config.loading import load_config
from pipeline.config.sections import LabelConfig


def test_text_prompt_bench_reports_detector_and_segment_rates(tmp_path) -> None:
    owl = write_tiny_owlv2(tmp_path / "owlv2")
    overrides = [
        "model.name=mini-l",
        "model.precision=fp32",
        "model.decoder_precision=fp32",
        f"text.weights={owl}",
        "text.classes=[forklift, pallet]",
    ]
    cfg = load_config(LabelConfig, None, [*overrides, "text.box_thresh=0.0", "text.max_boxes_per_image=4"])
    report = text_prompt_bench(cfg, images=2, size_hw=(120, 160), work=tmp_path, seed=0)
    assert report["detector"]["classes"] == ["forklift", "pallet"]
    assert report["detector"]["boxes_per_image"] == 4.0
    assert report["detector"]["images_per_second"] > 0 and report["segment"]["images_per_second"] > 0
    assert 0 < report["end_to_end_images_per_second"] < report["segment"]["images_per_second"]
