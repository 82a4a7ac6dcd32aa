"""The training job writes weights the labeling job loads (safetensors, plain state dict) and a loss curve; a short
run on one image fits its masks better than the initialisation did."""

import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from jobs.train_sam import main as train_main
from pipeline.datasets.shapes import write_split
from pipeline.models import create_model
from pipeline.models.checkpoint import load_checkpoint
from pipeline.train.sam.data import CocoMasks
from pipeline.train.sam.losses import LossWeights
from pipeline.train.sam.training import TrainConfig, train, train_step


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return write_split(root, "train", 2, seed=5), root / "train"


def test_training_job_writes_loadable_fp16_weights_and_its_log(shapes, tmp_path):
    gt, images = shapes
    out = tmp_path / "w.safetensors"
    args = ["--train-json", str(gt), "--images", str(images), "--out", str(out), "--steps", "2", "--log-every", "1"]
    assert train_main([*args, "--images-per-step", "1", "--masks-per-image", "2"]) == 0
    model = create_model("demo-shapes", seed=123)
    load_checkpoint(model, str(out))
    assert model.mask_decoder.iou_token.weight.dtype == torch.float32
    log = json.loads((tmp_path / "w.safetensors.log.json").read_text())
    assert [h["step"] for h in log["history"]] == [1, 2] and log["config"]["steps"] == 2


def test_init_continues_from_given_weights(shapes, tmp_path, capsys):
    gt, images = shapes
    base = ["--train-json", str(gt), "--images", str(images), "--images-per-step", "1", "--masks-per-image", "2"]
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert train_main([*base, "--out", str(first), "--steps", "2", "--seed", "3"]) == 0
    # A step too small to move any fp16 weight: the second run's output is its starting point (BatchNorm running
    # statistics do move: a training-mode forward updates them).
    assert train_main([*base, "--out", str(second), "--steps", "1", "--lr", "1e-12", "--init", str(first)]) == 0
    a, b = load_file(first), load_file(second)
    weights = [k for k in a if "running_" not in k and "num_batches" not in k]
    assert len(weights) > 100 and all(torch.equal(a[k], b[k]) for k in weights)
    log = json.loads((tmp_path / "b.safetensors.log.json").read_text())
    assert log["init_sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    (tmp_path / "bad.safetensors").write_bytes(b"not weights")
    bad_init = ["--out", str(tmp_path / "c.safetensors"), "--init", str(tmp_path / "bad.safetensors")]
    assert train_main([*base, *bad_init]) == 2
    assert "--init" in capsys.readouterr().err and not (tmp_path / "c.safetensors").exists()


def test_train_only_changes_only_the_named_parts(shapes, tmp_path, capsys):
    gt, images = shapes
    base = ["--train-json", str(gt), "--images", str(images), "--images-per-step", "1", "--masks-per-image", "2"]
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert train_main([*base, "--out", str(first), "--steps", "1"]) == 0
    head = "mask_decoder.iou_prediction_head"
    args = ["--out", str(second), "--steps", "3", "--lr", "0.01", "--init", str(first), "--train-only", head]
    assert train_main([*base, *args]) == 0
    a, b = load_file(first), load_file(second)
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    # Nothing else moves, BatchNorm running statistics of the frozen encoder included.
    assert changed and all(k.startswith(head) for k in changed)
    assert train_main([*base, "--out", str(tmp_path / "c.safetensors"), "--train-only", "mask_decoder.nope"]) == 2
    assert "mask_decoder.nope" in capsys.readouterr().err and not (tmp_path / "c.safetensors").exists()


def test_missing_annotation_file_fails_with_one_line(tmp_path, capsys):
    assert train_main(["--train-json", str(tmp_path / "no.json"), "--images", ".", "--out", "x.safetensors"]) == 2
    assert "no.json" in capsys.readouterr().err


@pytest.mark.slow
def test_a_short_run_fits_one_image(shapes, tmp_path):
    gt, images = shapes
    data = CocoMasks(gt, images)
    cfg = TrainConfig(steps=60, images_per_step=1, masks_per_image=4, warmup_steps=5, log_every=60, checkpoint_every=0)
    summary = train(data, tmp_path / "fit.safetensors", cfg)
    assert summary["history"][-1]["train_iou"] > 0.3
    model = create_model("demo-shapes")
    load_checkpoint(model, str(tmp_path / "fit.safetensors"))
    _, parts = train_step(model.train(), data, np.random.default_rng(1), cfg, LossWeights())
    assert parts["loss"] < summary["history"][0]["loss"]
