"""The two sides a benchmark times on the same images and weights: our labeling path and the reference way.

Ours runs the labeling job's operators in this process, in batches of ``segment.batch_size`` images (default 4 on
CPU, 32 on GPU): read → decode → segment (encoder, prompts, mask decoder, filter, RLE) → records → Parquet part,
each stage timed as the job times it (the ``seconds_*`` columns). The reference runs one image at a time with the
official predictor's semantics (:mod:`pipeline.segment.reference`): boxes go through ``set_image`` then one
``predict`` per box (multimask, best of 3, as the official box protocol), grids through SAM's automatic mask generator.
Both read
and decode the files themselves and keep every mask as COCO RLE, which is what a labeling run needs.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image, ImageOps
from segment_anything.utils.amg import build_all_layer_point_grids, generate_crop_boxes

from operators.decode import decode_images
from operators.read import read_images
from operators.records import to_records
from operators.segment import Segment, SegmentPrompts
from pipeline import schema as col
from pipeline.config.sections import LabelConfig
from pipeline.io.run_output import write_part
from pipeline.models import EfficientViTSam, model_card
from pipeline.segment.masks import encode_rle
from pipeline.segment.reference import ReferenceMaskGenerator, ReferencePredictor, generator_kwargs
from pipeline.timing import StageTimer


@dataclass
class SideResult:
    """What one side produced and how long it took (wall seconds)."""

    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    prompts: int = 0
    rles: list[list[dict]] = field(default_factory=list)
    """Per image, the kept masks as COCO RLE (for boxes: one per box, in box order)."""
    predicted_iou: list[np.ndarray] = field(default_factory=list)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_segment(cfg: LabelConfig) -> Segment:
    return Segment(cfg.model, SegmentPrompts.of(cfg), cfg.segment, cfg.storage, cfg.segment.threads)


def run_ours(
    segment: Segment, cfg: LabelConfig, files: list[Path], boxes: list[np.ndarray] | None, out: Path
) -> SideResult:
    """Labels ``files`` (with ``boxes[i]`` per image in boxes mode) through the job's operators into ``out``."""
    result = SideResult(stage_seconds={})
    timer = StageTimer()
    long_side = model_card(cfg.model.name).encoder_input_size
    start = time.perf_counter()
    batch_size = cfg.segment.images_per_call(gpu=segment.runtime.device.type == "cuda")
    for first in range(0, len(files), batch_size):
        chunk = list(range(first, min(first + batch_size, len(files))))
        batch = {
            col.IMAGE_ID: np.array([files[i].name for i in chunk], dtype=object),
            col.IMAGE_URI: np.array([str(files[i]) for i in chunk], dtype=object),
            col.COCO_IMAGE_ID: np.array(chunk, np.int64),
        }
        if boxes is not None:
            batch[col.PROMPT_BOXES_XYXY] = col.object_column([boxes[i].reshape(-1).tolist() for i in chunk])
            batch[col.PROMPT_BOX_IDS] = col.object_column([list(range(len(boxes[i]))) for i in chunk])
            batch[col.PROMPT_CATEGORY_IDS] = col.object_column([[1] * len(boxes[i]) for i in chunk])
        batch = decode_images(read_images(batch, cfg.storage, cfg.decode.max_file_bytes), cfg.decode, long_side)
        batch = segment(batch)
        _sync(segment.runtime.device)
        _collect(result, batch, boxes, chunk, cfg)
        with timer("write"):
            records = to_records(
                batch,
                run_id="bench",
                model_name=cfg.model.name,
                prompt_type=cfg.prompts.mode,
                categories={1: "object"},
            )
            counts = write_part(str(out), cfg.storage, pa.table(records))
        timer.add({k[len(col.SECONDS_PREFIX) :]: v for k, v in counts.items() if k.startswith(col.SECONDS_PREFIX)})
    result.seconds = time.perf_counter() - start
    result.stage_seconds = timer.seconds
    return result


def grid_prompt_count(image_hw: tuple[int, int], cfg: LabelConfig) -> int:
    """Point prompts the automatic mask generator decodes for one image (every crop layer's grid)."""
    grid = cfg.grid
    points = build_all_layer_point_grids(grid.points_per_side, grid.crop_n_layers, grid.crop_n_points_downscale_factor)
    _, layers = generate_crop_boxes(tuple(image_hw), grid.crop_n_layers, grid.crop_overlap_ratio)
    return sum(len(points[layer]) for layer in layers)


def _collect(
    result: SideResult, batch: dict, boxes: list[np.ndarray] | None, chunk: list[int], cfg: LabelConfig
) -> None:
    for k, i in enumerate(chunk):
        if batch[col.ERROR_TYPE][k] is not None:
            raise ValueError(f"benchmark image {batch[col.IMAGE_URI][k]} failed: {batch[col.ERROR_MESSAGE][k]}")
        size = [int(batch[col.IMAGE_HEIGHT][k]), int(batch[col.IMAGE_WIDTH][k])]
        rles = [{"size": size, "counts": c} for c in batch[col.MASK_RLE_COUNTS][k]]
        iou = np.asarray(batch[col.MASK_PREDICTED_IOU][k], np.float32)
        if boxes is not None:  # back in box order (a box whose mask was filtered out stays None)
            ordered: list[dict | None] = [None] * len(boxes[i])
            for rle, p in zip(rles, batch[col.MASK_PROMPT_INDEX][k], strict=True):
                ordered[int(p)] = rle
            rles = ordered
        result.rles.append(rles)
        result.predicted_iou.append(iou)
        hw = (size[0], size[1])
        result.prompts += len(boxes[i]) if boxes is not None else grid_prompt_count(hw, cfg)


def load_rgb(path: Path, timer: StageTimer) -> np.ndarray:
    """The usual way to load an image for SAM (EXIF orientation applied, as the labeling job does)."""
    with timer("read"):
        raw = path.read_bytes()
    with timer("decode"), Image.open(io.BytesIO(raw)) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def run_reference_boxes(model: EfficientViTSam, files: list[Path], boxes: list[np.ndarray]) -> SideResult:
    """One image at a time: ``set_image``, then one ``predict(box, multimask)`` per box, best of 3, RLE."""
    predictor = ReferencePredictor(model)
    result, timer = SideResult(), StageTimer()
    start = time.perf_counter()
    for path, image_boxes in zip(files, boxes, strict=True):
        image = load_rgb(path, timer)
        with timer("encode"):
            predictor.set_image(image)
        rles, ious = [], []
        for box in image_boxes:
            with timer("decode_masks"):
                masks, iou, _ = predictor.predict(box=box, multimask_output=True)
            with timer("rle"):
                best = int(np.argmax(iou))
                rles.extend(encode_rle(masks[best][None]))
                ious.append(iou[best])
        _sync(predictor.device)
        result.rles.append(rles)
        result.predicted_iou.append(np.asarray(ious, np.float32))
        result.prompts += len(image_boxes)
    result.seconds, result.stage_seconds = time.perf_counter() - start, timer.seconds
    return result


def run_reference_grid(model: EfficientViTSam, files: list[Path], cfg: LabelConfig) -> SideResult:
    """One image at a time through SAM's automatic mask generator with the same grid settings (COCO RLE output)."""
    generator = ReferenceMaskGenerator(model, **generator_kwargs(cfg.grid))
    result, timer = SideResult(), StageTimer()
    set_image = generator.predictor.set_image

    def timed_set_image(image: np.ndarray) -> None:  # the encoder's share of the generator's time
        with timer("encode"):
            set_image(image)

    generator.predictor.set_image = timed_set_image
    start = time.perf_counter()
    for path in files:
        image = load_rgb(path, timer)
        generate_start = time.perf_counter()
        masks = generator.generate(image)
        _sync(generator.predictor.device)
        timer.add({"mask_generator": time.perf_counter() - generate_start})
        result.rles.append([m["segmentation"] for m in masks])
        result.predicted_iou.append(np.array([m["predicted_iou"] for m in masks], np.float32))
        result.prompts += grid_prompt_count(image.shape[:2], cfg)
    result.stage_seconds = timer.seconds
    result.stage_seconds["mask_generator"] -= result.stage_seconds.get("encode", 0.0)
    result.seconds = time.perf_counter() - start
    return result
