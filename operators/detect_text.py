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

from operators.detect import Detect
from pipeline.config.sections import StorageConfig, TextConfig
from pipeline.ontology import read_classes
from pipeline.prompts.text import TextDetector
from pipeline.runtime.torch_backend import pick_device


class DetectText(Detect):
    """:class:`operators.detect.Detect` with the text detector in place of YOLO (same columns, same error rows)."""

    def __init__(
        self, text: TextConfig, storage: StorageConfig, device: str = "auto", cache_dir: str | None = None
    ) -> None:
        classes = read_classes(text, storage)
        self.detector = TextDetector(text, classes, storage, pick_device(device), cache_dir)
