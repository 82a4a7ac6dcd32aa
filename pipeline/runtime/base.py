"""The runtime protocol: how a model runs (PyTorch, ONNX Runtime, TensorRT), with one set of method names.

Backends take preprocessed uint8 canvases (see :func:`pipeline.segment.geometry.normalize_and_pad`) and prompt batches
(:class:`pipeline.segment.prompts.PromptBatch`), and return torch tensors so that postprocessing is shared. The
embedding returned by ``encode`` is backend-specific and only passed back to the same backend's ``decode``.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import numpy as np
import torch

from pipeline.models.fast_decoder import DecodeHints
from pipeline.segment.prompts import PromptBatch

Precision = Literal["fp32", "bf16", "fp16"]
BackendName = Literal["torch", "onnx", "tensorrt"]


class SamRuntime(Protocol):
    encoder_input_size: int
    """Side S of the square encoder input."""
    device: torch.device
    """Where ``decode`` returns its tensors."""
    note: str | None
    """What this worker chose for the run's log (for example what ``precision: auto`` resolved to), or None."""

    def encode(self, images: np.ndarray, input_hw: np.ndarray) -> Any:
        """[B,S,S,3] uint8 canvases (resized image top-left) and [B,2] resized (h, w) → embedding [B,256,64,64]."""
        ...

    def decode(
        self, embeddings: Any, prompts: PromptBatch, hints: DecodeHints | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts of one layout → low-res logits [P,4,256,256] and predicted IoU [P,4], all four mask tokens.

        ``hints`` name logits the caller will not read; a backend may return zeros there or ignore them.
        """
        ...
