"""The image encoder ahead-of-time compiled: one AOTInductor package per static batch bucket, built once and cached
on disk like an engine, so that every actor of a node (and every later run) loads it instead of compiling.

A call of B images runs in pieces of the largest bucket; the last piece is padded with zero images up to the
smallest bucket that holds it, and the padding's outputs are dropped. A package is found by its key: the encoder's
weights (sha256 of its tensors, as they are run: BatchNorm folded), the model code, the torch version, the device
(GPU name and compute capability, or the CPU vector ISA inductor probed), the precision, the memory format, the input
size and the bucket. Actors that need the same package at once wait on a file lock while one builds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from pipeline.runtime.base import Precision

log = logging.getLogger(__name__)

DEFAULT_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
_MODEL_SOURCES = ("efficientvit.py", "fused_encoder.py", "sam.py")


class _EncoderGraph(nn.Module):
    """What is compiled: the encoder with its precision and memory format, normalized images in, fp32 out."""

    def __init__(self, encoder: nn.Module, device_type: str, precision: Precision, channels_last: bool) -> None:
        super().__init__()
        self.encoder, self.device_type, self.channels_last = encoder, device_type, channels_last
        self.dtype = _AUTOCAST.get(precision)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = nullcontext() if self.dtype is None else torch.autocast(self.device_type, dtype=self.dtype)
        with autocast:
            return self.encoder(x).float().contiguous()


class CompiledEncoder:
    """Runs ``encoder`` [B,3,S,S] float → [B,256,64,64] float32 through cached AOTInductor packages.

    ``compile_seconds`` holds, per bucket used so far, the seconds spent building its package in this process (0.0
    when it was loaded from the cache).
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        device: torch.device,
        precision: Precision,
        channels_last: bool,
        input_size: int,
        cache_folder: Path,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
    ) -> None:
        if not buckets or min(buckets) < 1:
            raise ValueError(f"batch buckets must be positive, got {list(buckets)}")
        self.device = torch.device(device)
        self.buckets = tuple(sorted(set(buckets)))
        self.input_size = input_size
        self.cache_folder = Path(cache_folder)
        self.graph = _EncoderGraph(encoder, self.device.type, precision, channels_last).eval()
        self.key = {
            "weights_sha256": tensors_sha256(encoder),
            "code_sha256": _model_code_sha256(),
            "torch": torch.__version__,
            "device": device_name(self.device),
            "precision": precision,
            "channels_last": channels_last,
            "input_size": input_size,
        }
        self.compile_seconds: dict[int, float] = {}
        self._runners: dict[int, object] = {}

    def pieces(self, count: int) -> list[tuple[int, int, int]]:
        """How ``count`` images run: (start, images, bucket) per call."""
        largest, out = self.buckets[-1], []
        for start in range(0, count, largest):
            n = min(largest, count - start)
            out.append((start, n, next(b for b in self.buckets if b >= n)))
        return out

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for start, n, bucket in self.pieces(len(x)):
            piece = x[start : start + n]
            if bucket > n:
                piece = torch.cat([piece, piece.new_zeros((bucket - n, *piece.shape[1:]))])
            outputs.append(self.runner(bucket)(piece.contiguous())[:n])
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    def package_path(self, bucket: int) -> Path:
        key = json.dumps({**self.key, "bucket": bucket}, sort_keys=True)
        return self.cache_folder / f"encoder-{hashlib.sha256(key.encode()).hexdigest()[:24]}.pt2"

    def runner(self, bucket: int):
        """The loaded package of ``bucket``, built first when no actor has built it yet."""
        if bucket not in self._runners:
            # Imported here: the io package at import time changes the heap layout keep_freed_memory relies on.
            from pipeline.io.conditional import guard

            path = self.package_path(bucket)
            path.parent.mkdir(parents=True, exist_ok=True)
            with guard(str(path)):
                start = time.perf_counter()
                built = not path.exists()
                if built:
                    self._build(bucket, path)
                self.compile_seconds[bucket] = time.perf_counter() - start if built else 0.0
            if built:
                log.info("compiled the encoder for batch %d in %.1f s: %s", bucket, self.compile_seconds[bucket], path)
            self._runners[bucket] = torch._inductor.aoti_load_package(str(path))
        return self._runners[bucket]

    @torch.inference_mode(False)
    def _build(self, bucket: int, path: Path) -> None:
        example = torch.zeros((bucket, 3, self.input_size, self.input_size), device=self.device)
        exported = torch.export.export(self.graph, (example,))
        partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.pt2")
        torch._inductor.aoti_compile_and_package(exported, package_path=str(partial))
        os.replace(partial, path)  # whole packages only: a crash mid-build leaves no file under the key


def tensors_sha256(module: nn.Module) -> str:
    """sha256 of a module's parameters and buffers (names, dtypes, shapes and bytes), in state-dict order."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        value = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{value.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def device_name(device: torch.device) -> str:
    """What a compiled package is specific to: the GPU model and compute capability, or the CPU's vector ISA as
    inductor probes it (AVX512 and AVX2 machines get different code)."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} sm_{major}{minor}"
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    return f"cpu {pick_vec_isa() or 'scalar'}"


def _model_code_sha256() -> str:
    folder = Path(__file__).resolve().parents[1] / "models"
    digest = hashlib.sha256()
    for name in _MODEL_SOURCES:
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()
