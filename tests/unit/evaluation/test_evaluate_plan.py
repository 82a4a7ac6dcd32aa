"""Which protocols score a labeling run by default: its prompt mode's, and mask AP per class once a classifier has
named its masks."""

from __future__ import annotations

from pipeline.evaluation.evaluate import default_protocols


def test_named_masks_are_scored_per_class() -> None:
    grid = {"prompts": {"mode": "grid"}, "classify": {"classes": [], "file": None}}
    assert default_protocols(grid) == ("everything",)
    named = {**grid, "classify": {"classes": ["person", "box"], "file": None}}
    assert default_protocols(named) == ("everything", "detector")
    text = {"prompts": {"mode": "text"}, "classify": {"classes": [], "file": "classes.yaml"}}
    assert default_protocols(text) == ("detector",)
    assert default_protocols({"prompts": {"mode": "autoppn"}}) == ("everything",)  # a run.json from before classify
