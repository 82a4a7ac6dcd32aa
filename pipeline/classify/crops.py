"""The classifier's view of a mask: a square crop around the mask's box, resized to the classifier's input, with the
pixels outside the mask set to the classifier's mean colour (zero after normalisation) or kept.

Why the mean colour: inside a box there are other objects (the person on the forklift, the floor under the pallet),
and a crop with them lets them vote for the class; the mask alone names what was segmented. The mean colour is what
the model's normalisation maps to zero, so the fill adds no colour of its own, as black or white would. The square
(the box's longer side plus ``margin`` on each side) keeps the object's aspect ratio, which CLIP's centre crop would
cut.

Pixels come from the image the segment actor holds (resized to the encoder input); the crop is sampled with
``roi_align`` (bilinear, averaging several samples per output pixel when it shrinks), on the image's device. The mask
is sampled from its RLE at the original size, nearest pixel.
"""

from __future__ import annotations

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torchvision.ops import roi_align


def square_boxes(boxes_xyxy: np.ndarray, margin: float) -> np.ndarray:
    """Square crop windows [K,4] (x1, y1, x2, y2, continuous original pixels) around tight boxes [K,4] (inclusive
    pixel indices): the box's longer side plus ``margin`` of it on each side, centred on the box."""
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2] + 1.0, boxes[:, 3] + 1.0
    side = np.maximum(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def mask_crops(rles: list[dict], windows: np.ndarray, size: int) -> np.ndarray:
    """[K,size,size] bool: each mask (COCO RLE at the original size) sampled at the centres of a size×size grid over
    its window (nearest pixel; outside the image: False)."""
    out = np.zeros((len(rles), size, size), bool)
    steps = (np.arange(size) + 0.5) / size
    for k, (rle, (x1, y1, x2, y2)) in enumerate(zip(rles, windows, strict=True)):
        mask = mask_utils.decode(rle)  # [H,W] at the original size
        h, w = mask.shape
        ys = np.floor(y1 + steps * (y2 - y1)).astype(np.int64)
        xs = np.floor(x1 + steps * (x2 - x1)).astype(np.int64)
        rows, cols = (ys >= 0) & (ys < h), (xs >= 0) & (xs < w)
        out[k][np.ix_(rows, cols)] = mask[np.ix_(ys[rows], xs[cols])] > 0
    return out


def image_crops(image: torch.Tensor, windows: torch.Tensor, size: int) -> torch.Tensor:
    """[K,3,size,size] float32 in 0..255: ``image`` ([H,W,3] uint8, any device) inside ``windows`` ([K,4] continuous
    pixels of this image), bilinear; outside the image 0."""
    pixels = image.permute(2, 0, 1)[None].float()
    rois = torch.cat([torch.zeros((len(windows), 1), device=windows.device), windows], dim=1)
    return roi_align(pixels, rois.to(pixels.device, torch.float32), size, spatial_scale=1.0, aligned=True)


def classifier_inputs(
    image: torch.Tensor,
    original_hw: tuple[int, int],
    rles: list[dict],
    boxes_xyxy: np.ndarray,
    *,
    size: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    margin: float,
    keep_background: bool,
) -> torch.Tensor:
    """Normalised classifier inputs [K,3,size,size] of the masks of one image. ``image``: [h,w,3] uint8, the image
    resized from ``original_hw``; ``rles`` and ``boxes_xyxy`` at the original size; ``mean``/``std``: [3] on 0..1."""
    windows = square_boxes(boxes_xyxy, margin)
    scale = np.array([image.shape[1] / original_hw[1], image.shape[0] / original_hw[0]] * 2)
    crops = image_crops(image, torch.as_tensor(windows * scale, dtype=torch.float32, device=image.device), size)
    pixels = (crops / 255.0 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    if keep_background:
        return pixels
    inside = torch.from_numpy(mask_crops(rles, windows, size)).to(pixels.device)
    return pixels * inside[:, None]
