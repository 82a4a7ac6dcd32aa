"""TensorRT backend: engines built from our ONNX export (:mod:`pipeline.runtime.export`) with the TensorRT Python
API, cached, and run with the :class:`pipeline.runtime.base.SamRuntime` interface on a CUDA device.

* Build: ``OnnxParser`` → one optimisation profile over the dynamic axes (encoder batch; decoder images, prompts
  and tokens) → ``build_serialized_network``. ``fp32``, or ``fp16`` with the layers that overflow or lose too
  much in half precision pinned to fp32 (``OBEY_PRECISION_CONSTRAINTS``; see :func:`fp32_node_names`).
* Cache: one engine per (model weights sha256, TensorRT version, GPU name, precision) (:func:`engine_cache_key`);
  engines are not portable across TensorRT versions or GPU models.
* Needs the ``[trt]`` extra; ``tensorrt`` is imported only when an engine is built or loaded.

Not exercised on the development machines (no GPU, no TensorRT): only the ONNX side, the precision rules, the
profiles and the cache key are tested there. Accuracy must be checked on the GPU with
:func:`pipeline.runtime.accuracy.accuracy_gate` (``tests/gpu``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from pipeline.models.fast_decoder import DecodeHints
from pipeline.runtime.export import DECODER_FILE, DECODER_INPUTS, ENCODER_FILE, ENCODER_INPUTS
from pipeline.segment.geometry import normalize_and_pad
from pipeline.segment.prompts import PromptBatch

TrtPrecision = Literal["fp32", "fp16"]
Shapes = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
# Ops whose float results an fp16 engine keeps in fp32 when they sit in a norm or attention scope.
FLOAT_OPS = frozenset(
    {"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "ReduceMean", "ReduceSum", "MatMul", "Relu", "Pad", "Softmax"}
)
ALWAYS_FP32_OPS = frozenset({"LayerNormalization", "Softmax", "Resize"})
WORKSPACE_BYTES = 4 << 30


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise ImportError(
            "the TensorRT backend needs tensorrt; install the [trt] extra: pip install 'samlabel[trt]'"
        ) from exc
    return tensorrt


def fp32_node_names(graph: Any) -> list[str]:
    """ONNX nodes an fp16 engine must keep in fp32 (``graph`` is an ``onnx.GraphProto``).

    * ``LayerNormalization``, ``Softmax`` and ``Resize`` (the neck's bicubic upsampling) nodes;
    * every float op in the scope of a LayerNorm (scopes holding a ``ReduceMean``: LayerNorm2d is exported as
      ReduceMean/Sub/Pow/Sqrt/Div; an fp16 variance overflows, efficientvit#142);
    * the LiteMLA attention arithmetic (float ops under ``context_module/main`` except its convolutions), which the
      model itself runs in fp32 (efficientvit#113: an all-fp16 L2 engine gives 0 mIoU).
    """
    norm_scopes = {_scope(n.name) for n in graph.node if n.op_type in ("ReduceMean", "LayerNormalization")}
    names = []
    for node in graph.node:
        scope = _scope(node.name)
        attention = "/context_module/main" in scope and node.op_type in FLOAT_OPS
        if node.op_type in ALWAYS_FP32_OPS or attention or (scope in norm_scopes and node.op_type in FLOAT_OPS):
            names.append(node.name)
    return names


def _scope(node_name: str) -> str:
    return node_name.rsplit("/", 1)[0]


def engine_cache_key(model_sha256: str, trt_version: str, gpu_name: str, precision: TrtPrecision) -> str:
    """File-name-safe key: an engine is reusable only for the same weights, TensorRT version, GPU model, precision."""
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"TensorRT precision must be fp32 or fp16, got {precision!r}")
    gpu = re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-")
    return f"{model_sha256[:16]}-trt{trt_version}-{gpu}-{precision}"


def encoder_shapes(size: int, opt_batch: int = 16, max_batch: int = 32) -> Shapes:
    """Optimisation profile (min, opt, max) of ``encoder.onnx``: batch 1..max_batch of [3,S,S]."""
    return {ENCODER_INPUTS[0]: ((1, 3, size, size), (opt_batch, 3, size, size), (max_batch, 3, size, size))}


def decoder_shapes(max_images: int = 16, max_prompts: int = 64, max_tokens: int = 8) -> Shapes:
    """Optimisation profile of ``decoder.onnx`` over images N, prompts P and tokens T (opt: 4 images, P, 2 tokens)."""
    n, p, t = (1, min(4, max_images), max_images), (1, max_prompts, max_prompts), (1, 2, max_tokens)
    return {
        "image_embeddings": tuple((k, 256, 64, 64) for k in n),
        "image_index": tuple((k,) for k in p),
        "point_coords": tuple((k, j, 2) for k, j in zip(p, t, strict=True)),
        "point_labels": tuple((k, j) for k, j in zip(p, t, strict=True)),
        "mask_input": tuple((k, 1, 256, 256) for k in p),
        "has_mask_input": tuple((k,) for k in p),
    }


def build_engine(onnx_path: Path, engine_path: Path, shapes: Shapes, precision: TrtPrecision) -> Path:
    """Parses ``onnx_path``, builds a serialized engine with one profile over ``shapes`` and writes ``engine_path``."""
    import onnx

    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in shapes.items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        _pin_fp32(trt, network, set(fp32_node_names(onnx.load(str(onnx_path), load_external_data=False).graph)))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ValueError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    staging = engine_path.with_suffix(".tmp")
    staging.write_bytes(bytes(serialized))
    staging.replace(engine_path)
    return engine_path


def _pin_fp32(trt: Any, network: Any, node_names: set[str]) -> None:
    """Sets fp32 precision and output types on the layers the parser made from ``node_names``."""
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        # The parser names a layer after its ONNX node (with a suffix when a node becomes several layers) and
        # records the node in the layer's metadata.
        source = getattr(layer, "metadata", "") or ""
        if not any(layer.name == n or layer.name.startswith(n + "_") or n in source for n in node_names):
            continue
        layer.precision = trt.float32
        for k in range(layer.num_outputs):
            if layer.get_output(k).dtype in (trt.float32, trt.float16):
                layer.set_output_type(k, trt.float32)


def ensure_engines(
    onnx_dir: Path, cache_root: Path, model_sha256: str, precision: TrtPrecision, size: int
) -> tuple[Path, Path]:
    """The (encoder, decoder) engines for these weights on this GPU, built from ``onnx_dir`` on first use."""
    trt = import_tensorrt()
    key = engine_cache_key(model_sha256, trt.__version__, torch.cuda.get_device_name(), precision)
    encoder, decoder = cache_root / key / "encoder.engine", cache_root / key / "decoder.engine"
    if not encoder.exists():
        build_engine(onnx_dir / ENCODER_FILE, encoder, encoder_shapes(size), precision)
    if not decoder.exists():  # same precision rules: its LayerNorms and softmaxes stay fp32 in an fp16 engine
        build_engine(onnx_dir / DECODER_FILE, decoder, decoder_shapes(), precision)
    return encoder, decoder


class TensorRTSam:
    """Runs the two engines on CUDA with torch tensors as I/O buffers; same interface as ``TorchSam``."""

    note: str | None = None

    def __init__(
        self, encoder_engine: Path, decoder_engine: Path, encoder_input_size: int, decoder_chunk: int = 64
    ) -> None:
        if not torch.cuda.is_available():
            raise ValueError("the TensorRT backend needs a CUDA device")
        trt = import_tensorrt()
        self._trt = trt
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.encoder = runtime.deserialize_cuda_engine(Path(encoder_engine).read_bytes())
        self.decoder = runtime.deserialize_cuda_engine(Path(decoder_engine).read_bytes())
        self.encoder_context = self.encoder.create_execution_context()
        self.decoder_context = self.decoder.create_execution_context()
        self.device = torch.device("cuda")
        self.encoder_input_size = encoder_input_size
        self.decoder_chunk = decoder_chunk

    def encode(self, images: np.ndarray | torch.Tensor, input_hw: np.ndarray | torch.Tensor) -> torch.Tensor:
        images = torch.as_tensor(images)
        images = (images.pin_memory() if images.device.type == "cpu" else images).to(self.device, non_blocking=True)
        x = normalize_and_pad(images, torch.as_tensor(input_hw), self.encoder_input_size)
        return self._run(self.encoder, self.encoder_context, {ENCODER_INPUTS[0]: x})["image_embeddings"]

    def decode(
        self, embeddings: torch.Tensor, prompts: PromptBatch, hints: DecodeHints | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As ``TorchSam.decode``; ``hints`` are accepted for the interface (the engine computes everything)."""
        logits, ious = [], []
        for start in range(0, len(prompts), self.decoder_chunk):
            chunk = prompts.take(slice(start, start + self.decoder_chunk))
            used, index = np.unique(chunk.image_index, return_inverse=True)
            p = len(chunk)
            masks = np.zeros((p, 1, 256, 256), np.float32) if chunk.mask_input is None else chunk.mask_input
            feed = dict(
                zip(
                    DECODER_INPUTS,
                    (
                        embeddings[torch.as_tensor(used, device=self.device)].contiguous(),
                        torch.as_tensor(index.reshape(p), dtype=torch.int64),
                        torch.as_tensor(chunk.coords, dtype=torch.float32),
                        torch.as_tensor(chunk.labels, dtype=torch.float32),
                        torch.as_tensor(masks, dtype=torch.float32),
                        torch.full((p,), float(chunk.mask_input is not None)),
                    ),
                    strict=True,
                )
            )
            out = self._run(self.decoder, self.decoder_context, {k: v.to(self.device) for k, v in feed.items()})
            logits.append(out["low_res_masks"])
            ious.append(out["iou_predictions"])
        if not logits:
            return torch.zeros((0, 4, 256, 256), device=self.device), torch.zeros((0, 4), device=self.device)
        return torch.cat(logits), torch.cat(ious)

    def _run(self, engine: Any, context: Any, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        trt = self._trt
        for name, tensor in inputs.items():
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) != trt.TensorIOMode.OUTPUT:
                continue
            dtype = torch.float16 if engine.get_tensor_dtype(name) == trt.float16 else torch.float32
            outputs[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device=self.device)
            context.set_tensor_address(name, outputs[name].data_ptr())
        if not context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return {name: t.float() for name, t in outputs.items()}
