"""Encoder-only throughput: batches of images through ``runtime.encode`` (uint8 canvases uploaded from pinned
memory on a GPU), the number the published table compares against. Runs on any backend and device."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import torch

from pipeline.runtime.base import SamRuntime


def gpu_utilization(device: torch.device) -> float | None:
    """Percent of the last sample period the GPU was busy (needs pynvml); None on CPU or without it."""
    if device.type != "cuda":
        return None
    try:
        return float(torch.cuda.utilization(device))
    except Exception:  # pynvml missing or no NVML: the figure is optional
        return None


class UtilisationSampler:
    """Samples :func:`gpu_utilization` every ``period`` seconds in a thread; ``mean`` after the block (or None)."""

    def __init__(self, device: torch.device, period: float = 0.05) -> None:
        self.device, self.period = device, period
        self.samples: list[float] = []
        self.mean: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            value = gpu_utilization(self.device)
            if value is None:
                return
            self.samples.append(value)

    def __enter__(self) -> UtilisationSampler:
        if self.device.type == "cuda":
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.mean = round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def encoder_throughput(runtime: SamRuntime, batch: int, iterations: int, warmup: int = 2) -> dict:
    """Images/s of ``runtime.encode`` on ``batch`` random full canvases, ``iterations`` timed calls after ``warmup``.

    Returns ``{"batch", "iterations", "seconds", "images_per_second", "gpu_utilization"}``.
    """
    if batch < 1 or iterations < 1:
        raise ValueError(f"batch and iterations must be >= 1, got {batch} and {iterations}")
    size = runtime.encoder_input_size
    canvases = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
    device = runtime.device
    if device.type == "cuda":
        canvases = canvases.pin_memory()
    input_hw = np.full((batch, 2), size, np.int64)
    return timed_calls(lambda: runtime.encode(canvases, input_hw), device, batch, iterations, warmup)


def timed_calls(call: Callable[[], object], device: torch.device, batch: int, iterations: int, warmup: int) -> dict:
    """Times ``iterations`` calls of ``call`` (``batch`` images each) after ``warmup`` calls, GPU utilisation sampled.

    Returns ``{"batch", "iterations", "seconds", "images_per_second", "gpu_utilization"}``.
    """
    for _ in range(warmup):
        call()
    _sync(device)
    with UtilisationSampler(device) as sampler:
        start = time.perf_counter()
        for _ in range(iterations):
            call()
        _sync(device)
        seconds = time.perf_counter() - start
    return {
        "batch": batch,
        "iterations": iterations,
        "seconds": round(seconds, 4),
        "images_per_second": round(batch * iterations / seconds, 2),
        "gpu_utilization": sampler.mean,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
