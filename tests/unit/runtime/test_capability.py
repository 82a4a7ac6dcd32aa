"""Whether bf16 runs is found by running it: the probe agrees with a bf16 convolution run directly, and
SAMLABEL_CPU_BF16=0 makes the CPU count as one without bf16."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.runtime.capability import bf16_runs, bf16_unsupported_reason, cpu_report, describe_device

CPU = torch.device("cpu")


def _bf16_convolution_runs() -> bool:
    x = torch.ones(1, 4, 6, 6, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    try:
        F.conv2d(x, torch.ones(4, 4, 3, 3, dtype=torch.bfloat16))
    except RuntimeError:
        return False
    return True


def test_the_probe_says_what_this_cpu_runs(monkeypatch) -> None:
    monkeypatch.delenv("SAMLABEL_CPU_BF16", raising=False)
    assert bf16_runs(CPU) == _bf16_convolution_runs()
    assert cpu_report()["bf16"] == bf16_runs(CPU)
    assert cpu_report()["isa"] == torch.backends.cpu.get_cpu_capability()


def test_the_override_turns_bf16_off_for_the_cpu_only(monkeypatch) -> None:
    monkeypatch.setenv("SAMLABEL_CPU_BF16", "0")
    assert bf16_unsupported_reason(CPU) == "bf16 is turned off for the CPU by SAMLABEL_CPU_BF16=0"
    report = cpu_report()
    assert report["bf16"] is False and "SAMLABEL_CPU_BF16=0" in report["bf16_unavailable"]
    assert describe_device(CPU).startswith("cpu (") and report["cpu"] in describe_device(CPU)
