"""Detect operator: YOLOv8 boxes as box prompts for the segment operator (``--prompts yolo``).

One actor per GPU (or a CPU actor); the model is loaded once in ``__init__`` through ultralytics (the optional
``[yolo]`` extra), offline (see :mod:`pipeline.prompts.yolo`), on the device picked inside the actor.

Reads:  image_id · image_detect_rgb / detect_h / detect_w (the image resized for the detector; when empty the
        detector reads image_rgb / input_h / input_w) · image_height · image_width · error_*
Writes: prompt_boxes_xyxy (4·K float32, original pixels, border-snapped) · prompt_box_ids (deterministic annotation
        ids) · prompt_category_ids (class index + 1) · prompt_scores (detector confidence); drops image_detect_rgb.
Rows with an error pass through with no boxes; a batch that fails is retried image by image, and an image that
still fails becomes an error row with stage "detect".
"""

from __future__ import annotations

import logging

import numpy as np

from operators.rows import run_rows
from pipeline import schema as col
from pipeline.config.sections import StorageConfig, YoloConfig
from pipeline.ids import annotation_id_for
from pipeline.prompts.yolo import Detections, Detector
from pipeline.runtime.torch_backend import pick_device

log = logging.getLogger(__name__)


class Detect:
    def __init__(
        self, yolo: YoloConfig, storage: StorageConfig, device: str = "auto", cache_dir: str | None = None
    ) -> None:
        picked = pick_device(device)
        self.detector = Detector(yolo, storage, "cpu" if picked.type == "cpu" else str(picked.index or 0), cache_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch[col.IMAGE_ID])
        errors = col.error_columns(batch, n)
        ok = [i for i in range(n) if not col.has_error(errors, i)]
        done = run_rows("detect", ok, lambda rows: self._detect(batch, rows), errors)
        found: list[Detections | None] = [done.get(i) for i in range(n)]
        out = {k: v for k, v in batch.items() if k not in (col.IMAGE_DETECT_RGB, col.DETECT_H, col.DETECT_W)}
        out.update(errors)
        out.update(prompt_columns(batch[col.IMAGE_ID], found))
        return out

    def _detect(self, batch: dict[str, np.ndarray], rows: list[int]) -> list[Detections]:
        images = [detector_image(batch, i) for i in rows]
        original_hw = np.array([(batch[col.IMAGE_HEIGHT][i], batch[col.IMAGE_WIDTH][i]) for i in rows], np.int64)
        return self.detector.detect(images, original_hw.reshape(-1, 2))


def detector_image(batch: dict[str, np.ndarray], i: int) -> np.ndarray:
    """Row ``i``'s image for a detector: its own copy when the decode task made one, else the encoder's."""
    if col.IMAGE_DETECT_RGB in batch and len(batch[col.IMAGE_DETECT_RGB][i]):
        raw, h, w = batch[col.IMAGE_DETECT_RGB][i], int(batch[col.DETECT_H][i]), int(batch[col.DETECT_W][i])
    else:
        raw, h, w = batch[col.IMAGE_RGB][i], int(batch[col.INPUT_H][i]), int(batch[col.INPUT_W][i])
    return np.frombuffer(raw, np.uint8).reshape(h, w, 3)


def prompt_columns(image_ids: np.ndarray, found: list[Detections | None]) -> dict[str, np.ndarray]:
    """The box prompt columns of a batch (no boxes for None); category ids are class index + 1."""
    boxes, ids, categories, scores = [], [], [], []
    for image_id, detections in zip(image_ids, found, strict=True):
        if detections is None:
            detections = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
        boxes.append(detections.boxes_xyxy.astype(np.float32).ravel().tolist())
        ids.append([annotation_id_for(str(image_id), k) for k in range(len(detections.scores))])
        categories.append((detections.classes + 1).tolist())
        scores.append(detections.scores.tolist())
    return {
        col.PROMPT_BOXES_XYXY: col.object_column(boxes),
        col.PROMPT_BOX_IDS: col.object_column(ids),
        col.PROMPT_CATEGORY_IDS: col.object_column(categories),
        col.PROMPT_SCORES: col.object_column(scores),
    }
