"""What a device can run, found by running it: a tiny bf16 convolution and matmul, once per device and process.

CPU flags say what an instruction set offers, not what this PyTorch build runs (oneDNN refuses bf16 convolutions
without AVX512-BW/VL/DQ or AVX-NE-CONVERT; some builds lack kernels), so the probe runs the two operations the
encoder and the mask decoder are made of. ``SAMLABEL_CPU_BF16=0`` makes the CPU count as one without bf16, so that
a machine that has it can run the no-bf16 path too (CI runs the precision tests both ways).
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

import torch
import torch.nn.functional as F

CPU_BF16_ENV = "SAMLABEL_CPU_BF16"


def bf16_unsupported_reason(device: torch.device) -> str | None:
    """None when bf16 convolutions and matmuls run on ``device``; else one line saying why not."""
    if device.type == "cpu" and os.environ.get(CPU_BF16_ENV, "").strip() == "0":
        return f"bf16 is turned off for the CPU by {CPU_BF16_ENV}=0"
    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        return f"{torch.cuda.get_device_name(device)} has no native bf16 (compute capability below 8.0)"
    return _probe(str(device))


def bf16_runs(device: torch.device) -> bool:
    """Whether bf16 runs on ``device`` (see :func:`bf16_unsupported_reason`)."""
    return bf16_unsupported_reason(device) is None


def describe_device(device: torch.device) -> str:
    """``cpu (AMD EPYC ...)`` or ``cuda:0 (NVIDIA H100 ...)``: the device with its model name, for messages."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({cpu_model()})"
    return str(device)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_report() -> dict[str, str | bool]:
    """The CPU as a benchmark reports it: model, the ISA class PyTorch's kernels dispatch to, and whether bf16 runs
    (and if not, why)."""
    reason = bf16_unsupported_reason(torch.device("cpu"))
    report: dict[str, str | bool] = {
        "cpu": cpu_model(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "bf16": reason is None,
    }
    if reason:
        report["bf16_unavailable"] = reason
    return report


@functools.cache
def _probe(device: str) -> str | None:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 16, 8, 8, generator=generator)
    kernel = torch.randn(16, 16, 3, 3, generator=generator)
    left, right = torch.randn(32, 64, generator=generator), torch.randn(64, 32, generator=generator)
    try:
        bf16 = [t.to(device=device, dtype=torch.bfloat16) for t in (image, kernel, left, right)]
        conv = F.conv2d(bf16[0].contiguous(memory_format=torch.channels_last), bf16[1], padding=1).float().cpu()
        product = (bf16[2] @ bf16[3]).float().cpu()
    except RuntimeError as e:
        return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    # bf16 keeps 8 bits of mantissa: a kernel that runs but computes something else is as unusable as none.
    for ours, exact in ((conv, F.conv2d(image, kernel, padding=1)), (product, left @ right)):
        if not torch.allclose(ours, exact, rtol=0.05, atol=0.5):
            return "bf16 kernels run but give wrong results"
    return None


def require_bf16(device: torch.device, settings: str, why: str = "") -> None:
    """Raises ValueError naming ``settings`` (e.g. ``model.precision=bf16``) and ``device`` when bf16 does not run
    there; ``why`` says why that device matters."""
    reason = bf16_unsupported_reason(device)
    if reason is not None:
        raise ValueError(
            f"{settings} cannot run on {describe_device(device)}{why}: {reason}; set it to auto (bf16 only where it "
            "runs and keeps the masks) or fp32"
        )
