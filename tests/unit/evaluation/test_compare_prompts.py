"""python -m jobs.compare_prompts runs grid and autoppn on the same images and weights and reports prompts, masks,
per-stage times and agreement with the grid (tiny model, small grid: no timing is asserted)."""

import json

import torch

from jobs.compare_prompts import main
from pipeline.prompts.autoppn.checkpoint import save_head
from pipeline.prompts.autoppn.model import AutoPPN, AutoPPNCard
from tests.fixtures import REPO, write_fixture_weights


def test_compare_reports_every_method(tmp_path, capsys):
    sam = write_fixture_weights(tmp_path / "mini_l.pt", "l")
    torch.manual_seed(0)
    head = AutoPPN(AutoPPNCard(channels=16, out_stride=16))
    torch.nn.init.constant_(head.point_head[-1].bias, 0.0)
    weights = save_head(head, tmp_path / "h.safetensors")
    report = tmp_path / "report.json"
    sets = ["grid.points_per_side=4", f"autoppn.weights={weights}", "autoppn.top_n=8", "autoppn.pred_iou_thresh=0.0"]
    args = ["--input", str(REPO / "tests" / "data" / "images"), "--model", "mini-l", "--weights", str(sam)]
    assert main([*args, "--limit", "1", "--json", str(report), *[x for s in sets for x in ("--set", s)]]) == 0
    data = json.loads(report.read_text())
    assert set(data["methods"]) == {"grid", "autoppn"} and data["images"] == 1
    grid, autoppn = data["methods"]["grid"], data["methods"]["autoppn"]
    assert grid["prompts_per_image"] == 16 and autoppn["prompts_per_image"] == 8
    assert set(grid["ms_per_image"]) == {"encode", "prompts", "decode", "filter"}
    assert grid["grid_masks_matched"]["0.9"] in (1.0, None)  # the grid matches itself
    assert "speedup" in capsys.readouterr().out


def test_bad_weights_fail_with_exit_2(tmp_path, capsys):
    args = ["--input", str(REPO / "tests" / "data" / "images"), "--model", "mini-l", "--limit", "1"]
    assert main([*args, "--set", f"autoppn.weights={tmp_path / 'missing.safetensors'}"]) == 2
    assert "no such file" in capsys.readouterr().err
