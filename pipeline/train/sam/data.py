"""Training samples from a COCO instances file: images, sampled masks, and simulated prompts (pure numpy).

Follows EfficientViT-SAM's stage-2 recipe: per image up to N masks sampled without replacement (repeated when the
image has fewer), random horizontal flip; per image either the GT box of every mask or n ~ U{1..max_points}
positive points sampled uniformly inside each mask (a box when a mask is empty after sampling fails).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from pipeline.segment.geometry import boxes_to_prompt_frame, to_prompt_frame
from pipeline.segment.prompts import PromptBatch, make_prompts


@dataclass(frozen=True)
class Sample:
    image: np.ndarray
    """[h,w,3] uint8 RGB."""
    masks: np.ndarray
    """[K,h,w] bool, the sampled instance masks."""


class CocoMasks:
    """Images with at least one non-crowd annotation of area >= 1 in a COCO file; masks decoded on demand."""

    def __init__(self, annotation_file: str | Path, image_dir: str | Path) -> None:
        self.coco = COCO(str(annotation_file))
        self.image_dir = Path(image_dir)
        self.image_ids = sorted(
            i
            for i in self.coco.getImgIds()
            if any(a["area"] >= 1 and not a.get("iscrowd", 0) for a in self.coco.imgToAnns[i])
        )
        if not self.image_ids:
            raise ValueError(f"{annotation_file} has no image with a usable annotation")

    def __len__(self) -> int:
        return len(self.image_ids)

    def sample(self, rng: np.random.Generator, index: int, masks_per_image: int, hflip: bool = True) -> Sample:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        image = np.asarray(Image.open(self.image_dir / info["file_name"]).convert("RGB"))
        anns = [a for a in self.coco.imgToAnns[image_id] if a["area"] >= 1 and not a.get("iscrowd", 0)]
        order = rng.permutation(len(anns))
        picks = np.resize(order, masks_per_image)  # without replacement, repeated when there are fewer
        masks = np.stack([self.coco.annToMask(anns[k]).astype(bool) for k in picks])
        if hflip and rng.random() < 0.5:
            image, masks = image[:, ::-1], masks[:, :, ::-1]
        return Sample(np.ascontiguousarray(image), np.ascontiguousarray(masks))


def mask_boxes_xyxy(masks: np.ndarray) -> np.ndarray:
    """[K,h,w] bool → [K,4] float32 XYXY boxes in pixel-edge coordinates (x2 = last column + 1), as COCO bbox."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for k, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if len(ys):
            boxes[k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes


def sample_points(rng: np.random.Generator, mask: np.ndarray, n: int) -> np.ndarray:
    """``n`` points (x, y) drawn uniformly from the mask's pixels, with replacement. [n,2].

    Points are integer pixel indices, as the RITM clicker of the evaluation gives them (SAM's prompt encoder adds the
    half-pixel offset itself).
    """
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError("cannot sample points from an empty mask")
    k = rng.integers(len(ys), size=n)
    return np.stack([xs[k], ys[k]], 1).astype(np.float32)


def image_prompts(
    rng: np.random.Generator, image_index: int, masks: np.ndarray, use_box: bool, max_points: int
) -> PromptBatch:
    """Prompts for the K masks of one image in the 1024 frame: every GT box, or n ~ U{1..max_points} points each."""
    hw = masks.shape[1:]
    index = np.full(len(masks), image_index, np.int64)
    if use_box or not all(m.any() for m in masks):
        return make_prompts(index, boxes=boxes_to_prompt_frame(mask_boxes_xyxy(masks), hw))
    n = int(rng.integers(1, max_points + 1))
    points = np.stack([sample_points(rng, m, n) for m in masks])  # [K,n,2]
    return make_prompts(index, points=to_prompt_frame(points, hw), point_labels=np.ones((len(masks), n), np.float32))
