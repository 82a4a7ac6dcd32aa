"""Records operator: turn the segment output into the output columns (still one row per image, lists of K).

Reads:  image_id · mask_* lists · prompt_box_ids / prompt_category_ids / prompt_boxes_xyxy (box prompts) · error_*
Writes: status · annotation_id · category_id (the classifier's when mask_category_id is present, else the prompt's) ·
        category_name · bbox_xywh · area · rle_counts · predicted_iou · stability_score · score (the detector
        confidence when prompt_scores is present, else the predicted IoU) · class_score (null without a classifier) ·
        prompt_box_xyxy · prompt_points (lists) · prompt_type · model · run_id;
        drops the mask_* and prompt_* lists. The sink explodes the lists into one row per annotation.
Annotation ids: the input box's id for box prompts, else :func:`pipeline.ids.annotation_id_for`.
Resources: CPU.
"""

from __future__ import annotations

import numpy as np

from pipeline import schema as col
from pipeline.ids import annotation_id_for

DEFAULT_CATEGORY_ID = 1


def to_records(
    batch: dict[str, np.ndarray], *, run_id: str, model_name: str, prompt_type: str, categories: dict[int, str]
) -> dict[str, np.ndarray]:
    n = len(batch[col.IMAGE_ID])
    lists: dict[str, list] = {c: [] for c in col.ANNOTATION_LISTS}
    for i in range(n):
        for name, values in _image_records(batch, i, categories).items():
            lists[name].append(values)
    dropped = {c for c in batch if c.startswith(("mask_", "prompt_"))}
    out = {k: v for k, v in batch.items() if k not in dropped}
    out.update({c: col.object_column(v) for c, v in lists.items()})
    errors = col.error_columns(batch, n)
    out.update(errors)
    out[col.STATUS] = col.object_column(["error" if col.has_error(errors, i) else "labeled" for i in range(n)])
    out[col.PROMPT_TYPE] = np.full(n, prompt_type, dtype=object)
    out[col.MODEL] = np.full(n, model_name, dtype=object)
    out[col.RUN_ID] = np.full(n, run_id, dtype=object)
    return out


def _image_records(batch: dict[str, np.ndarray], i: int, categories: dict[int, str]) -> dict[str, list]:
    image_id = batch[col.IMAGE_ID][i]
    prompt_index = [int(p) for p in batch[col.MASK_PROMPT_INDEX][i]]
    k = len(prompt_index)
    if col.PROMPT_BOX_IDS in batch:
        box_ids = list(batch[col.PROMPT_BOX_IDS][i])
        box_categories = list(batch[col.PROMPT_CATEGORY_IDS][i])
        boxes = np.asarray(batch[col.PROMPT_BOXES_XYXY][i], np.float64).reshape(-1, 4).tolist()
        ids = [int(box_ids[p]) for p in prompt_index]
        category_ids = [int(box_categories[p]) for p in prompt_index]
        prompt_boxes = [boxes[p] for p in prompt_index]
    else:
        ids = [annotation_id_for(image_id, j) for j in range(k)]
        category_ids = [DEFAULT_CATEGORY_ID] * k
        prompt_boxes = [None] * k
    scores = [float(v) for v in batch[col.MASK_SCORE][i]]
    if col.PROMPT_SCORES in batch:
        detector = list(batch[col.PROMPT_SCORES][i])
        scores = [float(detector[p]) for p in prompt_index]
    class_scores: list[float | None] = [None] * k
    if col.MASK_CATEGORY_ID in batch:
        category_ids = [int(c) for c in batch[col.MASK_CATEGORY_ID][i]]
        class_scores = [float(v) for v in batch[col.MASK_CLASS_SCORE][i]]
    areas = [int(a) for a in batch[col.MASK_AREA][i]]
    points = [[list(map(float, p)) for p in pts] or None for pts in batch[col.MASK_PROMPT_POINTS][i]]
    return {
        col.ANNOTATION_ID: ids,
        col.CATEGORY_ID: category_ids,
        col.CATEGORY_NAME: [categories.get(c, str(c)) for c in category_ids],
        col.BBOX_XYWH: [_xywh(box, area) for box, area in zip(batch[col.MASK_BBOX_XYXY][i], areas, strict=True)],
        col.AREA: areas,
        col.RLE_COUNTS: list(batch[col.MASK_RLE_COUNTS][i]),
        col.PREDICTED_IOU: [float(v) for v in batch[col.MASK_PREDICTED_IOU][i]],
        col.STABILITY_SCORE: [float(v) for v in batch[col.MASK_STABILITY][i]],
        col.SCORE: scores,
        col.CLASS_SCORE: class_scores,
        col.PROMPT_BOX_XYXY: prompt_boxes,
        col.PROMPT_POINTS: points,
    }


def _xywh(box_xyxy: list[float], area: int) -> list[float]:
    """Inclusive-pixel XYXY → COCO XYWH (width = pixel columns, as pycocotools' toBbox); empty mask → zeros."""
    if area == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return [x1, y1, x2 - x1 + 1, y2 - y1 + 1]
