"""Prompt batches for the mask decoder, tokenised exactly as the official predictor does (pure numpy).

A prompt is a sequence of tokens (x, y, label) in the 1024 prompt frame. Labels: 1 foreground point, 0 background
point, 2/3 the top-left/bottom-right box corners, -1 the padding point that the predictor appends when a prompt
has points but no box. Prompts with different token counts cannot share a decoder call without changing the
result, so a :class:`PromptBatch` holds prompts of one layout and callers pass a list of batches for a mix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAD_LABEL = -1
BOX_LABELS = (2, 3)


@dataclass(frozen=True)
class PromptBatch:
    """P prompts sharing one token layout.

    Attributes:
        image_index: [P] int64, the embedding (image in the encoded batch) each prompt reads.
        coords: [P,T,2] float32, token x, y in the 1024 prompt frame.
        labels: [P,T] float32, token labels (see module docstring).
        mask_input: [P,1,256,256] float32 low-res logits of an earlier prediction, or None.
    """

    image_index: np.ndarray
    coords: np.ndarray
    labels: np.ndarray
    mask_input: np.ndarray | None = None

    def __post_init__(self) -> None:
        p = len(self.image_index)
        if self.coords.ndim != 3 or self.coords.shape[0] != p or self.coords.shape[2] != 2:
            raise ValueError(f"coords must be [P,T,2] with P={p}, got {self.coords.shape}")
        if self.labels.shape != self.coords.shape[:2]:
            raise ValueError(f"labels must be [P,T]={self.coords.shape[:2]}, got {self.labels.shape}")
        if self.mask_input is not None and self.mask_input.shape != (p, 1, 256, 256):
            raise ValueError(f"mask_input must be [P,1,256,256] with P={p}, got {self.mask_input.shape}")

    def __len__(self) -> int:
        return len(self.image_index)

    def take(self, index: np.ndarray | slice) -> PromptBatch:
        mask = None if self.mask_input is None else self.mask_input[index]
        return PromptBatch(self.image_index[index], self.coords[index], self.labels[index], mask)


def make_prompts(
    image_index: np.ndarray,
    points: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    boxes: np.ndarray | None = None,
    mask_input: np.ndarray | None = None,
) -> PromptBatch:
    """Tokenises P prompts in the 1024 frame: points first, then a padding point if there is no box, then box corners.

    Args:
        image_index: [P] int.
        points: [P,N,2] x, y, or None. point_labels: [P,N] (1 foreground, 0 background).
        boxes: [P,4] XYXY, or None.
        mask_input: [P,1,256,256] or None.
    """
    image_index = np.asarray(image_index, dtype=np.int64).reshape(-1)
    p = len(image_index)
    coords, labels = [], []
    if points is not None:
        points = np.asarray(points, dtype=np.float32)
        if point_labels is None or points.ndim != 3 or points.shape[0] != p:
            raise ValueError(f"points must be [P,N,2] with P={p} and come with point_labels")
        coords.append(points)
        labels.append(np.asarray(point_labels, dtype=np.float32).reshape(p, points.shape[1]))
        if boxes is None:
            coords.append(np.zeros((p, 1, 2), np.float32))
            labels.append(np.full((p, 1), PAD_LABEL, np.float32))
    if boxes is not None:
        boxes = np.asarray(boxes, dtype=np.float32)
        if boxes.shape != (p, 4):
            raise ValueError(f"boxes must be [P,4] XYXY with P={p}, got {boxes.shape}")
        coords.append(boxes.reshape(p, 2, 2))
        labels.append(np.tile(np.asarray(BOX_LABELS, np.float32), (p, 1)))
    if not coords:
        raise ValueError("a prompt needs points or a box")
    mask = None if mask_input is None else np.asarray(mask_input, dtype=np.float32)
    return PromptBatch(image_index, np.concatenate(coords, 1), np.concatenate(labels, 1), mask)


def concat_prompts(batches: list[PromptBatch]) -> PromptBatch:
    """Concatenates batches of the same layout (token count and mask presence)."""
    if len({(b.coords.shape[1], b.mask_input is None) for b in batches}) != 1:
        raise ValueError("prompt batches with different layouts cannot be concatenated")
    masks = None if batches[0].mask_input is None else np.concatenate([b.mask_input for b in batches])
    return PromptBatch(
        np.concatenate([b.image_index for b in batches]),
        np.concatenate([b.coords for b in batches]),
        np.concatenate([b.labels for b in batches]),
        masks,
    )
