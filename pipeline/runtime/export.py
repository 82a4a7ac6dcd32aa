"""ONNX export of EfficientViT-SAM: the image encoder and our multi-image mask decoder, plus a JSON card.

Files written to the output folder:

* ``encoder.onnx``: ``input_image`` [B,3,S,S] float32, already normalised and zero-padded (see
  :func:`pipeline.segment.geometry.normalize_and_pad`) → ``image_embeddings`` [B,C,64,64]; B dynamic; C = 256 for the
  official variants (the model's ``embed_dim``).
* ``decoder.onnx``: ``image_embeddings`` [N,C,64,64], ``image_index`` [P] int64, ``point_coords`` [P,T,2] and
  ``point_labels`` [P,T] (the tokens of :func:`pipeline.segment.prompts.make_prompts`, padding point included),
  ``mask_input`` [P,1,256,256], ``has_mask_input`` [P] float32 (1 uses ``mask_input``, 0 ignores it) →
  ``low_res_masks`` [P,4,256,256] and ``iou_predictions`` [P,4] for all four mask tokens; N, P, T dynamic.
* ``onnx_card.json``: what a runtime needs to check before loading them (see :func:`export_onnx`).

The decoder is the same computation as :class:`pipeline.runtime.torch_backend.TorchSam` (it calls the same
functions). Each prompt gathers its image's embedding by ``image_index``, so the graph has no ``Tile`` from SAM's
``repeat_interleave`` (TensorRT cannot parse it, efficientvit#78). The default exporter is TorchScript
(``dynamo=False``, opset 17 as the official recipe): the dynamo exporter fails on the official call, which converts
``dynamic_axes`` (``onnx_probe.json``), but works here with explicit ``dynamic_shapes`` (``exporter="dynamo"``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder
from torch import nn

from pipeline.models.sam import EMBED_DIM, EMBED_HW, EfficientViTSam, decode_masks, embed_prompt_tokens

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
CARD_FILE = "onnx_card.json"
Exporter = Literal["torchscript", "dynamo"]
ENCODER_INPUTS = ("input_image",)
ENCODER_OUTPUTS = ("image_embeddings",)
DECODER_INPUTS = ("image_embeddings", "image_index", "point_coords", "point_labels", "mask_input", "has_mask_input")
DECODER_OUTPUTS = ("low_res_masks", "iou_predictions")
ENCODER_DYNAMIC_AXES = {"input_image": {0: "batch"}, "image_embeddings": {0: "batch"}}
DECODER_DYNAMIC_AXES = {
    "image_embeddings": {0: "num_images"},
    "image_index": {0: "num_prompts"},
    "point_coords": {0: "num_prompts", 1: "num_tokens"},
    "point_labels": {0: "num_prompts", 1: "num_tokens"},
    "mask_input": {0: "num_prompts"},
    "has_mask_input": {0: "num_prompts"},
    "low_res_masks": {0: "num_prompts"},
    "iou_predictions": {0: "num_prompts"},
}


def output_shapes(embed_dim: int) -> dict[str, list[int | str]]:
    """Declared output shapes of the two graphs for a model whose embedding has ``embed_dim`` channels."""
    return {
        "image_embeddings": ["batch", embed_dim, *EMBED_HW],
        "low_res_masks": ["num_prompts", 4, 256, 256],
        "iou_predictions": ["num_prompts", 4],
    }


class EncoderForExport(nn.Module):
    """[B,3,S,S] normalised, padded image → [B,C,64,64]; pre- and postprocessing stay outside the graph."""

    def __init__(self, model: EfficientViTSam) -> None:
        super().__init__()
        self.image_encoder = model.image_encoder

    def forward(self, input_image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(input_image)


class DecoderForExport(nn.Module):
    """Prompt encoder + mask decoder over prompts of several images; inputs and outputs as in the module docstring."""

    def __init__(self, model: EfficientViTSam) -> None:
        super().__init__()
        self.prompt_encoder: PromptEncoder = model.prompt_encoder
        self.mask_decoder: MaskDecoder = model.mask_decoder
        with torch.no_grad():
            self.register_buffer("image_pe", model.prompt_encoder.get_dense_pe(), persistent=False)  # [1,C,64,64]

    def forward(
        self,
        image_embeddings: torch.Tensor,  # [N,C,64,64]
        image_index: torch.Tensor,  # [P] int64
        point_coords: torch.Tensor,  # [P,T,2]
        point_labels: torch.Tensor,  # [P,T]
        mask_input: torch.Tensor,  # [P,1,256,256]
        has_mask_input: torch.Tensor,  # [P]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sparse = embed_prompt_tokens(self.prompt_encoder, point_coords, point_labels)  # [P,T,C]
        has_mask = has_mask_input.reshape(-1, 1, 1, 1)
        no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        # With has_mask exactly 0 or 1 (and a finite mask_input) the blend is bit-identical to TorchSam's either/or.
        dense = has_mask * self.prompt_encoder.mask_downscaling(mask_input) + (1 - has_mask) * no_mask
        return decode_masks(self.mask_decoder, image_embeddings[image_index], self.image_pe, sparse, dense)


def example_decoder_inputs(
    num_images: int,
    num_prompts: int,
    num_tokens: int,
    device: torch.device | str = "cpu",
    embed_dim: int = EMBED_DIM,
) -> tuple[torch.Tensor, ...]:
    """Random decoder inputs in ``DECODER_INPUTS`` order; every other prompt uses its mask input."""
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([1.0, 0.0, -1.0, 2.0, 3.0]).repeat(num_tokens // 5 + 1)[:num_tokens]
    inputs = (
        torch.randn(num_images, embed_dim, *EMBED_HW, generator=g),
        torch.arange(num_prompts, dtype=torch.int64) % num_images,
        torch.rand(num_prompts, num_tokens, 2, generator=g) * 1024,
        labels.expand(num_prompts, -1).contiguous(),
        torch.randn(num_prompts, 1, 256, 256, generator=g),
        (torch.arange(num_prompts) % 2).float(),
    )
    return tuple(t.to(device) for t in inputs)


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("ONNX export needs onnx; install the [onnx] extra: pip install 'samlabel[onnx]'") from exc
    return onnx


def _dynamo_shapes(axes: dict[str, dict[int, str]], inputs: tuple[str, ...]) -> dict[str, dict[int, Any]]:
    from torch.export import Dim

    try:
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ImportError("the dynamo exporter needs onnxscript: pip install onnxscript") from exc

    dims = {name: Dim(name, min=1) for per_input in axes.values() for name in per_input.values()}
    return {key: {axis: dims[name] for axis, name in axes[key].items()} for key in inputs}


def _export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    names: tuple[tuple[str, ...], tuple[str, ...]],
    axes: dict[str, dict[int, str]],
    opset: int,
    exporter: Exporter,
) -> None:
    common = {"input_names": list(names[0]), "output_names": list(names[1]), "opset_version": opset}
    if exporter == "torchscript":
        options = {"dynamo": False, "dynamic_axes": axes, "do_constant_folding": True}
    else:
        options = {"dynamo": True, "dynamic_shapes": _dynamo_shapes(axes, names[0]), "external_data": False}
    with warnings.catch_warnings():
        # Both exporters warn about traced shape arithmetic and deprecations; the tests run every exported file at
        # other sizes than the example inputs, which is what those warnings are about.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), verbose=False, **common, **options)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _declare_output_shapes(proto: Any, embed_dim: int) -> None:
    """Writes the known output shapes into the graph (the TorchScript exporter leaves e.g. 64×64 symbolic)."""
    shapes = output_shapes(embed_dim)
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        for dim, value in zip(dims, shapes[output.name], strict=True):
            if isinstance(value, int):
                dim.dim_value = value
            else:
                dim.dim_param = value


def _finish_file(path: Path, axes: dict, embed_dim: int) -> dict[str, Any]:
    """Declares the output shapes, checks the file, and returns its part of the card."""
    onnx = _import_onnx()
    proto = onnx.load(str(path))
    _declare_output_shapes(proto, embed_dim)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))

    def spec(values) -> list[dict[str, Any]]:
        out = []
        for value in values:
            tensor = value.type.tensor_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
            out.append(
                {"name": value.name, "dtype": dtype, "shape": [d.dim_param or d.dim_value for d in tensor.shape.dim]}
            )
        return out

    opset = max(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))
    return {
        "file": path.name,
        "sha256": _sha256(path),
        "opset": opset,
        "inputs": spec(proto.graph.input),
        "outputs": spec(proto.graph.output),
        "dynamic_axes": axes,
    }


def export_onnx(
    model: EfficientViTSam,
    out_dir: Path,
    opset: int = 17,
    *,
    model_name: str | None = None,
    exporter: Exporter = "torchscript",
) -> dict[str, Any]:
    """Writes ``encoder.onnx``, ``decoder.onnx`` and ``onnx_card.json`` to ``out_dir`` and returns the card.

    ``exporter``: ``torchscript`` (``dynamo=False``, the official recipe, any opset >= 17) or ``dynamo``
    (``torch.export`` with symbolic dims; writes opset >= 18, the lowest it converts this encoder to, and needs
    onnxscript). The card holds ``model`` (``model_name`` or None), ``encoder_input_size``, ``opset`` (as
    written), the exporter, torch and onnx versions, and per file (``encoder``, ``decoder``) its name, sha256,
    opset, input/output names, dtypes and shapes (symbolic names for dynamic axes) and the dynamic axes.
    The model must be fp32; it is exported on its own device.
    """
    onnx = _import_onnx()
    if opset < 17:
        raise ValueError(f"opset must be >= 17 (LayerNormalization), got {opset}")
    if exporter not in ("torchscript", "dynamo"):
        raise ValueError(f"exporter must be 'torchscript' or 'dynamo', got {exporter!r}")
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32}:
        raise ValueError(f"export needs an fp32 model, got parameters of dtype {sorted(map(str, dtypes))}")
    if exporter == "dynamo":
        opset = max(opset, 18)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    device = next(model.parameters()).device
    size = model.encoder_input_size
    encoder_path, decoder_path = out_dir / ENCODER_FILE, out_dir / DECODER_FILE
    # The wrappers are put in eval mode too: the exporter restores the wrapper's mode afterwards, recursively, and a
    # wrapper left in its default train mode would switch the caller's BatchNorm layers to batch statistics.
    with torch.no_grad():
        image = torch.zeros(2, 3, size, size, device=device)  # [B,3,S,S]
        encoder_io = (ENCODER_INPUTS, ENCODER_OUTPUTS)
        _export(
            EncoderForExport(model).eval(), (image,), encoder_path, encoder_io, ENCODER_DYNAMIC_AXES, opset, exporter
        )
        args = example_decoder_inputs(2, 3, 5, device=device, embed_dim=model.embed_dim)
        decoder_io = (DECODER_INPUTS, DECODER_OUTPUTS)
        _export(DecoderForExport(model).eval(), args, decoder_path, decoder_io, DECODER_DYNAMIC_AXES, opset, exporter)
    encoder = _finish_file(encoder_path, ENCODER_DYNAMIC_AXES, model.embed_dim)
    decoder = _finish_file(decoder_path, DECODER_DYNAMIC_AXES, model.embed_dim)
    card = {
        "model": model_name,
        "encoder_input_size": size,
        "opset": max(encoder["opset"], decoder["opset"]),
        "exporter": exporter,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "encoder": encoder,
        "decoder": decoder,
    }
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    return card


def cached_onnx(sam: EfficientViTSam, model_name: str, sha256: str | None, cache_root: Path) -> Path:
    """The ONNX export of these weights under ``cache_root/onnx``, made once per (model, weights, torch version).

    Workers on one node may export at once: each writes its own staging folder and the first rename wins.
    """
    key = f"{model_name}-{(sha256 or 'random')[:16]}-torch{torch.__version__.split('+')[0]}"
    folder = cache_root / "onnx" / key
    if not (folder / "onnx_card.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = folder.with_name(f"{key}.tmp-{os.getpid()}")
        export_onnx(sam, staging, model_name=model_name)
        try:
            staging.rename(folder)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return folder
