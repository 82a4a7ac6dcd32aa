"""Mask helpers (pure torch / numpy): token selection, upscaling to the original frame, stability, boxes, RLE.

Upscaling follows the official ``postprocess_masks``: bilinear (``align_corners=False``) to the 1024 frame, crop
to the resized image, bilinear to the original size, no antialias; masks are ``logits > 0``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

from pipeline.segment.geometry import PROMPT_FRAME, preprocess_shape

MASK_THRESHOLD = 0.0
AREA_CHUNK = 255  # RLEs per pycocotools area() call (see rle_boxes_and_areas)


@dataclass(frozen=True)
class ImageMasks:
    """The kept masks of one image, K of them, at the original size."""

    rles: list[dict]
    """COCO compressed RLE dicts (``counts`` as str)."""
    boxes_xyxy: np.ndarray
    """[K,4] float32, tight boxes with inclusive pixel indices."""
    areas: np.ndarray
    """[K] int64 mask pixel counts."""
    predicted_iou: np.ndarray
    """[K] float32."""
    stability_score: np.ndarray
    """[K] float32."""
    scores: np.ndarray
    """[K] float32: predicted IoU, or the detector confidence for detector boxes."""
    prompt_index: np.ndarray
    """[K] int64, which of the image's prompts produced each mask."""
    prompt_points: np.ndarray | None = None
    """[K,N,2] float32 point prompts (x, y original pixels) of each mask, when the prompts were points."""
    category_id: np.ndarray | None = None
    """[K] int64 category of each mask, when the masks were classified (classify)."""
    class_score: np.ndarray | None = None
    """[K] float32 classifier score of that category, when the masks were classified."""
    unnamed: int = 0
    """Masks dropped because the classifier named none of its classes (classify.below: drop)."""

    @staticmethod
    def empty() -> ImageMasks:
        f32, i64 = np.zeros(0, np.float32), np.zeros(0, np.int64)
        return ImageMasks([], np.zeros((0, 4), np.float32), i64, f32, f32, f32, i64)

    def take(self, keep: np.ndarray, unnamed: int = 0) -> ImageMasks:
        """The masks at indices ``keep``, in that order; ``unnamed`` is added to the count of unnamed masks."""

        def pick(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[keep]

        return dataclasses.replace(
            self,
            rles=[self.rles[i] for i in keep],
            boxes_xyxy=self.boxes_xyxy[keep],
            areas=self.areas[keep],
            predicted_iou=self.predicted_iou[keep],
            stability_score=self.stability_score[keep],
            scores=self.scores[keep],
            prompt_index=self.prompt_index[keep],
            prompt_points=pick(self.prompt_points),
            category_id=pick(self.category_id),
            class_score=pick(self.class_score),
            unnamed=self.unnamed + unnamed,
        )

    def with_names(self, category_id: np.ndarray, class_score: np.ndarray) -> ImageMasks:
        """These masks with their categories [K] and class scores [K]."""
        return dataclasses.replace(
            self, category_id=np.asarray(category_id, np.int64), class_score=np.asarray(class_score, np.float32)
        )

    def top(self, k: int) -> tuple[ImageMasks, int]:
        """The ``k`` best masks by score (ties: the earlier one), in their original order, and the number dropped."""
        if len(self.rles) <= k:
            return self, 0
        keep = np.sort(np.argsort(-self.scores, kind="stable")[:k])
        return self.take(keep), len(self.rles) - k


def select_masks(logits: torch.Tensor, iou: torch.Tensor, multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The predictor's rule: tokens 1..3 when ``multimask`` else token 0. [P,4,...] → [P,C,...]."""
    index = slice(1, None) if multimask else slice(0, 1)
    return logits[:, index], iou[:, index]


def best_of(logits: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per prompt, the mask with the highest predicted IoU: [P,C,H,W], [P,C] → [P,H,W], [P]."""
    best = iou.argmax(dim=1)
    rows = torch.arange(len(best), device=best.device)
    return logits[rows, best], iou[rows, best]


def upscale_logits(logits: torch.Tensor, original_hw: tuple[int, int]) -> torch.Tensor:
    """Low-res logits [..., 256, 256] of one image → logits at the original size [..., h, w]."""
    lead = logits.shape[:-2]
    x = logits.reshape(-1, 1, *logits.shape[-2:]).float()
    x = F.interpolate(x, (PROMPT_FRAME, PROMPT_FRAME), mode="bilinear", align_corners=False)
    in_h, in_w = preprocess_shape(*original_hw, PROMPT_FRAME)
    x = F.interpolate(x[..., :in_h, :in_w], tuple(original_hw), mode="bilinear", align_corners=False)
    return x.reshape(*lead, *x.shape[-2:])


def count_true(masks: torch.Tensor) -> torch.Tensor:
    """True pixels per mask, [..., H, W] bool → [...] int32."""
    if masks.device.type != "cpu" or masks.numel() == 0:
        return masks.sum((-1, -2), dtype=torch.int32)
    # numpy counts bytes much faster than torch's bool reduction on CPU (docs/performance.md).
    flat = masks.reshape(-1, masks.shape[-2] * masks.shape[-1]).numpy()
    counts = np.fromiter((np.count_nonzero(m) for m in flat), np.int32, count=len(flat))
    return torch.from_numpy(counts).reshape(masks.shape[:-2])


def stability_score(logits: torch.Tensor, offset: float, threshold: float = MASK_THRESHOLD) -> torch.Tensor:
    """IoU of ``logits > threshold + offset`` against ``logits > threshold - offset``, per mask [..., H, W] → [...]."""
    intersections = count_true(logits > (threshold + offset))
    unions = count_true(logits > (threshold - offset))
    return torch.where(
        unions > 0, intersections / unions.clamp(min=1), torch.zeros_like(intersections, dtype=torch.float)
    )


def masks_to_boxes_xyxy(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of boolean masks [N,H,W] → [N,4] XYXY with inclusive pixel indices; empty masks give zeros."""
    if masks.numel() == 0:
        return torch.zeros((masks.shape[0], 4), device=masks.device)
    h, w = masks.shape[-2:]
    rows = masks.any(dim=-1)  # [N,H]
    cols = masks.any(dim=-2)  # [N,W]
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    y1 = torch.where(rows, ys, h).min(dim=-1).values
    y2 = torch.where(rows, ys, -1).max(dim=-1).values
    x1 = torch.where(cols, xs, w).min(dim=-1).values
    x2 = torch.where(cols, xs, -1).max(dim=-1).values
    boxes = torch.stack([x1, y1, x2, y2], dim=-1).float()
    empty = ~rows.any(dim=-1)
    return torch.where(empty.unsqueeze(-1), torch.zeros_like(boxes), boxes)


def encode_rle(masks: np.ndarray) -> list[dict]:
    """Boolean masks [N,H,W] → COCO compressed RLE dicts ``{"size": [h, w], "counts": str}`` (pycocotools)."""
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def encode_rle_transposed(masks_t: np.ndarray) -> list[dict]:
    """Boolean masks stored transposed, [N,W,H] C-contiguous → COCO RLE dicts of the [H,W] masks, as ``encode_rle``.

    pycocotools reads masks column-major ([H,W,N] in Fortran order), which is this layout's memory as it is, so no
    copy is made: on 3 MP masks this is ~4× faster than transposing [N,H,W] masks first.
    """
    if len(masks_t) == 0:
        return []
    masks_t = np.ascontiguousarray(masks_t, dtype=bool)
    rles = mask_utils.encode(masks_t.view(np.uint8).transpose(2, 1, 0))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def rle_boxes_and_areas(rles: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Tight XYXY boxes (inclusive pixel indices, zeros for empty masks) [N,4] float32 and areas [N] int64 of COCO
    RLEs, read from the runs (cheaper than another pass over full-size masks)."""
    if not rles:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    # pycocotools' area() fails for 256 or more RLEs under NumPy 2 (it sizes a uint8 array with the count).
    areas = np.concatenate(
        [np.asarray(mask_utils.area(rles[i : i + AREA_CHUNK]), np.int64) for i in range(0, len(rles), AREA_CHUNK)]
    )
    xywh = np.asarray(mask_utils.toBbox(rles), np.float32).reshape(-1, 4)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:] - 1], axis=1)
    boxes[areas == 0] = 0
    return boxes, areas


def decode_rle(rle: dict) -> np.ndarray:
    """A COCO compressed RLE dict → boolean mask [h, w]."""
    counts = rle["counts"]
    encoded = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(encoded).astype(bool)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks of the same shape (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
