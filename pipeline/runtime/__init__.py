"""How a model runs: ``load_runtime`` builds the configured backend inside the worker that uses it."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
from pathlib import Path

import torch

from pipeline.config.sections import ModelConfig, StorageConfig
from pipeline.models import EfficientViTSam, create_model, model_card
from pipeline.runtime.base import SamRuntime
from pipeline.runtime.capability import require_bf16
from pipeline.runtime.torch_backend import TorchSam, pick_device

log = logging.getLogger(__name__)


def resolve_weights(model: ModelConfig) -> str | None:
    """The weight URI to load: the configured one, else the model card's default (None = random test model)."""
    return model.weights or model_card(model.name).default_weights


def expected_sha256(model: ModelConfig) -> str | None:
    """The sha256 the weights must have: the configured one, else the card's for its own default weights."""
    return model.weights_sha256 or (None if model.weights else model_card(model.name).default_weights_sha256)


def cache_dir(model: ModelConfig) -> Path:
    return Path(model.cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "samlabel"))


def load_model(model: ModelConfig, storage: StorageConfig) -> tuple[EfficientViTSam, str | None]:
    """Builds the model and loads its weights (strict, weights_only); returns it with the weights' sha256."""
    from pipeline.models.checkpoint import load_checkpoint

    sam = create_model(model.name)
    weights = resolve_weights(model)
    if weights is None:
        return sam, None
    sha256 = load_checkpoint(
        sam,
        weights,
        storage=storage,
        cache_dir=model.cache_dir,
        expected_sha256=expected_sha256(model),
        model_name=model.name,
    )
    return sam, sha256


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
        runtime = TorchSam(
            sam,
            device=device,
            precision=chosen.precision,
            decoder_chunk=decoder_chunk,
            channels_last=model.channels_last,
            compile=model.compile,
            decoder_precision=chosen.decoder_precision,
        )
        if "auto" in (model.precision, model.decoder_precision):
            gate = "" if chosen.gate_mask_iou is None else f", accuracy gate {chosen.gate_mask_iou:.3f}"
            took = f" in {chosen.gate_seconds:.1f} s" if chosen.gate_seconds else ""
            encoder, decoder = chosen.pair
            runtime.precision_note = f"precision auto on {device}: encoder {encoder}, decoder {decoder}{gate}{took}"
            log.info(runtime.precision_note)
        return runtime
    if model.backend == "onnx":
        from pipeline.runtime.onnx_backend import OnnxSam

        folder = _exported_onnx(sam, model, sha256)
        return OnnxSam(
            folder,
            device=device.type,
            decoder_chunk=decoder_chunk,
            encoder_input_size=sam.encoder_input_size,
            intra_op_threads=torch.get_num_threads(),
        )
    if model.backend == "tensorrt":
        from pipeline.runtime.tensorrt_backend import TensorRTSam, ensure_engines, import_tensorrt

        import_tensorrt()  # fails in one line without the [trt] extra, before any export work
        if device.type != "cuda" or model.precision == "bf16":
            raise ValueError("model.backend=tensorrt needs a CUDA device and precision fp32 or fp16")
        precision = "fp32" if model.precision == "auto" else model.precision
        folder = _exported_onnx(sam, model, sha256)
        # Random test weights have no file: the model name stands in for their sha256.
        model_sha = sha256 or hashlib.sha256(f"{model.name}:random".encode()).hexdigest()
        engines = ensure_engines(folder, cache_dir(model) / "tensorrt", model_sha, precision, sam.encoder_input_size)
        return TensorRTSam(*engines, encoder_input_size=sam.encoder_input_size, decoder_chunk=decoder_chunk)
    raise ValueError(f"model.backend={model.backend!r} is not available in this build")


def _exported_onnx(sam: EfficientViTSam, model: ModelConfig, sha256: str | None) -> Path:
    """ONNX export of these weights, made once per (model, weights, torch version) and cached."""
    from pipeline.runtime.export import export_onnx

    key = f"{model.name}-{(sha256 or 'random')[:16]}-torch{torch.__version__.split('+')[0]}"
    folder = cache_dir(model) / "onnx" / key
    if not (folder / "onnx_card.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = folder.with_name(f"{key}.tmp-{os.getpid()}")
        export_onnx(sam, staging, model_name=model.name)
        try:
            staging.rename(folder)
        except OSError:  # another worker on this node finished the same export first
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def verify_weights(model: ModelConfig, storage: StorageConfig) -> str | None:
    """Fetches and checks the weight file on the driver (strict keys and shapes) before any image is read.

    Returns its sha256, or None for a test model without weights. Raises CheckpointError (a ValueError).
    """
    from pipeline.models.checkpoint import load_checkpoint

    weights = resolve_weights(model)
    if weights is None:
        return None
    structure = create_model(model.name, device="meta")  # keys and shapes only, no memory
    return load_checkpoint(
        structure,
        weights,
        storage=storage,
        cache_dir=model.cache_dir,
        expected_sha256=expected_sha256(model),
        model_name=model.name,
    )
