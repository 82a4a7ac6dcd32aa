"""The committed demo model (pipeline/models/weights/): its card's sha256 guards the weights, and the evaluation
command reproduces the card's validation number on the regenerated validation split, as ``make demo`` checks it.
Its AutoPPN head (same folder, same card) reads the demo model's 48-channel embedding and finds the shapes."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from jobs.evaluate import main as evaluate_main
from pipeline.config.sections import ModelConfig, StorageConfig
from pipeline.datasets.shapes import write_split
from pipeline.models.checkpoint import CheckpointError
from pipeline.models.registry import DEMO_CARD_FILE, WEIGHTS_DIR
from pipeline.prompts.autoppn.checkpoint import load_head
from pipeline.runtime.load import load_runtime
from pipeline.runtime.weights import load_model
from pipeline.train.autoppn.config import ValConfig
from pipeline.train.autoppn.data import read_dataset
from pipeline.train.autoppn.embeddings import encode_samples
from pipeline.train.autoppn.validate import evaluate

CARD = json.loads(DEMO_CARD_FILE.read_text())


def test_card_names_the_committed_file_and_its_sha256():
    weights = WEIGHTS_DIR / CARD["weights"]
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == CARD["sha256"]
    stages = CARD["reproduce"]["train"]  # from scratch, then each run continued from the previous one's (--init)
    assert all("jobs.train_sam" in stage for stage in stages)
    assert all("jobs.shapes" in command for command in CARD["reproduce"]["data"])  # the training splits
    assert "--init" not in stages[0] and all("--init" in stage for stage in stages[1:])
    between = CARD["reproduce"]["stage_sha256"]  # the outputs of every run but the last
    assert len(between) == len(stages) - 1 and all(len(sha) == 64 for sha in between)
    sam, sha256 = load_model(ModelConfig(name="demo-shapes"), StorageConfig())  # the default weights, checked
    assert sha256 == CARD["sha256"] and sam.encoder_input_size == 256


def test_tampered_demo_weights_are_refused(tmp_path):
    copy = tmp_path / "demo.safetensors"
    shutil.copy(WEIGHTS_DIR / CARD["weights"], copy)
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(ModelConfig(name="demo-shapes", weights=str(copy), weights_sha256="0" * 64), StorageConfig())


@pytest.mark.slow  # long: in the slow set that .ci/run runs after the default one
def test_evaluation_reproduces_the_committed_box_miou(tmp_path, capsys):
    split = CARD["validation"]["split"]
    write_split(tmp_path, "val", split["num_images"], seed=split["seed"])
    args = ["--gt", str(tmp_path / "val.json"), "--images", str(tmp_path / "val"), "--model", "demo-shapes"]
    out = tmp_path / "eval.json"
    code = evaluate_main([*args, "--protocols", "box", "--compare", str(DEMO_CARD_FILE), "--output", str(out)])
    assert code == 0, capsys.readouterr().out
    measured = json.loads(out.read_text())["box"]["miou"]["all"]
    assert measured == pytest.approx(CARD["validation"]["box"]["miou"]["all"], abs=0.02)
    assert "within 0.02" in capsys.readouterr().out


def test_compare_fails_when_the_number_moved(tmp_path, capsys):
    write_split(tmp_path, "val", 3, seed=5)
    card = tmp_path / "card.json"
    card.write_text(json.dumps({**CARD, "validation": {**CARD["validation"], "box": {"miou": {"all": 1.5}}}}))
    args = ["--gt", str(tmp_path / "val.json"), "--images", str(tmp_path / "val"), "--model", "demo-shapes"]
    assert evaluate_main([*args, "--protocols", "box", "--compare", str(card)]) == 1
    assert "NOT within 0.02" in capsys.readouterr().out


@pytest.mark.slow  # about a minute: in the slow set that .ci/run runs after the default one
def test_committed_autoppn_head_finds_the_shapes(tmp_path):
    ppn = CARD["autoppn"]
    head, _ = load_head(str(WEIGHTS_DIR / ppn["weights"]), StorageConfig(), expected_sha256=ppn["sha256"])
    assert head.card.embed_dim == 48 and head.card.sam_model == "demo-shapes"
    write_split(tmp_path, "val", 40, seed=CARD["validation"]["split"]["seed"])  # held out: training used seed 0
    samples = read_dataset(str(tmp_path / "val.json"), StorageConfig(), str(tmp_path / "val"))
    runtime = load_runtime(ModelConfig(name="demo-shapes"), StorageConfig(), decoder_chunk=64)
    embeddings = encode_samples(runtime, samples, StorageConfig())
    result = evaluate(head, [(samples, embeddings)], ValConfig(), runtime)  # the training job's validation
    # The card's recall is over 200 images; 40 images put it within a few points of that.
    assert result["recall"] >= ppn["validation"]["recall_at_iou_0.5"] - 0.1, result
    assert result["masks_per_image"] < 20  # proposals, not a dense grid
