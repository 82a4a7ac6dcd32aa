"""Column names: the interface between operators, named once. Formats and frames are in the names.

Stream rows are one per image until the sink. An image that failed at some stage keeps flowing with its
``error_*`` columns set (and empty image columns) so that it ends up in ``errors/``; operators skip such rows.
"""

from __future__ import annotations

import numpy as np

# --- input listing -------------------------------------------------------------------------------------------
IMAGE_ID = "image_id"  # str, deterministic id of the image (see pipeline.io.listing.image_id_for)
IMAGE_URI = "image_uri"  # str, where the image was read from

# --- read ------------------------------------------------------------------------------------------------------
IMAGE_BYTES = "image_bytes"  # binary, the compressed file as stored

# --- decode ----------------------------------------------------------------------------------------------------
IMAGE_RGB = "image_rgb"  # binary, raw HWC uint8 RGB of the image resized to the encoder's long side (PIL-exact)
IMAGE_JPEG = "image_jpeg"  # binary, the JPEG file as read, for the segment actor to decode on its GPU (decode.device)
IMAGE_ORIGINAL_RGB = "image_original_rgb"  # binary, raw HWC uint8 RGB at the original size (grid crop layers only)
IMAGE_DETECT_RGB = "image_detect_rgb"  # binary, raw HWC uint8 RGB resized for the detector (yolo; absent when equal
#                                        to IMAGE_RGB, which the detector then reads)
DETECT_H = "detect_h"  # int32, height of IMAGE_DETECT_RGB (0 when absent)
DETECT_W = "detect_w"  # int32, width of IMAGE_DETECT_RGB
INPUT_H = "input_h"  # int32, height of IMAGE_RGB
INPUT_W = "input_w"  # int32, width of IMAGE_RGB
IMAGE_HEIGHT = "image_height"  # int32, original height after EXIF orientation
IMAGE_WIDTH = "image_width"  # int32, original width after EXIF orientation

# --- errors (null when the row is fine) -----------------------------------------------------------------------
ERROR_STAGE = "error_stage"  # str: "read" | "decode" | "detect" | "segment"
ERROR_TYPE = "error_type"  # str: short machine-readable reason, e.g. "truncated", "too_large", "not_an_image"
ERROR_MESSAGE = "error_message"  # str: one human-readable line

ERROR_COLUMNS = (ERROR_STAGE, ERROR_TYPE, ERROR_MESSAGE)

# Per-stage timing (float64 seconds per row; a batch's shared work is split evenly over its rows). Summed by the
# sink into run.json; never written to the output tables. Stages: see pipeline.timing.STAGES.
SECONDS_PREFIX = "seconds_"


def seconds_column(stage: str) -> str:
    return SECONDS_PREFIX + stage


# --- boxes mode prompts (added to the input table from the boxes file) -----------------------------------------
COCO_IMAGE_ID = "coco_image_id"  # int64, image id in coco.json (kept from a COCO boxes file, else derived)
PROMPT_BOXES_XYXY = "prompt_boxes_xyxy"  # list<float32> of 4·K values (x1, y1, x2, y2 per box), original pixels
PROMPT_BOX_IDS = "prompt_box_ids"  # list<int64>, annotation ids of the input boxes (kept in the output)
PROMPT_CATEGORY_IDS = "prompt_category_ids"  # list<int64>, categories of the input boxes
PROMPT_SCORES = "prompt_scores"  # list<float32>, detector confidence of each box (yolo); absent for user boxes

# --- segment output: one row per image, lists of length K (kept masks) -----------------------------------------
MASK_RLE_COUNTS = "mask_rle_counts"  # list<str>, COCO compressed RLE counts at original size
MASK_BBOX_XYXY = "mask_bbox_xyxy"  # list<list<float32>[4]>, tight box of the mask (inclusive pixel indices)
MASK_AREA = "mask_area"  # list<int64>
MASK_PREDICTED_IOU = "mask_predicted_iou"  # list<float32>
MASK_STABILITY = "mask_stability_score"  # list<float32>
MASK_SCORE = "mask_score"  # list<float32>
MASK_PROMPT_INDEX = "mask_prompt_index"  # list<int64>, row of the prompt in the image's prompt list
MASK_PROMPT_POINTS = "mask_prompt_points"  # list<list<list<float32>>>, point prompts (x, y original px) per mask
MASK_CATEGORY_ID = "mask_category_id"  # list<int64>, the classifier's category of each mask (classify only)
MASK_CLASS_SCORE = "mask_class_score"  # list<float32>, the classifier's score of that category (classify only)

# --- limits: what was cut off for an image (int64; absent means 0) ------------------------------------------------
PROMPTS_DROPPED = "prompts_dropped"  # boxes past segment.max_prompts_per_image, dropped when planning
MASKS_DROPPED = "masks_dropped"  # masks past segment.max_masks_per_image, dropped by the segment operator
MASKS_UNNAMED = "masks_unnamed"  # masks the classifier named none of its classes, dropped (classify.below: drop)

# --- records: the output columns, still one row per image (lists of length K) until the sink explodes them ------
STATUS = "status"  # str: "labeled" | "error"
ANNOTATION_ID = "annotation_id"
CATEGORY_ID = "category_id"
CATEGORY_NAME = "category_name"
BBOX_XYWH = "bbox_xywh"  # COCO convention: x, y of the top-left pixel, width and height in pixels (toBbox)
AREA = "area"
RLE_COUNTS = "rle_counts"
PREDICTED_IOU = "predicted_iou"
STABILITY_SCORE = "stability_score"
SCORE = "score"
CLASS_SCORE = "class_score"  # the classifier's score of the category; null when the masks were not classified
PROMPT_TYPE = "prompt_type"
PROMPT_BOX_XYXY = "prompt_box_xyxy"
PROMPT_POINTS = "prompt_points"
MODEL = "model"
RUN_ID = "run_id"

ANNOTATION_LISTS = (
    ANNOTATION_ID,
    CATEGORY_ID,
    CATEGORY_NAME,
    BBOX_XYWH,
    AREA,
    RLE_COUNTS,
    PREDICTED_IOU,
    STABILITY_SCORE,
    SCORE,
    CLASS_SCORE,
    PROMPT_BOX_XYXY,
    PROMPT_POINTS,
)


def object_column(values: list) -> np.ndarray:
    """A 1-D object array of per-row Python values (lists stay lists, so Arrow infers list types)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def error_columns(batch: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The batch's error columns as object arrays of ``str | None``, one entry per row (missing columns: None).

    A column that was all None comes back from Arrow as nulls or NaN; anything but a non-empty str means no error.
    """
    out = {}
    for name in ERROR_COLUMNS:
        values = batch.get(name)
        if values is not None and len(values) != n:
            raise ValueError(f"column {name!r} has {len(values)} rows, the batch has {n}")
        out[name] = object_column(
            [v if isinstance(v, str) and v else None for v in values] if values is not None else [None] * n
        )
    return out


def has_error(errors: dict[str, np.ndarray], i: int) -> bool:
    """Whether row ``i`` of :func:`error_columns` output carries an error."""
    return errors[ERROR_STAGE][i] is not None
