"""``load_runtime`` builds the configured backend (torch, onnx, tensorrt) inside the worker that uses it."""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import torch

from pipeline.config.sections import ModelConfig, StorageConfig
from pipeline.runtime.base import SamRuntime
from pipeline.runtime.capability import require_bf16
from pipeline.runtime.torch_backend import TorchSam, pick_device
from pipeline.runtime.weights import cache_dir, load_model

log = logging.getLogger(__name__)


def fp32_unless_set(model: ModelConfig) -> ModelConfig:
    """``model`` with ``auto`` precisions as fp32: for work that must reproduce exactly (training, evaluation)."""
    return dataclasses.replace(
        model,
        precision="fp32" if model.precision == "auto" else model.precision,
        decoder_precision="fp32" if model.decoder_precision == "auto" else model.decoder_precision,
    )


def load_runtime(model: ModelConfig, storage: StorageConfig, decoder_chunk: int) -> SamRuntime:
    """The configured backend with the model's weights, on the device picked inside this worker."""
    device = pick_device(model.device)
    sam, sha256 = load_model(model, storage)
    if model.backend == "torch":
        from pipeline.runtime.auto_precision import resolve_precision

        chosen = resolve_precision(sam, device, model.precision, model.decoder_precision, model.channels_last)
        explicit = [f"model.{key}=bf16" for key in ("precision", "decoder_precision") if getattr(model, key) == "bf16"]
        if explicit:
            require_bf16(device, " with ".join(explicit))
        note = None
        if "auto" in (model.precision, model.decoder_precision):
            gate = "" if chosen.gate_mask_iou is None else f", accuracy gate {chosen.gate_mask_iou:.3f}"
            took = f" in {chosen.gate_seconds:.1f} s" if chosen.gate_seconds else ""
            encoder, decoder = chosen.pair
            note = f"precision auto on {device}: encoder {encoder}, decoder {decoder}{gate}{took}"
            log.info(note)
        runtime = TorchSam(
            sam,
            device=device,
            precision=chosen.precision,
            decoder_chunk=decoder_chunk,
            channels_last=model.channels_last,
            compile=model.compile,
            decoder_precision=chosen.decoder_precision,
            note=note,
            aot_compile=model.aot_compile,
            compile_buckets=model.compile_buckets,
            compile_cache=cache_dir(model) / "compiled",
        )
        return runtime
    if model.backend == "onnx":
        from pipeline.runtime.export import cached_onnx
        from pipeline.runtime.onnx_backend import OnnxSam

        folder = cached_onnx(sam, model.name, sha256, cache_dir(model))
        return OnnxSam(
            folder,
            device=device.type,
            decoder_chunk=decoder_chunk,
            encoder_input_size=sam.encoder_input_size,
            intra_op_threads=torch.get_num_threads(),
        )
    if model.backend == "tensorrt":
        from pipeline.runtime.export import cached_onnx
        from pipeline.runtime.tensorrt_backend import TensorRTSam, ensure_engines, import_tensorrt

        import_tensorrt()  # fails in one line without the [trt] extra, before any export work
        if device.type != "cuda" or model.precision == "bf16":
            raise ValueError("model.backend=tensorrt needs a CUDA device and precision fp32 or fp16")
        precision = "fp32" if model.precision == "auto" else model.precision
        folder = cached_onnx(sam, model.name, sha256, cache_dir(model))
        # Random test weights have no file: the model name stands in for their sha256.
        model_sha = sha256 or hashlib.sha256(f"{model.name}:random".encode()).hexdigest()
        engines = ensure_engines(folder, cache_dir(model) / "tensorrt", model_sha, precision, sam.encoder_input_size)
        return TensorRTSam(*engines, encoder_input_size=sam.encoder_input_size, decoder_chunk=decoder_chunk)
    raise ValueError(f"model.backend={model.backend!r} is not available in this build")
