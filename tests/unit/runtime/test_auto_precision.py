"""``precision: auto``: bf16 where the device runs it and the weights pass the accuracy gate there, else fp32;
explicit precisions are kept."""

from __future__ import annotations

import pytest
import torch

from pipeline.config.sections import ModelConfig, StorageConfig
from pipeline.models import create_model
from pipeline.runtime import accuracy
from pipeline.runtime.auto_precision import candidates, resolve_precision
from pipeline.runtime.load import load_runtime
from tests.fixtures import needs_bf16

CPU = torch.device("cpu")


def test_candidates_try_both_in_bf16_then_one_then_none() -> None:
    assert candidates("auto", "auto") == [("bf16", "bf16"), ("bf16", "fp32"), ("fp32", "bf16"), ("fp32", "fp32")]
    assert candidates("fp32", "auto") == [("fp32", "bf16"), ("fp32", "fp32")]
    assert candidates("fp16", "auto") == [("fp16", "bf16"), ("fp16", "fp32")]
    assert candidates("auto", "fp32") == [("bf16", "fp32"), ("fp32", "fp32")]


@needs_bf16
def test_a_model_that_keeps_its_masks_runs_in_bf16_where_bf16_runs() -> None:
    chosen = resolve_precision(create_model("mini-l", seed=0), CPU, "auto", "auto", channels_last=True)
    assert chosen.pair == ("bf16", "bf16") and 0.98 <= chosen.gate_mask_iou < 1.0


@needs_bf16
def test_weights_that_fail_the_gate_fall_back_to_fp32(monkeypatch) -> None:
    monkeypatch.setattr(accuracy, "GATE_MASK_IOU", 0.9999)  # mini-l keeps ~0.99 of its masks in bf16
    chosen = resolve_precision(create_model("mini-l", seed=0), CPU, "auto", "auto", channels_last=True)
    assert chosen.pair == ("fp32", "fp32") and chosen.gate_mask_iou is None


def test_where_bf16_does_not_run_nothing_is_tried(monkeypatch) -> None:
    monkeypatch.setenv("SAMLABEL_CPU_BF16", "0")
    monkeypatch.setattr(accuracy, "gate_images", lambda: pytest.fail("the gate ran"))
    sam = create_model("mini-l", seed=0)
    assert resolve_precision(sam, CPU, "auto", "auto", True).pair == ("fp32", "fp32")
    assert resolve_precision(sam, CPU, "bf16", "auto", True).pair == ("bf16", "fp32")  # explicit: kept


def test_explicit_precisions_are_kept_without_a_gate(monkeypatch) -> None:
    monkeypatch.setattr(accuracy, "gate_images", lambda: pytest.fail("the gate ran"))
    sam = create_model("mini-l", seed=0)
    assert resolve_precision(sam, CPU, "fp32", "bf16", True).pair == ("fp32", "bf16")


@needs_bf16
def test_the_default_config_loads_the_resolved_runtime(monkeypatch) -> None:
    runtime = load_runtime(ModelConfig(name="mini-l", device="cpu"), StorageConfig(), decoder_chunk=16)
    assert (runtime.precision, runtime.decoder_precision) == ("bf16", "bf16")
    # The segment actor prints this line to the run's output.
    assert runtime.note.startswith("precision auto on cpu: encoder bf16, decoder bf16, accuracy gate 0.9")
    explicit = load_runtime(
        ModelConfig(name="mini-l", device="cpu", precision="fp32", decoder_precision="fp32"), StorageConfig(), 16
    )
    assert explicit.note is None


def test_the_default_config_runs_fp32_where_bf16_does_not_run(monkeypatch) -> None:
    monkeypatch.setenv("SAMLABEL_CPU_BF16", "0")
    runtime = load_runtime(ModelConfig(name="mini-l", device="cpu"), StorageConfig(), decoder_chunk=16)
    assert (runtime.precision, runtime.decoder_precision) == ("fp32", "fp32")
    assert runtime.note == "precision auto on cpu: encoder fp32, decoder fp32"


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"precision": "bf16"}, "model.precision=bf16 cannot run on cpu"),
        ({"decoder_precision": "bf16"}, "model.decoder_precision=bf16 cannot run on cpu"),
    ],
)
def test_a_worker_refuses_an_explicit_bf16_its_device_cannot_run(monkeypatch, settings, named) -> None:
    monkeypatch.setenv("SAMLABEL_CPU_BF16", "0")
    with pytest.raises(ValueError, match=f"{named} .*SAMLABEL_CPU_BF16=0; set it to auto"):
        load_runtime(ModelConfig(name="mini-l", device="cpu", **settings), StorageConfig(), decoder_chunk=16)
