"""``model.precision: auto`` / ``model.decoder_precision: auto``: bf16 where the worker's device runs it and these
weights pass the accuracy gate there, else fp32.

Resolved inside the worker (the driver may have another device): the torch backend tries the candidates in order,
bf16 encoder and decoder, then one of them in bf16, and keeps the first whose masks pass
:func:`pipeline.runtime.accuracy.accuracy_gate` against fp32 on the same device. A device where the bf16 probe
fails (:mod:`pipeline.runtime.capability`: an AVX2-only CPU, a GPU before Ampere) runs fp32 without trying. An
explicitly set precision is kept as it is (the driver gates an explicit bf16 before the run).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from pipeline.models import EfficientViTSam
from pipeline.runtime.capability import bf16_runs
from pipeline.runtime.torch_backend import TorchSam

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resolved:
    precision: str
    decoder_precision: str
    gate_mask_iou: float | None
    """Mean mask IoU against fp32 of the kept candidate (None: fp32, nothing compared)."""
    gate_seconds: float = 0.0
    """Time spent on the gate (all candidates tried)."""

    @property
    def pair(self) -> tuple[str, str]:
        return self.precision, self.decoder_precision


def candidates(precision: str, decoder_precision: str) -> list[tuple[str, str]]:
    """(encoder, decoder) precisions to try in order for the configured pair; the last one is always taken."""
    encoders = ["bf16", "fp32"] if precision == "auto" else [precision]
    decoders = ["bf16", "fp32"] if decoder_precision == "auto" else [decoder_precision]
    pairs = [(e, d) for e in encoders for d in decoders]
    # Most bf16 parts first: both in bf16, then one of them, then none.
    return sorted(pairs, key=lambda pair: -sum(p == "bf16" for p in pair))


def resolve_precision(
    sam: EfficientViTSam, device: torch.device, precision: str, decoder_precision: str, channels_last: bool
) -> Resolved:
    """Concrete precisions for ``sam`` on ``device`` (see the module docstring)."""
    from pipeline.runtime.accuracy import GATE_MASK_IOU, gate_images, gate_masks, mask_ious

    if precision != "auto" and decoder_precision != "auto":
        return Resolved(precision, decoder_precision, None)
    if not bf16_runs(device):
        pairs = [pair for pair in candidates(precision, decoder_precision) if "bf16" not in pair]
        chosen = pairs[0] if pairs else candidates(precision, decoder_precision)[-1]
        return Resolved(*chosen, None)
    started = time.perf_counter()
    images = gate_images()
    reference = gate_masks(TorchSam(sam, device=device, channels_last=channels_last), images)[0]
    pairs = candidates(precision, decoder_precision)
    for encoder, decoder in pairs[:-1]:
        runtime = TorchSam(
            sam, device=device, precision=encoder, decoder_precision=decoder, channels_last=channels_last
        )
        iou = float(mask_ious(gate_masks(runtime, images)[0], reference).mean())
        if iou >= GATE_MASK_IOU:
            return Resolved(encoder, decoder, round(iou, 4), time.perf_counter() - started)
        log.info("precision auto: encoder %s, decoder %s fail the accuracy gate (%.3f)", encoder, decoder, iou)
    return Resolved(*pairs[-1], None, time.perf_counter() - started)
