"""Segment operator: encoder → prompts → mask decoder → filter on low-res logits → upsample kept masks → RLE.

One actor per GPU (or a CPU actor); the 256×64×64 embedding never leaves it.

Reads:  image_id · image_rgb (raw HWC uint8, resized) or image_jpeg (decoded here, on the actor's device:
        decode.device cuda, see operators.device_decode) · input_h · input_w · image_height · image_width ·
        error_* · prompt_boxes_xyxy (boxes/yolo modes: boxes mode uses best-of-3 or the single-mask token as
        configured, yolo always the single-mask token, as MobileSAMv2)
        image_original_rgb (grid crop layers only)
Writes: mask_rle_counts · mask_bbox_xyxy · mask_area · mask_predicted_iou · mask_stability_score · mask_score ·
        mask_prompt_index · mask_prompt_points (lists, one entry per kept mask) · masks_dropped (int64: masks past
        ``max_masks`` per image, dropped lowest score first); seconds_<stage> for its stages (encode, prompts,
        decode_masks, filter, rle; the batch's time split over its rows); drops the image columns.
Rows that already carry an error pass through with empty lists; an image that fails here becomes an error row
with stage "segment" and the other images of the batch are still labeled.
Modes: grid (point grid), boxes / yolo / text (box prompts; text decodes its boxes as boxes mode does), autoppn
(the proposal head on the same embedding, its masks filtered like grid's). Any mode's kept masks can be named by the
zero-shot classifier (:mod:`pipeline.classify`) here, on the image this actor already holds. Resources: num_gpus from
the graph; ``num_threads`` compute threads (default: every core).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from operators.device_decode import decode_jpegs_on_device
from operators.rows import run_rows
from pipeline import schema as col
from pipeline.config.sections import (
    AutoPPNConfig,
    BoxesConfig,
    ClassifyConfig,
    DecodeConfig,
    GridConfig,
    LabelConfig,
    ModelConfig,
    PromptMode,
    SegmentConfig,
    StorageConfig,
    YoloConfig,
)
from pipeline.runtime import allocator
from pipeline.runtime.load import load_runtime
from pipeline.segment.boxes import segment_boxes_in_steps, step_slices
from pipeline.segment.grid import GridMasks, generate_grid_masks
from pipeline.segment.masks import ImageMasks
from pipeline.timing import StageTimer

log = logging.getLogger(__name__)
OUTPUT_LISTS = (
    col.MASK_RLE_COUNTS,
    col.MASK_BBOX_XYXY,
    col.MASK_AREA,
    col.MASK_PREDICTED_IOU,
    col.MASK_STABILITY,
    col.MASK_SCORE,
    col.MASK_PROMPT_INDEX,
    col.MASK_PROMPT_POINTS,
)


@dataclass(frozen=True)
class SegmentPrompts:
    """The prompt settings the segment actor reads: the mode and its sections."""

    mode: PromptMode
    grid: GridConfig = field(default_factory=GridConfig)
    boxes: BoxesConfig = field(default_factory=BoxesConfig)
    yolo: YoloConfig = field(default_factory=YoloConfig)
    """yolo mode: the detector's boxes are decoded with the single-mask token and these thresholds."""
    autoppn: AutoPPNConfig = field(default_factory=AutoPPNConfig)

    @classmethod
    def of(cls, cfg: LabelConfig) -> SegmentPrompts:
        return cls(cfg.prompts.mode, cfg.grid, cfg.boxes, cfg.yolo, cfg.autoppn)


class Segment:
    def __init__(
        self,
        model: ModelConfig,
        prompts: SegmentPrompts,
        segment: SegmentConfig,
        storage: StorageConfig,
        num_threads: int | None = None,
        decode: DecodeConfig | None = None,
        classify: ClassifyConfig | None = None,
    ) -> None:
        """Loads the model (and the AutoPPN head, and the classifier) in this actor; ``num_threads`` default: every
        core. ``decode``: limits for JPEGs it decodes itself (``image_jpeg``, ``decode.device: cuda``); ``classify``:
        names the kept masks when it has classes."""
        self.decode = decode or DecodeConfig()
        # Ray sets OMP_NUM_THREADS to the actor's CPU reservation; a CPU actor should use every core instead.
        torch.set_num_threads(num_threads or os.cpu_count() or 1)
        self.mode, self.grid, self.autoppn = prompts.mode, prompts.grid, prompts.autoppn
        self.boxes = _box_settings(prompts.mode, prompts.boxes, prompts.yolo)
        self.decoder_chunk, self.max_masks = segment.decoder_chunk, segment.max_masks_per_image
        self.runtime = load_runtime(model, storage, segment.decoder_chunk)
        if self.runtime.note:
            # Ray forwards a worker's stdout to the driver (its logging stays in the worker's log files).
            print(f"samlabel: segment {self.runtime.note}", flush=True)
        if segment.keep_freed_memory and self.runtime.device.type == "cpu":
            allocator.keep_freed_memory()
        self.head = None
        if self.mode == "autoppn":
            from pipeline.prompts.autoppn.checkpoint import load_head

            if not self.autoppn.weights:
                raise ValueError("--prompts autoppn needs autoppn.weights")
            self.head, _ = load_head(
                self.autoppn.weights,
                storage,
                cache_dir=model.cache_dir,
                expected_sha256=self.autoppn.weights_sha256,
                device=self.runtime.device,
            )

        self.classifier = None
        if classify is not None and classify.enabled:
            from pipeline.classify.classifier import ZeroShotClassifier, read_classify_classes

            classes = read_classify_classes(classify, storage)
            self.classifier = ZeroShotClassifier(classify, classes, storage, self.runtime.device, model.cache_dir)
            if self.classifier.note:
                print(f"samlabel: segment {self.classifier.note}", flush=True)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch[col.IMAGE_ID])
        errors = col.error_columns(batch, n)
        timer = StageTimer()
        decode_seconds = np.zeros(n)
        decoded: dict[int, torch.Tensor] = {}
        if col.IMAGE_JPEG in batch:  # decode.device: cuda
            start = time.perf_counter()
            candidates = [i for i in range(n) if not col.has_error(errors, i)]
            decoded = decode_jpegs_on_device(batch, candidates, errors, self.runtime.device, self.decode.max_pixels)
            decode_seconds[candidates] = (time.perf_counter() - start) / max(len(candidates), 1)
        ok = [i for i in range(n) if not col.has_error(errors, i)]
        done = run_rows("segment", ok, lambda rows: self._segment(batch, decoded, rows, timer), errors)
        results: list[ImageMasks | None] = [done.get(i) for i in range(n)]
        dropped = np.zeros(n, np.int64)
        if self.max_masks is not None:
            for i, masks in enumerate(results):
                if masks is not None:
                    results[i], dropped[i] = masks.top(self.max_masks)
        if self.classifier is not None:
            named = [i for i, masks in enumerate(results) if masks is not None]
            with timer("classify"):
                done = run_rows("segment", named, lambda rows: self._name(batch, decoded, rows, results), errors)
            results = [done.get(i) for i in range(n)]
        out = {k: v for k, v in batch.items() if k not in (col.IMAGE_RGB, col.IMAGE_ORIGINAL_RGB, col.IMAGE_JPEG)}
        out.update(errors)
        if col.IMAGE_JPEG in batch:
            decode = col.seconds_column("decode")
            out[decode] = np.asarray(out.get(decode, np.zeros(n)), np.float64) + decode_seconds
        out.update(mask_columns(results, named=self.classifier is not None))
        out[col.MASKS_DROPPED] = dropped
        if self.classifier is not None:
            out[col.MASKS_UNNAMED] = np.array([m.unnamed if m else 0 for m in results], np.int64)
        for stage, seconds in timer.seconds.items():
            out[col.seconds_column(stage)] = np.full(n, seconds / n)
        return out

    def _segment(
        self, batch: dict[str, np.ndarray], decoded: dict[int, torch.Tensor], rows: list[int], timer: StageTimer
    ) -> list[ImageMasks]:
        """Masks of ``rows``; ``decoded`` holds the images of rows decoded on the device (decode.device: cuda)."""
        if not rows:
            return []
        if self.mode in ("boxes", "yolo", "text"):
            # In steps: on a GPU the next images are encoded while the host RL-encodes the previous ones.
            steps = (self._box_step(batch, decoded, rows[s]) for s in step_slices(len(rows), self.runtime.device))
            return segment_boxes_in_steps(self.runtime, steps, self.boxes, timer)
        canvases, input_hw, original_hw = _canvases(batch, rows, self.runtime.encoder_input_size, decoded)
        if self.mode == "grid":
            originals = _originals(batch, rows, original_hw) if self.grid.crop_n_layers > 0 else None
            grid = generate_grid_masks(self.runtime, canvases, input_hw, original_hw, self.grid, originals, timer)
            return [_from_grid(g) for g in grid]
        with timer("encode"):
            embeddings = self.runtime.encode(canvases, input_hw)
        if self.mode == "autoppn":
            from pipeline.prompts.autoppn.segment import segment_autoppn

            masks = segment_autoppn(
                self.runtime, self.head, embeddings, original_hw, self.autoppn, self.decoder_chunk, timer
            )
            return [_from_grid(g) for g in masks]
        raise ValueError(f"unknown prompt mode {self.mode!r}")

    def _name(
        self,
        batch: dict[str, np.ndarray],
        decoded: dict[int, torch.Tensor],
        rows: list[int],
        results: list[ImageMasks | None],
    ) -> list[ImageMasks]:
        """The masks of ``rows`` named by the classifier, on the images this call holds."""
        from pipeline.classify.naming import ImageView, name_masks

        views = []
        for i in rows:
            if i in decoded:
                pixels = decoded[i]
            else:
                h, w = int(batch[col.INPUT_H][i]), int(batch[col.INPUT_W][i])
                array = np.frombuffer(batch[col.IMAGE_RGB][i], np.uint8).reshape(h, w, 3)
                pixels = torch.from_numpy(array.copy()).to(self.runtime.device)
            views.append(ImageView(pixels, (int(batch[col.IMAGE_HEIGHT][i]), int(batch[col.IMAGE_WIDTH][i]))))
        return name_masks(self.classifier, views, [results[i] for i in rows])

    def _box_step(self, batch: dict[str, np.ndarray], decoded: dict[int, torch.Tensor], rows: list[int]) -> tuple:
        """(canvases, input_hw, original_hw, boxes) of ``rows``, as segment_boxes_in_steps takes them."""
        canvases, input_hw, original_hw = _canvases(batch, rows, self.runtime.encoder_input_size, decoded)
        boxes = [np.asarray(batch[col.PROMPT_BOXES_XYXY][i], np.float32).reshape(-1, 4) for i in rows]
        return canvases, input_hw, original_hw, boxes


def _box_settings(mode: PromptMode, boxes: BoxesConfig, yolo: YoloConfig) -> BoxesConfig:
    """Box prompts of the detector are decoded with the single-mask token and its own thresholds."""
    if mode != "yolo":
        return boxes
    return BoxesConfig(
        multimask=False,
        pred_iou_thresh=yolo.pred_iou_thresh,
        stability_score_thresh=yolo.stability_score_thresh,
        stability_score_offset=boxes.stability_score_offset,
    )


def _canvases(
    batch: dict[str, np.ndarray], rows: list[int], size: int, device_images: dict[int, torch.Tensor]
) -> tuple[np.ndarray | torch.Tensor, np.ndarray, np.ndarray]:
    """Canvases [B,S,S,3] uint8 of ``rows`` (each resized image top-left), input and original (h, w) [B,2]. With
    images decoded on the device among the rows, the canvases are built there."""
    on_device = [device_images[i] for i in rows if i in device_images]
    if on_device:
        canvases = torch.zeros((len(rows), size, size, 3), dtype=torch.uint8, device=on_device[0].device)
    else:
        canvases = np.zeros((len(rows), size, size, 3), np.uint8)
    input_hw = np.zeros((len(rows), 2), np.int64)
    original_hw = np.zeros((len(rows), 2), np.int64)
    for k, i in enumerate(rows):
        h, w = int(batch[col.INPUT_H][i]), int(batch[col.INPUT_W][i])
        if max(h, w) > size:
            raise ValueError(
                f"image {batch[col.IMAGE_ID][i]!r} was decoded at {h}x{w}, larger than the encoder input {size}"
            )
        if i in device_images:
            canvases[k, :h, :w] = device_images[i]
        else:
            pixels = np.frombuffer(batch[col.IMAGE_RGB][i], np.uint8).reshape(h, w, 3)
            canvases[k, :h, :w] = torch.from_numpy(pixels.copy()) if on_device else pixels
        input_hw[k] = (h, w)
        original_hw[k] = (int(batch[col.IMAGE_HEIGHT][i]), int(batch[col.IMAGE_WIDTH][i]))
    return canvases, input_hw, original_hw


def _originals(batch: dict[str, np.ndarray], rows: list[int], original_hw: np.ndarray) -> list[np.ndarray]:
    if col.IMAGE_ORIGINAL_RGB not in batch:
        raise ValueError(f"grid crop layers need the originals in column {col.IMAGE_ORIGINAL_RGB!r}")
    return [
        np.frombuffer(batch[col.IMAGE_ORIGINAL_RGB][i], np.uint8).reshape(int(h), int(w), 3)
        for i, (h, w) in zip(rows, original_hw, strict=True)
    ]


def _from_grid(grid: GridMasks) -> ImageMasks:
    return ImageMasks(
        rles=list(grid.rles),
        boxes_xyxy=grid.boxes_xyxy,
        areas=grid.areas,
        predicted_iou=grid.predicted_iou,
        stability_score=grid.stability_score,
        scores=grid.predicted_iou,
        prompt_index=np.arange(len(grid.rles), dtype=np.int64),
        prompt_points=np.asarray(grid.point_coords, np.float32).reshape(-1, 1, 2),
    )


def mask_columns(results: list[ImageMasks | None], named: bool = False) -> dict[str, np.ndarray]:
    """The output list columns of one batch: a row per image, no masks for None; ``named``: with the classifier's
    category and score lists."""
    columns: dict[str, list] = {c: [] for c in OUTPUT_LISTS}
    categories: list[list[int]] = []
    class_scores: list[list[float]] = []
    for result in results:
        masks = result or ImageMasks.empty()
        points = masks.prompt_points
        columns[col.MASK_RLE_COUNTS].append([r["counts"] for r in masks.rles])
        columns[col.MASK_BBOX_XYXY].append(masks.boxes_xyxy.tolist())
        columns[col.MASK_AREA].append(masks.areas.tolist())
        columns[col.MASK_PREDICTED_IOU].append(masks.predicted_iou.tolist())
        columns[col.MASK_STABILITY].append(masks.stability_score.tolist())
        columns[col.MASK_SCORE].append(masks.scores.tolist())
        columns[col.MASK_PROMPT_INDEX].append(masks.prompt_index.tolist())
        columns[col.MASK_PROMPT_POINTS].append([[] for _ in masks.rles] if points is None else points.tolist())
        if named:
            categories.append([] if masks.category_id is None else masks.category_id.tolist())
            class_scores.append([] if masks.class_score is None else masks.class_score.tolist())
    out = {c: col.object_column(v) for c, v in columns.items()}
    if named:
        out[col.MASK_CATEGORY_ID] = col.object_column(categories)
        out[col.MASK_CLASS_SCORE] = col.object_column(class_scores)
    return out
