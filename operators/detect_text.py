"""Text detect operator: boxes of named classes from an open-vocabulary detector as box prompts (``--prompts text``).

One actor per GPU (or a CPU actor), before the segment actor, as the yolo detector; the detector and the text
embeddings of every class query are loaded once in ``__init__`` (:mod:`pipeline.prompts.text`, the optional
``[text]`` extra).

Reads:  image_id · image_rgb / input_h / input_w (the image resized for the encoder) · image_height · image_width ·
        error_*
Writes: prompt_boxes_xyxy (4·K float32, original pixels) · prompt_box_ids · prompt_category_ids (class index + 1,
        in the given class order) · prompt_scores (detector confidence), as the yolo detect operator.
Rows with an error pass through with no boxes; a batch that fails is retried image by image, and an image that
still fails becomes an error row with stage "detect".
"""

from __future__ import annotations

import numpy as np

from operators.detect import detector_image, prompt_columns
from operators.rows import run_rows
from pipeline import schema as col
from pipeline.config.sections import StorageConfig, TextConfig
from pipeline.prompts.text import TextDetector, read_classes
from pipeline.prompts.yolo import Detections
from pipeline.runtime.torch_backend import pick_device


class DetectText:
    def __init__(
        self, text: TextConfig, storage: StorageConfig, device: str = "auto", cache_dir: str | None = None
    ) -> None:
        classes = read_classes(text, storage)
        self.detector = TextDetector(text, classes, storage, pick_device(device), cache_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch[col.IMAGE_ID])
        errors = col.error_columns(batch, n)
        ok = [i for i in range(n) if not col.has_error(errors, i)]
        done = run_rows("detect", ok, lambda rows: self._detect(batch, rows), errors)
        found: list[Detections | None] = [done.get(i) for i in range(n)]
        out = dict(batch)
        out.update(errors)
        out.update(prompt_columns(batch[col.IMAGE_ID], found))
        return out

    def _detect(self, batch: dict[str, np.ndarray], rows: list[int]) -> list[Detections]:
        images = [detector_image(batch, i) for i in rows]
        original_hw = np.array([(batch[col.IMAGE_HEIGHT][i], batch[col.IMAGE_WIDTH][i]) for i in rows], np.int64)
        return self.detector.detect(images, original_hw.reshape(-1, 2))
