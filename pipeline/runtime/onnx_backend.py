"""ONNX Runtime backend: the ``encoder.onnx`` / ``decoder.onnx`` pair of :mod:`pipeline.runtime.export`.

Same interface as :class:`pipeline.runtime.torch_backend.TorchSam`. Preprocessing is the shared
:func:`pipeline.segment.geometry.normalize_and_pad` (run in torch on the CPU); embeddings stay numpy arrays on the
host; ``decode`` returns CPU torch tensors whatever the execution provider. Needs the ``[onnx]`` extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from pipeline.models.fast_decoder import DecodeHints
from pipeline.runtime.export import CARD_FILE, DECODER_FILE, DECODER_INPUTS, ENCODER_FILE, ENCODER_INPUTS
from pipeline.segment.geometry import normalize_and_pad
from pipeline.segment.prompts import PromptBatch

OnnxDevice = Literal["auto", "cpu", "cuda"]
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError(
            "the ONNX backend needs onnxruntime; install the [onnx] extra: pip install 'samlabel[onnx]'"
        ) from exc
    return onnxruntime


def pick_providers(device: OnnxDevice, available: list[str]) -> list[str]:
    """Execution providers for ``device``: ``auto`` is CUDA when onnxruntime has it, else CPU."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and CUDA_PROVIDER not in available:
        raise ValueError(f"device 'cuda' requested but onnxruntime has no {CUDA_PROVIDER} (install onnxruntime-gpu)")
    if device != "cpu" and CUDA_PROVIDER in available:
        return [CUDA_PROVIDER, CPU_PROVIDER]
    return [CPU_PROVIDER]


class OnnxSam:
    """Runs an exported model with ONNX Runtime, with the :class:`pipeline.runtime.base.SamRuntime` interface.

    Args:
        model_dir: folder written by :func:`pipeline.runtime.export.export_onnx`; or give ``encoder_path`` and
            ``decoder_path`` (the card is then read from next to the encoder when present).
        device: ``auto`` / ``cpu`` / ``cuda``, mapped to execution providers by :func:`pick_providers`.
        decoder_chunk: most prompts per decoder run, as in ``TorchSam``.
        intra_op_threads: ONNX Runtime threads per session; 0 lets it choose.
        encoder_input_size: expected S (e.g. from the model card); ValueError when the files disagree.
    """

    note: str | None = None

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        encoder_path: Path | str | None = None,
        decoder_path: Path | str | None = None,
        device: OnnxDevice = "auto",
        decoder_chunk: int = 64,
        intra_op_threads: int = 0,
        encoder_input_size: int | None = None,
    ) -> None:
        if decoder_chunk < 1:
            raise ValueError(f"decoder_chunk must be >= 1, got {decoder_chunk}")
        if intra_op_threads < 0:
            raise ValueError(f"intra_op_threads must be >= 0, got {intra_op_threads}")
        if (model_dir is None) == (encoder_path is None or decoder_path is None):
            raise ValueError("give either model_dir or both encoder_path and decoder_path")
        encoder_path = Path(model_dir) / ENCODER_FILE if model_dir is not None else Path(encoder_path)
        decoder_path = Path(model_dir) / DECODER_FILE if model_dir is not None else Path(decoder_path)
        ort = _import_ort()
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        providers = pick_providers(device, ort.get_available_providers())
        self.encoder = ort.InferenceSession(str(encoder_path), options, providers=providers)
        self.decoder = ort.InferenceSession(str(decoder_path), options, providers=providers)
        self.providers: list[str] = self.decoder.get_providers()
        self.device = torch.device("cpu")
        self.decoder_chunk = decoder_chunk
        self.encoder_input_size = self._check_files(encoder_path, decoder_path, encoder_input_size)
        self.embed_dim: int = self.encoder.get_outputs()[0].shape[1]  # C of [B,C,64,64], declared by the export

    def _check_files(self, encoder_path: Path, decoder_path: Path, expected: int | None) -> int:
        """S from the encoder graph, checked against the card next to the encoder and ``expected``."""
        names = [i.name for i in self.decoder.get_inputs()]
        if names != list(DECODER_INPUTS):
            raise ValueError(
                f"{decoder_path} has inputs {names}, expected {list(DECODER_INPUTS)} (re-export with jobs.export)"
            )
        encoder_input = self.encoder.get_inputs()[0]
        shape = encoder_input.shape  # [B,3,S,S]
        if encoder_input.name != ENCODER_INPUTS[0] or len(shape) != 4 or not isinstance(shape[2], int):
            raise ValueError(f"{encoder_path} must take {ENCODER_INPUTS[0]} [B,3,S,S] with a fixed S, got {shape}")
        size = shape[2]
        card_path = encoder_path.parent / CARD_FILE
        if card_path.exists():
            card_size = json.loads(card_path.read_text()).get("encoder_input_size")
            if card_size != size:
                raise ValueError(f"{card_path} says encoder_input_size {card_size} but {encoder_path} takes {size}")
        if expected is not None and expected != size:
            raise ValueError(f"encoder_input_size {expected} expected but {encoder_path} takes {size}")
        return size

    def encode(self, images: np.ndarray | torch.Tensor, input_hw: np.ndarray | torch.Tensor) -> np.ndarray:
        """[B,S,S,3] uint8 canvases and [B,2] resized (h, w) → embeddings [B,C,64,64] float32 (numpy)."""
        x = normalize_and_pad(torch.as_tensor(images).cpu(), torch.as_tensor(input_hw), self.encoder_input_size)
        return self.encoder.run(None, {ENCODER_INPUTS[0]: x.numpy()})[0]

    def decode(
        self, embeddings: np.ndarray, prompts: PromptBatch, hints: DecodeHints | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[N,C,64,64] embeddings and P prompts → low-res logits [P,4,256,256] and IoU [P,4], CPU tensors.

        ``hints`` are accepted for the common interface; the exported graph always computes everything.
        """
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 4 or embeddings.shape[1:] != (self.embed_dim, 64, 64):
            raise ValueError(f"embeddings must be [N,{self.embed_dim},64,64], got {embeddings.shape}")
        logits, ious = [], []
        for start in range(0, len(prompts), self.decoder_chunk):
            low_res, iou = self._decode_chunk(embeddings, prompts.take(slice(start, start + self.decoder_chunk)))
            logits.append(low_res)
            ious.append(iou)
        if not logits:
            return torch.zeros((0, 4, 256, 256)), torch.zeros((0, 4))
        return torch.from_numpy(np.concatenate(logits)), torch.from_numpy(np.concatenate(ious))

    def _decode_chunk(self, embeddings: np.ndarray, prompts: PromptBatch) -> tuple[np.ndarray, np.ndarray]:
        # Only the images this chunk uses go in, so a GPU provider copies those embeddings and not the whole batch.
        used, index = np.unique(prompts.image_index, return_inverse=True)
        if len(used) < len(embeddings):
            embeddings = embeddings[used]
        p = len(prompts)
        if prompts.mask_input is None:
            mask_input, has_mask = np.zeros((p, 1, 256, 256), np.float32), np.zeros(p, np.float32)
        else:
            mask_input, has_mask = prompts.mask_input.astype(np.float32, copy=False), np.ones(p, np.float32)
        feed = {
            "image_embeddings": embeddings,  # [N,C,64,64]
            "image_index": index.astype(np.int64).reshape(p),  # [P]
            "point_coords": prompts.coords.astype(np.float32, copy=False),  # [P,T,2]
            "point_labels": prompts.labels.astype(np.float32, copy=False),  # [P,T]
            "mask_input": mask_input,  # [P,1,256,256]
            "has_mask_input": has_mask,  # [P]
        }
        low_res, iou = self.decoder.run(None, feed)
        return low_res, iou
