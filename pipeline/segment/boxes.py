"""Masks for boxes a user already has: one decoder prompt per box, prompts of all images in shared decoder calls.

The mask per box follows the official box protocol: ``multimask_output=True`` and the mask with the highest
predicted IoU (or the single-mask token when ``multimask`` is off), upsampled to the original size, ``logits > 0``.
The stability score is computed on those full-size logits. Boxes failing the thresholds are dropped.

On a GPU the work is queued without the host waiting for it: masks are upsampled for every box and stay on the
device, their stability scores and predicted IoUs go to page-locked host memory, and
:func:`segment_boxes_in_steps` queues the next images' encoder and decoder before finishing the previous ones. To
finish, the host applies the thresholds, and the kept masks are RL-encoded on the device on a side stream
(:mod:`pipeline.segment.rle`), so that only run lengths, areas and boxes are copied and the host waits for those
alone, not for the next images' work. On a CPU the masks are RL-encoded by pycocotools.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.config.sections import BoxesConfig
from pipeline.models.fast_decoder import DecodeHints
from pipeline.runtime.base import SamRuntime
from pipeline.segment.geometry import PROMPT_FRAME, boxes_to_prompt_frame
from pipeline.segment.grid_filters import read_low_res_hw
from pipeline.segment.masks import (
    ImageMasks,
    best_of,
    encode_rle_transposed,
    rle_boxes_and_areas,
    stability_score,
    upscale_logits,
)
from pipeline.segment.predictor import EncodedImages, predict
from pipeline.segment.prompts import PromptBatch, make_prompts
from pipeline.segment.rle import encode_on_device, encodes_on_device, rle_stream
from pipeline.timing import StageTimer

# Masks upsampled at once: bounds memory for very large originals. A GPU takes more per call, since each call costs
# kernel launches, within a pixel budget (~0.5 GB per float32 [k,w,h] tensor).
UPSCALE_CHUNK = {"cpu": 8, "cuda": 64}
GPU_UPSCALE_PIXELS = 1 << 27
# Images per step of segment_boxes_in_steps on a GPU (a CPU takes all at once: it has nothing to overlap).
GPU_STEP_IMAGES = 8


def segment_boxes(
    runtime: SamRuntime,
    encoded: EncodedImages,
    boxes_xyxy: Sequence[np.ndarray],
    cfg: BoxesConfig,
    timer: StageTimer | None = None,
) -> list[ImageMasks]:
    """``boxes_xyxy[i]`` [K_i,4] in original pixels of image i → one :class:`ImageMasks` per image.

    ``prompt_index`` of each kept mask is the row of its box in ``boxes_xyxy[i]``. ``timer`` receives the seconds
    of the prompts, decode_masks and rle (upsampling, stability, RLE) stages.
    """
    timer = timer or StageTimer.off()
    pending = start_segment_boxes(runtime, encoded, boxes_xyxy, cfg, timer)
    with timer("rle"):
        return pending.result()


def segment_boxes_in_steps(
    runtime: SamRuntime,
    steps: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, Sequence[np.ndarray]]],
    cfg: BoxesConfig,
    timer: StageTimer | None = None,
) -> list[ImageMasks]:
    """Encodes and labels images step by step: ``steps`` yields (canvases, input_hw, original_hw, boxes_xyxy) of
    some images, as :meth:`SamRuntime.encode` and :func:`segment_boxes` take them; the results of all steps in
    order. Step k+1 is drawn, encoded and decoded (queued, on a GPU) before step k's masks are RL-encoded."""
    timer = timer or StageTimer.off()
    results: list[ImageMasks] = []
    pending: PendingBoxMasks | None = None
    for canvases, input_hw, original_hw, boxes_xyxy in steps:
        with timer("encode"):
            encoded = EncodedImages(runtime.encode(canvases, input_hw), original_hw)
        queued = start_segment_boxes(runtime, encoded, boxes_xyxy, cfg, timer)
        if pending is not None:
            with timer("rle"):
                results += pending.result()
        pending = queued
    if pending is not None:
        with timer("rle"):
            results += pending.result()
    return results


def step_slices(count: int, device: torch.device) -> list[slice]:
    """How to split ``count`` images into steps for :func:`segment_boxes_in_steps`: ``GPU_STEP_IMAGES`` per step on
    a GPU, one step elsewhere (a CPU has nothing to overlap)."""
    step = GPU_STEP_IMAGES if device.type == "cuda" else max(count, 1)
    return [slice(start, start + step) for start in range(0, count, step)]


def start_segment_boxes(
    runtime: SamRuntime,
    encoded: EncodedImages,
    boxes_xyxy: Sequence[np.ndarray],
    cfg: BoxesConfig,
    timer: StageTimer | None = None,
) -> PendingBoxMasks:
    """:func:`segment_boxes` up to the host's part: decoder, upsampling and stability run (or are queued, on a GPU)
    and the masks are on their way to host memory; :meth:`PendingBoxMasks.result` finishes."""
    timer = timer or StageTimer.off()
    if len(boxes_xyxy) != len(encoded.original_hw):
        raise ValueError(f"got boxes for {len(boxes_xyxy)} images but {len(encoded.original_hw)} encoded images")
    counts = [len(b) for b in boxes_xyxy]
    image_index = np.repeat(np.arange(len(counts)), counts)
    if len(image_index) == 0:
        return PendingBoxMasks.nothing(counts, cfg)
    with timer("prompts"):
        prompts, hints = _prompts(encoded, boxes_xyxy, image_index, cfg)
    with timer("decode_masks"):
        pred = predict(runtime, encoded, prompts, multimask_output=cfg.multimask, hints=hints)
        logits, iou = best_of(pred.low_res_logits, pred.iou_predictions)  # [P,256,256], [P]
    with timer("rle"):
        on_host = logits.device.type == "cpu"
        # On the host the IoU threshold is known before upsampling; a GPU upsamples every mask rather than wait.
        candidates = np.arange(len(iou))
        if on_host and cfg.pred_iou_thresh > 0:
            candidates = np.flatnonzero(iou.float().numpy() > cfg.pred_iou_thresh)
        chunks = _upsample(logits, candidates, encoded.original_hw[image_index], cfg.stability_score_offset)
        predicted = _to_host(iou.float())
        ready = None if on_host else torch.cuda.Event()
        if ready is not None:
            ready.record()
    return PendingBoxMasks(chunks, predicted, ready, counts, cfg)


@dataclass(frozen=True)
class _Chunk:
    """Masks of some prompts of one original size, in host memory (or being copied there)."""

    rows: np.ndarray
    """[k] prompts."""
    masks_t: torch.Tensor
    """[k,w,h] bool, transposed: the column-major layout COCO RLE reads, so it is encoded without a copy. In host
    memory, or on the device where masks are RL-encoded on the device."""
    stability: torch.Tensor
    """[k] float32, in host memory."""


@dataclass(frozen=True)
class PendingBoxMasks:
    """Box masks of some images, their device work queued; :meth:`result` waits for it and RL-encodes."""

    chunks: list[_Chunk]
    predicted_iou: torch.Tensor
    """[P] float32 in host memory, one per box of all images."""
    ready: torch.cuda.Event | None
    """Recorded after the copies to the host (None when computed on the host)."""
    counts: list[int]
    """Boxes per image."""
    cfg: BoxesConfig

    @staticmethod
    def nothing(counts: list[int], cfg: BoxesConfig) -> PendingBoxMasks:
        return PendingBoxMasks([], torch.zeros(0), None, counts, cfg)

    def result(self) -> list[ImageMasks]:
        """One :class:`ImageMasks` per image: the masks passing the thresholds, as COCO RLE."""
        if self.ready is not None:
            self.ready.synchronize()
        kept = _encode(self.chunks, self.predicted_iou.numpy(), self.cfg)
        starts = np.cumsum(self.counts, dtype=np.int64) - self.counts
        return [kept.of_prompts(int(start), count) for start, count in zip(starts, self.counts, strict=True)]


def _prompts(
    encoded: EncodedImages, boxes_xyxy: Sequence[np.ndarray], image_index: np.ndarray, cfg: BoxesConfig
) -> tuple[PromptBatch, DecodeHints]:
    """One box prompt per box (1024 frame) and the hints: which tokens, IoU and low-res window are read."""
    frame_boxes = np.concatenate(
        [
            boxes_to_prompt_frame(np.asarray(b, np.float32).reshape(-1, 4), tuple(encoded.original_hw[i]))
            for i, b in enumerate(boxes_xyxy)
        ]
    )
    # Skipping masks under the IoU threshold would make a GPU's host wait for the IoU; the host filters them later.
    on_gpu = isinstance(encoded.embeddings, torch.Tensor) and encoded.embeddings.device.type == "cuda"
    hints = DecodeHints(
        mask_tokens=(1, 2, 3) if cfg.multimask else (0,),
        min_iou=cfg.pred_iou_thresh if cfg.pred_iou_thresh > 0 and not on_gpu else None,
        low_res_hw=np.array([read_low_res_hw(tuple(encoded.original_hw[i])) for i in image_index], np.int64),
    )
    return make_prompts(image_index, boxes=frame_boxes), hints


@dataclass(frozen=True)
class _KeptMasks:
    """The masks kept of P prompts, K of them, in prompt order."""

    prompt: np.ndarray
    """[K] int64, the prompt of each mask (ascending)."""
    rles: list[dict]
    boxes_xyxy: np.ndarray
    areas: np.ndarray
    predicted_iou: np.ndarray
    stability_score: np.ndarray

    def of_prompts(self, start: int, count: int) -> ImageMasks:
        """The masks of prompts ``start .. start + count - 1`` (one image's), ``prompt_index`` counted from start."""
        lo, hi = np.searchsorted(self.prompt, [start, start + count])
        if lo == hi:
            return ImageMasks.empty()
        predicted = self.predicted_iou[lo:hi]
        return ImageMasks(
            rles=self.rles[lo:hi],
            boxes_xyxy=self.boxes_xyxy[lo:hi],
            areas=self.areas[lo:hi],
            predicted_iou=predicted,
            stability_score=self.stability_score[lo:hi],
            scores=predicted,
            prompt_index=self.prompt[lo:hi] - start,
        )


def _upsample(
    low_res: torch.Tensor, rows: np.ndarray, original_hw: np.ndarray, stability_offset: float
) -> list[_Chunk]:
    """Masks of prompts ``rows`` of low-res logits [P,256,256] at each prompt's original (h, w) [P,2], with their
    stability scores. Prompts of images of one size are upsampled together, across images."""
    chunks = []
    for h, w in np.unique(original_hw[rows], axis=0).tolist():
        same_size = rows[(original_hw[rows] == (h, w)).all(axis=1)]
        chunk = upscale_chunk(low_res.device, (h, w))
        for start in range(0, len(same_size), chunk):
            part = same_size[start : start + chunk]
            low_res_t = low_res[torch.as_tensor(part, device=low_res.device)].transpose(-1, -2)
            full_t = upscale_logits(low_res_t, (w, h))  # [k,w,h]
            score = stability_score(full_t, stability_offset)
            masks_t = full_t > 0
            if not encodes_on_device(masks_t.device):
                masks_t = _to_host(masks_t)
            chunks.append(_Chunk(part, masks_t, _to_host(score.float())))
    return chunks


def upscale_chunk(device: torch.device, original_hw: tuple[int, int]) -> int:
    """Masks of size ``original_hw`` upsampled per call on ``device`` (see ``UPSCALE_CHUNK``)."""
    chunk = UPSCALE_CHUNK.get(device.type, UPSCALE_CHUNK["cpu"])
    if device.type == "cuda":  # the 1024-frame intermediate and the original-size logits, per mask
        chunk = min(chunk, GPU_UPSCALE_PIXELS // (PROMPT_FRAME**2 + original_hw[0] * original_hw[1]))
    return max(chunk, 1)


def _to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A host copy of a device tensor, page-locked and asynchronous (complete once the stream reaches it)."""
    if tensor.device.type == "cpu":
        return tensor
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    return host.copy_(tensor, non_blocking=True)


def _encode(chunks: list[_Chunk], predicted: np.ndarray, cfg: BoxesConfig) -> _KeptMasks:
    """The masks passing ``cfg``'s thresholds, RL-encoded, in prompt order."""
    prompts, rles, stability, boxes, areas = [], [], [], [np.zeros((0, 4), np.float32)], [np.zeros(0, np.int64)]
    for chunk in chunks:
        score = chunk.stability.numpy()
        ok = score >= cfg.stability_score_thresh
        if cfg.pred_iou_thresh > 0:
            ok &= predicted[chunk.rows] > cfg.pred_iou_thresh
        kept = None if ok.all() else np.flatnonzero(ok)
        device = chunk.masks_t.device
        if encodes_on_device(device):
            runs = encode_on_device(chunk.masks_t, kept, rle_stream(device))
            chunk_rles, chunk_boxes, chunk_areas = runs.rles(), runs.boxes_xyxy, runs.areas
        else:
            masks_t = chunk.masks_t.numpy()
            chunk_rles = encode_rle_transposed(masks_t if kept is None else masks_t[kept])
            chunk_boxes, chunk_areas = rle_boxes_and_areas(chunk_rles)
        rles.extend(chunk_rles)
        boxes.append(chunk_boxes)
        areas.append(chunk_areas)
        prompts.append(chunk.rows[ok])
        stability.append(score[ok])
    prompt = np.concatenate(prompts) if prompts else np.zeros(0, np.int64)
    order = np.argsort(prompt, kind="stable")
    boxes, areas = np.concatenate(boxes), np.concatenate(areas)
    return _KeptMasks(
        prompt=prompt[order].astype(np.int64),
        rles=[rles[i] for i in order],
        boxes_xyxy=boxes[order].astype(np.float32),
        areas=areas[order],
        predicted_iou=predicted[prompt[order]].astype(np.float32),
        stability_score=(np.concatenate(stability) if stability else np.zeros(0))[order].astype(np.float32),
    )
