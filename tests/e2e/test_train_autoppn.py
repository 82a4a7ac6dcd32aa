"""The AutoPPN training job on Ray Train (CPU worker): a tiny frozen encoder (mini-l) and a small head learn object
centres and boxes on generated shapes; the real validation code measures recall on held-out generated images
(box masks: the tiny encoder's mask decoder is untrained). A rerun resumes from the finished run's checkpoint.

The random encoder gives the head no notion of an object's extent, so the head needs the receptive field of four
MSPM blocks (±18 output cells) to regress the boxes of the larger shapes; with two it stalls at recall ~0.78."""

from __future__ import annotations

import json

import pytest

from jobs.train_autoppn import main
from pipeline.config.sections import StorageConfig
from pipeline.prompts.autoppn.checkpoint import load_head
from tests.shapes import write_shapes_dataset

SETTINGS = [
    "model.name=mini-l",
    "head.channels=32",
    "head.out_stride=16",
    "head.mspm_blocks=4",
    "optim.epochs=50",
    "optim.batch_size=4",
    "optim.lr=0.005",
    "optim.box_weight=2.0",
    "val.mask_source=box",
    "val.every=50",
    "workers.use_gpu=false",
    "ray.progress=false",
]


@pytest.mark.slow  # about two minutes on 2 cores: in the slow set that .ci/run runs after the default one
def test_head_learns_shape_centres_to_recall_0_9(ray_cluster, tmp_path):
    train = write_shapes_dataset(tmp_path / "train", 48, seed=1, ellipses=False)
    val = write_shapes_dataset(tmp_path / "val", 16, seed=2, ellipses=False)
    out = tmp_path / "out"
    args = ["--train", str(train), "--val", str(val), "--output", str(out), "--set", f"ray.address={ray_cluster}"]
    assert main([*args, *[x for s in SETTINGS for x in ("--set", s)]]) == 0
    summary = json.loads((out / "train.json").read_text())
    assert summary["metrics"]["val_recall"] >= 0.9, summary["metrics"]
    head, _ = load_head(str(out / "autoppn.safetensors"), StorageConfig())
    assert head.card.channels == 32 and head.card.sam_model == "mini-l"


def test_bad_dataset_fails_fast(tmp_path, capsys):
    train = write_shapes_dataset(tmp_path / "train", 2, seed=1)
    code = main(["--train", str(train), "--val", str(train), "--output", str(tmp_path / "o"), "--model", "mini-l"])
    assert code == 2 and "not held out" in capsys.readouterr().err
    code = main(["--train", str(tmp_path / "nope.json"), "--val", str(train), "--output", str(tmp_path / "o")])
    assert code == 2 and "no such file" in capsys.readouterr().err
