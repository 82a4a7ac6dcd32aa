"""Prompted protocols run through the batched API: box mIoU with GT boxes, and point mIoU by the RITM clicker.

Box (EfficientViT-SAM ``--prompt_type box``): every GT annotation with area >= 1 is prompted with its box
(xywh → xyxy), ``multimask_output=True``, and the mask with the highest predicted IoU is compared with the GT mask.
Points (``--prompt_type point``): starting from an empty prediction, each step adds the RITM click
(:mod:`pipeline.evaluation.clicker`), re-predicts from all clicks so far with no mask fed back, multimask, argmax
predicted IoU; the IoU after k clicks is recorded for each k asked for. Both report the mean IoU over all
annotations and per COCO area bucket of the annotation's ``area``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools.coco import COCO

from pipeline.config.sections import StorageConfig
from pipeline.evaluation.clicker import Clicker
from pipeline.evaluation.ground_truth import area_bucket, bucket_means, evaluated_annotations, iter_images, load_image
from pipeline.runtime.base import SamRuntime
from pipeline.segment.geometry import boxes_to_prompt_frame, to_prompt_frame
from pipeline.segment.masks import MASK_THRESHOLD, best_of, mask_iou, upscale_logits
from pipeline.segment.predictor import EncodedImages, encode_images, predict
from pipeline.segment.prompts import make_prompts


def best_masks(runtime: SamRuntime, encoded: EncodedImages, prompts, hw_of: np.ndarray) -> list[np.ndarray]:
    """Multimask prediction, best of 3 by predicted IoU, at each prompt's original size: list of [h,w] bool."""
    pred = predict(runtime, encoded, prompts, multimask_output=True)
    logits, _ = best_of(pred.low_res_logits, pred.iou_predictions)  # [P,256,256]
    return [
        (upscale_logits(logits[k], tuple(int(v) for v in hw_of[k])) > MASK_THRESHOLD).cpu().numpy()
        for k in range(len(logits))
    ]


def box_miou(
    runtime: SamRuntime, coco: COCO, images_uri: str, storage: StorageConfig, chunk: int = 8
) -> dict[str, dict]:
    """Box-prompt mIoU with GT boxes (all / large / medium / small), and the number of annotations in each."""
    ious, buckets = [], []
    image_ids = sorted(i for i in coco.getImgIds() if evaluated_annotations(coco, i))
    for records in iter_images(coco, image_ids, chunk):
        images = [load_image(images_uri, r["file_name"], storage) for r in records]
        encoded = encode_images(runtime, images)
        anns = [evaluated_annotations(coco, r["id"]) for r in records]
        index = np.concatenate([np.full(len(a), i, np.int64) for i, a in enumerate(anns)])
        boxes = np.concatenate(
            [
                boxes_to_prompt_frame(np.array([xyxy(a["bbox"]) for a in image_anns]), tuple(encoded.original_hw[i]))
                for i, image_anns in enumerate(anns)
            ]
        )
        masks = best_masks(runtime, encoded, make_prompts(index, boxes=boxes), encoded.original_hw[index])
        flat = [a for image_anns in anns for a in image_anns]
        for ann, mask in zip(flat, masks, strict=True):
            ious.append(mask_iou(mask, coco.annToMask(ann).astype(bool)))
            buckets.append(area_bucket(ann["area"]))
    return bucket_means(ious, buckets)


def point_miou(
    runtime: SamRuntime,
    coco: COCO,
    images_uri: str,
    storage: StorageConfig,
    clicks: Sequence[int] = (1, 3, 5),
) -> dict[str, dict]:
    """RITM-clicker mIoU after each number of clicks in ``clicks``: ``{"1": {"miou": ..., "count": ...}, ...}``."""
    if not clicks or min(clicks) < 1:
        raise ValueError(f"clicks must be positive numbers of clicks, got {list(clicks)}")
    per_k: dict[int, list[float]] = {k: [] for k in clicks}
    buckets: list[str] = []
    for image_id in sorted(coco.getImgIds()):
        anns = evaluated_annotations(coco, image_id)
        if not anns:
            continue
        image = load_image(images_uri, coco.imgs[image_id]["file_name"], storage)
        for k, values in _clicks_of_image(runtime, image, [coco.annToMask(a).astype(bool) for a in anns], clicks):
            per_k[k].extend(values)
        buckets.extend(area_bucket(a["area"]) for a in anns)
    return {str(k): bucket_means(per_k[k], buckets) for k in clicks}


def _clicks_of_image(
    runtime: SamRuntime, image: np.ndarray, gts: list[np.ndarray], clicks: Sequence[int]
) -> list[tuple[int, list[float]]]:
    """All GT masks of one image click in lockstep: one decoder call per click round (same token layout)."""
    encoded = encode_images(runtime, [image])
    hw = tuple(image.shape[:2])
    clickers = [Clicker(gt) for gt in gts]
    preds = [np.zeros(hw, bool) for _ in gts]
    out = []
    for n in range(1, max(clicks) + 1):
        for clicker, pred in zip(clickers, preds, strict=True):
            clicker.click(pred)
        coords = np.stack([to_prompt_frame(c.points_xy()[0], hw) for c in clickers])  # [P,n,2]
        labels = np.stack([c.points_xy()[1] for c in clickers])  # [P,n]
        index = np.zeros(len(gts), np.int64)
        prompts = make_prompts(index, points=coords, point_labels=labels)
        preds = best_masks(runtime, encoded, prompts, np.tile(np.asarray(hw), (len(gts), 1)))
        if n in clicks:
            out.append((n, [mask_iou(p, g) for p, g in zip(preds, gts, strict=True)]))
    return out


def xyxy(bbox: Sequence[float]) -> list[float]:
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y + h]
