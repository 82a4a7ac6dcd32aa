"""``precision: auto``: bf16 where the device runs it natively and the weights pass the accuracy gate there, else
fp32; explicit precisions are kept."""

from __future__ import annotations

import pytest
import torch

from pipeline.config import ModelConfig, StorageConfig
from pipeline.models import create_model
from pipeline.runtime import accuracy, auto_precision, load_runtime
from pipeline.runtime.auto_precision import candidates, resolve_precision

CPU = torch.device("cpu")


def test_candidates_try_both_in_bf16_then_one_then_none() -> None:
    assert candidates("auto", "auto") == [("bf16", "bf16"), ("bf16", "fp32"), ("fp32", "bf16"), ("fp32", "fp32")]
    assert candidates("fp32", "auto") == [("fp32", "bf16"), ("fp32", "fp32")]
    assert candidates("fp16", "auto") == [("fp16", "bf16"), ("fp16", "fp32")]
    assert candidates("auto", "fp32") == [("bf16", "fp32"), ("fp32", "fp32")]


def test_a_model_that_keeps_its_masks_runs_in_bf16_where_bf16_is_native(monkeypatch) -> None:
    monkeypatch.setattr(auto_precision, "native_bf16", lambda device: True)
    chosen = resolve_precision(create_model("mini-l", seed=0), CPU, "auto", "auto", channels_last=True)
    assert chosen.pair == ("bf16", "bf16") and 0.98 <= chosen.gate_mask_iou < 1.0


def test_weights_that_fail_the_gate_fall_back_to_fp32(monkeypatch) -> None:
    monkeypatch.setattr(auto_precision, "native_bf16", lambda device: True)
    monkeypatch.setattr(accuracy, "GATE_MASK_IOU", 0.9999)  # mini-l keeps ~0.99 of its masks in bf16
    chosen = resolve_precision(create_model("mini-l", seed=0), CPU, "auto", "auto", channels_last=True)
    assert chosen.pair == ("fp32", "fp32") and chosen.gate_mask_iou is None


def test_without_native_bf16_nothing_is_tried(monkeypatch) -> None:
    monkeypatch.setattr(auto_precision, "native_bf16", lambda device: False)
    monkeypatch.setattr(accuracy, "gate_images", lambda: pytest.fail("the gate ran"))
    sam = create_model("mini-l", seed=0)
    assert resolve_precision(sam, CPU, "auto", "auto", True).pair == ("fp32", "fp32")
    assert resolve_precision(sam, CPU, "bf16", "auto", True).pair == ("bf16", "fp32")  # explicit: kept


def test_explicit_precisions_are_kept_without_a_gate(monkeypatch) -> None:
    monkeypatch.setattr(accuracy, "gate_images", lambda: pytest.fail("the gate ran"))
    sam = create_model("mini-l", seed=0)
    assert resolve_precision(sam, CPU, "fp32", "bf16", True).pair == ("fp32", "bf16")


def test_the_default_config_loads_the_resolved_runtime(monkeypatch) -> None:
    monkeypatch.setattr(auto_precision, "native_bf16", lambda device: True)
    runtime = load_runtime(ModelConfig(name="mini-l", device="cpu"), StorageConfig(), decoder_chunk=16)
    assert (runtime.precision, runtime.decoder_precision) == ("bf16", "bf16")
    # The segment actor prints this line to the run's output.
    assert runtime.precision_note.startswith("precision auto on cpu: encoder bf16, decoder bf16, accuracy gate 0.9")
    monkeypatch.setattr(auto_precision, "native_bf16", lambda device: False)
    runtime = load_runtime(ModelConfig(name="mini-l", device="cpu"), StorageConfig(), decoder_chunk=16)
    assert (runtime.precision, runtime.decoder_precision) == ("fp32", "fp32")
    assert runtime.precision_note == "precision auto on cpu: encoder fp32, decoder fp32"
    explicit = load_runtime(
        ModelConfig(name="mini-l", device="cpu", precision="fp32", decoder_precision="fp32"), StorageConfig(), 16
    )
    assert explicit.precision_note is None


def test_native_bf16_reads_the_cpu_probes(monkeypatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert auto_precision.native_bf16(CPU)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert not auto_precision.native_bf16(CPU)  # a probe missing from a build counts as not native
