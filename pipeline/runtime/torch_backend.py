"""PyTorch runtime: the model on CPU or CUDA, fp32 by default, bf16/fp16 autocast for the encoder and a bf16 mask
decoder on request.

Prompts without a mask input go through :class:`pipeline.models.fast_decoder.FastMaskDecoder` (same results, a
fraction of the work; ``fast_decoder=False`` runs SAM's decoder as written), or on a CPU, for calls with many prompts
per image (grids, proposals), :class:`pipeline.models.factored_decoder.FactoredMaskDecoder`; prompts with a mask
input go through :func:`pipeline.models.sam.decode_masks`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.models.factored_decoder import FactoredContext, FactoredMaskDecoder
from pipeline.models.fast_decoder import DecodeHints, FastMaskDecoder, ImageContext
from pipeline.models.fused_encoder import fuse_for_inference, onednn_fusion_available
from pipeline.models.sam import EfficientViTSam, decode_masks, embed_dense, embed_prompt_tokens
from pipeline.runtime.base import Precision
from pipeline.runtime.compiled_encoder import DEFAULT_BUCKETS, CompiledEncoder
from pipeline.segment.geometry import normalize_and_pad
from pipeline.segment.prompts import PromptBatch

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
# On CPU the encoder runs one image per forward: larger batches spill the activations out of cache
# (docs/performance.md, "Constants in the code").
CPU_ENCODER_BATCH = 1
# Prompts per fast-decoder group (see TorchSam.__init__).
CPU_DECODER_GROUP = 8
GPU_DECODER_GROUP = 64
# On a CPU, dense prompts (grids, proposals: DecodeHints.dense) take the factored decoder, in groups of
# FACTORED_DECODER_GROUP; box prompts the fast decoder, which is faster for a few prompts per image
# (docs/performance.md, "Constants in the code").
FACTORED_DECODER_GROUP = 32
# Prompts embedded per call of the prompt encoder. Matrix kernels round differently for different row counts, so
# every call has exactly this many (the last padded): a prompt's result does not depend on its call's size.
SPARSE_BLOCK = 64
# Prompts whose bf16 IoU lies this close to the caller's threshold are decoded again in fp32, so that whether a
# mask passes the threshold is fp32's decision (the margin and its cost: docs/performance.md).
BORDERLINE_IOU = 0.01


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else CPU; decided inside the worker that runs the model."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available")
    return torch.device(requested)


class TorchSam:
    """Runs an :class:`EfficientViTSam` with the :class:`pipeline.runtime.base.SamRuntime` interface.

    ``decoder_chunk`` bounds the prompts per decoder forward (memory grows ~10 MB per prompt in fp32).
    ``fast_decoder`` selects the reformulated decoder for prompts without mask input (see the module docstring).
    GPU options for the encoder: ``precision`` bf16 / fp16 autocast (LayerNorm2d, LiteMLA attention and the neck's
    upsampling stay fp32 inside the model), ``channels_last`` memory format, ``compile`` (``torch.compile``, the
    first call per input shape is slow). Canvases from the host are uploaded from pinned memory.
    ``fuse_encoder`` runs the encoder in inference form (:mod:`pipeline.models.fused_encoder`: BatchNorm folded into
    the convolutions, activations fused on CPUs; ~1e-6 relative from the model as written); the model passed in is
    left as it is, and the folded copy costs the memory of the encoder's convolution weights once more.
    ``decoder_precision`` bf16 runs the fast decoder's image side in bf16 (prompt tokens and heads fp32) and
    SAM's decoder, for prompts with a mask input, under bf16 autocast; outputs are fp32 either way. With a threshold
    in the hints (grids, proposals), prompts whose bf16 IoU for a read token is within ``BORDERLINE_IOU`` of it are
    decoded again in fp32, so that whether a mask passes the threshold is fp32's decision.
    """

    def __init__(
        self,
        model: EfficientViTSam,
        device: torch.device | str = "cpu",
        precision: Precision = "fp32",
        decoder_chunk: int = 64,
        fast_decoder: bool = True,
        channels_last: bool = False,
        compile: bool = False,
        decoder_precision: Precision = "fp32",
        fuse_encoder: bool = True,
        note: str | None = None,
        aot_compile: bool = False,
        compile_buckets: tuple[int, ...] = DEFAULT_BUCKETS,
        compile_cache: Path | None = None,
    ) -> None:
        if decoder_chunk < 1:
            raise ValueError(f"decoder_chunk must be >= 1, got {decoder_chunk}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.precision = precision
        self.decoder_precision = decoder_precision
        self.decoder_chunk = decoder_chunk
        self.encoder_input_size = model.encoder_input_size
        self.channels_last = channels_last
        self.note = note
        encoder = self.model.image_encoder
        if fuse_encoder:
            # Under torch.compile, inductor makes its own CPU fusions from the plain convolutions.
            onednn = self.device.type == "cpu" and not (compile or aot_compile) and onednn_fusion_available()
            encoder = fuse_for_inference(encoder, onednn=onednn)
        if channels_last:
            encoder.to(memory_format=torch.channels_last)
        self.image_encoder = torch.compile(encoder) if compile else encoder
        self.compiled: CompiledEncoder | None = None
        if aot_compile:
            if compile_cache is None:
                raise ValueError("aot_compile needs a cache folder for its packages")
            self.compiled = CompiledEncoder(
                encoder,
                device=self.device,
                precision=precision,
                channels_last=channels_last,
                input_size=self.encoder_input_size,
                cache_folder=compile_cache,
                buckets=compile_buckets,
            )
        with torch.inference_mode():
            self.image_pe = model.prompt_encoder.get_dense_pe()  # [1,256,64,64]
        self.fast = self.factored = self.exact = None
        if fast_decoder:
            no_mask = model.prompt_encoder.no_mask_embed.weight
            dtype = torch.float32 if decoder_precision == "fp32" else _AUTOCAST[decoder_precision]
            # On a GPU each group of prompts costs ~250 operator calls (mostly kernel launches), so groups are large
            # and span images; on a CPU small groups inside one image keep the working set in cache.
            gpu = self.device.type == "cuda"
            self.fast = FastMaskDecoder(
                model.mask_decoder,
                self.image_pe,
                no_mask,
                group=GPU_DECODER_GROUP if gpu else CPU_DECODER_GROUP,
                dtype=dtype,
                across_images=gpu,
            )
            if dtype != torch.float32:  # for the prompts near a threshold (see decode)
                self.exact = FastMaskDecoder(
                    model.mask_decoder, self.image_pe, no_mask, group=self.fast.group, across_images=gpu
                )
            # Many prompts per image: the per-image work of the factored decoder pays for itself (see the constants).
            self.factored = (
                None
                if gpu
                else FactoredMaskDecoder(
                    model.mask_decoder, self.image_pe, no_mask, group=FACTORED_DECODER_GROUP, dtype=dtype
                )
            )
        # The image contexts of the last embeddings, kept while they come back (grid mode decodes one encoder batch in
        # many calls). A factored context serves both decoders; the fp32 decoder has its own.
        self._context: tuple[torch.Tensor | None, ImageContext | None] = (None, None)
        self._exact_context: tuple[torch.Tensor | None, ImageContext | None] = (None, None)

    @torch.inference_mode()
    def encode(self, images: np.ndarray | torch.Tensor, input_hw: np.ndarray | torch.Tensor) -> torch.Tensor:
        images = torch.as_tensor(images)
        if self.device.type == "cuda" and images.device.type == "cpu":
            # uint8 canvases (4× smaller than floats) go up asynchronously from page-locked memory.
            images = images.pin_memory()
        images = images.to(self.device, non_blocking=True)
        x = normalize_and_pad(images, torch.as_tensor(input_hw), self.encoder_input_size)
        if self.compiled is not None:  # its own precision, memory format and batch pieces
            return self.compiled(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.device.type == "cpu" and len(x) > CPU_ENCODER_BATCH:
            return torch.cat([self._encode(x[i : i + CPU_ENCODER_BATCH]) for i in range(0, len(x), CPU_ENCODER_BATCH)])
        return self._encode(x)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.precision == "fp32":
            return self.image_encoder(x).contiguous()
        with torch.autocast(self.device.type, dtype=_AUTOCAST[self.precision]):
            return self.image_encoder(x).float().contiguous()

    @torch.inference_mode()
    def decode(
        self, embeddings: torch.Tensor, prompts: PromptBatch, hints: DecodeHints | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits [P,4,256,256] and IoU [P,4]; ``hints`` may leave unread logits zero (fast decoder)."""
        logits, ious = [], []
        for start in range(0, len(prompts), self.decoder_chunk):
            rows = slice(start, start + self.decoder_chunk)
            chunk_hints = None if hints is None else hints.take(rows)
            low_res, iou = self._decode_chunk(embeddings, prompts.take(rows), chunk_hints)
            logits.append(low_res.float())
            ious.append(iou.float())
        if not logits:
            return torch.zeros((0, 4, 256, 256), device=self.device), torch.zeros((0, 4), device=self.device)
        if len(logits) == 1:  # the usual case (one call per chunk): no copy of [P,4,256,256]
            logits, ious = logits[0], ious[0]
        else:
            logits, ious = torch.cat(logits), torch.cat(ious)
        self._redecode_borderline(embeddings, prompts, hints, logits, ious)
        return logits, ious

    def _redecode_borderline(
        self,
        embeddings: torch.Tensor,
        prompts: PromptBatch,
        hints: DecodeHints | None,
        logits: torch.Tensor,
        ious: torch.Tensor,
    ) -> None:
        """Replaces, in place, the rows of prompts whose IoU for a read token is within ``BORDERLINE_IOU`` of
        ``hints.min_iou`` by the fp32 decoder's (bf16 decoder only)."""
        if self.exact is None or hints is None or hints.min_iou is None or prompts.mask_input is not None:
            return
        near = (ious[:, list(hints.mask_tokens)] - hints.min_iou).abs().le(BORDERLINE_IOU).any(dim=1)
        rows = near.nonzero().flatten().cpu().numpy()
        if len(rows) == 0:
            return
        borderline = prompts.take(rows)
        cached_for, context = self._exact_context
        if cached_for is not embeddings or context is None:
            context = self.exact.image_context(embeddings)
            self._exact_context = (embeddings, context)
        low_res, iou = self.exact(context, borderline.image_index, self._sparse(borderline), hints.take(rows))
        index = torch.as_tensor(rows, device=logits.device)
        logits[index] = low_res.float()
        ious[index] = iou.float()

    def _sparse(self, prompts: PromptBatch) -> torch.Tensor:
        """The prompts' sparse token embeddings [P,T,256]; on CPU computed in blocks of ``SPARSE_BLOCK`` prompts (the
        last padded) so that a prompt's tokens do not depend on how many prompts share the call."""
        encoder = self.model.prompt_encoder
        coords = torch.as_tensor(prompts.coords, device=self.device)
        labels = torch.as_tensor(prompts.labels, device=self.device)
        p = len(coords)
        if self.device.type != "cpu" or p == 0:  # see FastMaskDecoder.__call__: only CPUs are padded
            return embed_prompt_tokens(encoder, coords, labels)
        rows = torch.arange(-(-p // SPARSE_BLOCK) * SPARSE_BLOCK).clamp(max=p - 1)
        coords, labels = coords[rows], labels[rows]
        blocks = [
            embed_prompt_tokens(encoder, coords[i : i + SPARSE_BLOCK], labels[i : i + SPARSE_BLOCK])
            for i in range(0, len(rows), SPARSE_BLOCK)
        ]
        return torch.cat(blocks)[:p]

    def _decode_chunk(
        self, embeddings: torch.Tensor, prompts: PromptBatch, hints: DecodeHints | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pe = self.model.prompt_encoder
        sparse = self._sparse(prompts)
        if self.fast is not None and prompts.mask_input is None:
            factored = self.factored is not None and hints is not None and hints.dense
            decoder = self.factored if factored else self.fast
            return decoder(self._image_context(embeddings, factored), prompts.image_index, sparse, hints)
        index = torch.as_tensor(prompts.image_index, device=self.device)
        mask_input = None if prompts.mask_input is None else torch.as_tensor(prompts.mask_input, device=self.device)
        dense = embed_dense(pe, mask_input, len(prompts))  # [P,256,64,64]
        if self.decoder_precision == "fp32":
            return decode_masks(self.model.mask_decoder, embeddings[index], self.image_pe, sparse, dense)
        with torch.autocast(self.device.type, dtype=_AUTOCAST[self.decoder_precision]):
            return decode_masks(self.model.mask_decoder, embeddings[index], self.image_pe, sparse, dense)

    def _image_context(self, embeddings: torch.Tensor, factored: bool) -> ImageContext:
        cached_for, context = self._context
        if cached_for is not embeddings or context is None or (factored and not isinstance(context, FactoredContext)):
            context = (self.factored if factored else self.fast).image_context(embeddings)
            self._context = (embeddings, context)
        return context
