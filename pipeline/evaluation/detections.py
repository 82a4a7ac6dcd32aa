"""Detector boxes → masks through the model (EfficientViT-SAM ``box_from_detector``): best of 3 by predicted IoU.

Detections are a COCO results file (``image_id``, ``bbox`` xywh, ``score``, ``category_id``) on the GT's images; each
box prompts the decoder with ``multimask_output=True``, no refinement iteration, and the mask with the highest
predicted IoU is RLE-encoded with the detection's category and score.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
from pycocotools.coco import COCO

from pipeline.config.sections import StorageConfig
from pipeline.evaluation.ground_truth import iter_images, load_image
from pipeline.evaluation.prompted import best_masks, xyxy
from pipeline.io import storage as st
from pipeline.runtime.base import SamRuntime
from pipeline.segment.geometry import boxes_to_prompt_frame
from pipeline.segment.masks import encode_rle
from pipeline.segment.predictor import encode_images
from pipeline.segment.prompts import make_prompts


def read_detections(uri: str, gt: COCO, storage: StorageConfig) -> list[dict]:
    """A COCO results list of boxes; ValueError naming the file when it is not one or names unknown images."""
    try:
        detections = json.loads(st.read_bytes(uri, storage))
    except ValueError as e:
        raise ValueError(f"detections {uri} are not valid JSON: {e}") from None
    if not isinstance(detections, list) or any(not {"image_id", "bbox", "score"} <= set(d) for d in detections):
        raise ValueError(f"detections {uri} must be a COCO results list with image_id, bbox, score, category_id")
    unknown = {d["image_id"] for d in detections} - set(gt.imgs)
    if unknown:
        raise ValueError(
            f"detections {uri} refer to {len(unknown)} images not in the ground truth (e.g. {min(unknown)})"
        )
    return detections


def segment_detections(
    runtime: SamRuntime, gt: COCO, detections: list[dict], images_uri: str, storage: StorageConfig, chunk: int = 8
) -> list[dict]:
    """COCO ``segm`` results: one RLE mask per detection, with its category and score."""
    by_image: dict[int, list[dict]] = defaultdict(list)
    for d in detections:
        by_image[d["image_id"]].append(d)
    results = []
    for records in iter_images(gt, sorted(by_image), chunk):
        images = [load_image(images_uri, r["file_name"], storage) for r in records]
        encoded = encode_images(runtime, images)
        dets = [by_image[r["id"]] for r in records]
        index = np.concatenate([np.full(len(d), i, np.int64) for i, d in enumerate(dets)])
        boxes = np.concatenate(
            [
                boxes_to_prompt_frame(np.array([xyxy(d["bbox"]) for d in image_dets]), tuple(encoded.original_hw[i]))
                for i, image_dets in enumerate(dets)
            ]
        )
        masks = best_masks(runtime, encoded, make_prompts(index, boxes=boxes), encoded.original_hw[index])
        rles = [encode_rle(mask[None])[0] for mask in masks]  # images of a chunk may differ in size
        for det, rle in zip([d for image_dets in dets for d in image_dets], rles, strict=True):
            results.append(
                {
                    "image_id": det["image_id"],
                    "category_id": det.get("category_id", 1),
                    "segmentation": rle,
                    "score": float(det["score"]),
                }
            )
    return results
