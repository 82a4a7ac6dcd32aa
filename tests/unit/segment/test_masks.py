"""Mask encodings: RLE from transposed storage equals RLE of the masks; boxes and areas read from the RLE runs equal
those computed on the full masks (empty masks included)."""

import numpy as np
import torch

from pipeline.segment.masks import (
    count_true,
    decode_rle,
    encode_rle,
    encode_rle_transposed,
    masks_to_boxes_xyxy,
    rle_boxes_and_areas,
)


def _masks(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((5, 37, 53), bool)
    for k in range(4):
        y0, x0 = rng.integers(0, 30), rng.integers(0, 45)
        masks[k, y0 : y0 + rng.integers(1, 8), x0 : x0 + rng.integers(1, 9)] = True
    masks[3, 36, 52] = True  # the far corner
    return masks  # masks[4] stays empty


def test_transposed_storage_gives_the_same_rle():
    masks = _masks()
    transposed = np.ascontiguousarray(masks.transpose(0, 2, 1))
    assert encode_rle_transposed(transposed) == encode_rle(masks)
    assert all((decode_rle(r) == m).all() for r, m in zip(encode_rle(masks), masks, strict=True))


def test_boxes_and_areas_from_the_runs_equal_the_full_masks():
    masks = _masks(1)
    boxes, areas = rle_boxes_and_areas(encode_rle(masks))
    assert areas.tolist() == masks.sum((1, 2)).tolist() and areas[-1] == 0
    assert boxes.tolist() == masks_to_boxes_xyxy(torch.from_numpy(masks)).tolist()
    empty_boxes, empty_areas = rle_boxes_and_areas([])
    assert empty_boxes.shape == (0, 4) and empty_areas.shape == (0,)


def test_areas_of_many_masks_at_once():  # pycocotools' area() alone fails from 256 RLEs on (NumPy 2)
    masks = np.zeros((600, 6, 5), bool)
    for i in range(600):
        masks[i].flat[: i % 31] = True
    boxes, areas = rle_boxes_and_areas(encode_rle(masks))
    assert areas.tolist() == masks.sum((1, 2)).tolist()
    assert boxes.tolist() == masks_to_boxes_xyxy(torch.from_numpy(masks)).tolist()


def test_true_pixel_counts_match_torch_on_any_shape():
    masks = torch.from_numpy(_masks(2))
    assert count_true(masks).tolist() == masks.sum((-1, -2)).tolist()
    stacked = torch.stack([masks, ~masks])  # [2,5,H,W]
    assert count_true(stacked).tolist() == stacked.sum((-1, -2)).tolist()
    assert count_true(masks.transpose(-1, -2)).tolist() == masks.sum((-1, -2)).tolist()  # non-contiguous
    assert count_true(torch.zeros((0, 4, 4), dtype=torch.bool)).shape == (0,)
