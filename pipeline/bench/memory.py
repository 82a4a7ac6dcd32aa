"""Peak memory of a block of code: process RSS high-water mark on Linux (reset through /proc/self/clear_refs),
and the CUDA allocator's peak on a GPU."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch


class PeakMemory:
    """``with PeakMemory(device) as m: ...``; then ``m.peak_mb`` (None where the platform cannot tell)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb: float | None = None

    def __enter__(self) -> PeakMemory:
        with contextlib.suppress(OSError):  # "5" resets the peak RSS counter (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5")
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak_mb = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
            return
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_mb = round(int(line.split()[1]) / 1024, 1)
        except OSError:
            self.peak_mb = None
