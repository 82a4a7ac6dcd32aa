"""RLE computed with torch where the masks are (the GPU path, run here on the CPU) equals pycocotools' encoder
exactly: random masks, empty, full, one pixel, odd sizes, runs over column ends; areas and boxes equal too."""

import numpy as np
import pytest
import torch

from pipeline.segment.masks import decode_rle, encode_rle, masks_to_boxes_xyxy
from pipeline.segment.rle import encode_on_device, run_lengths


def _transposed(masks: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(masks.transpose(0, 2, 1)))


def _assert_equals_pycocotools(masks: np.ndarray) -> None:
    runs = encode_on_device(_transposed(masks))
    assert runs.rles() == encode_rle(masks)
    assert runs.areas.tolist() == masks.sum((1, 2)).tolist()
    assert runs.boxes_xyxy.tolist() == masks_to_boxes_xyxy(torch.from_numpy(masks)).tolist()


@pytest.mark.parametrize("hw", [(1, 1), (1, 7), (7, 1), (2, 3), (37, 53), (480, 640), (333, 257)])
@pytest.mark.parametrize("density", [0.02, 0.5, 0.98])
def test_random_masks_equal_pycocotools(hw: tuple[int, int], density: float) -> None:
    rng = np.random.default_rng(hw[0] * 1000 + hw[1])
    _assert_equals_pycocotools(rng.random((6, *hw)) < density)


def test_empty_full_and_single_pixel_masks() -> None:
    h, w = 31, 45
    masks = np.zeros((7, h, w), bool)
    masks[1] = True  # full
    masks[2, 0, 0] = True  # first pixel: the first run of zeros is empty
    masks[3, h - 1, w - 1] = True  # last pixel
    masks[4, h - 1, 0] = True  # end of the first column, so the run goes on at the top of the next one
    masks[5, :, 3] = True  # one whole column
    masks[6, 0, :] = True  # one whole row: a run per column
    _assert_equals_pycocotools(masks)
    lengths, per_mask = run_lengths(_transposed(masks[:3]))
    assert per_mask.tolist() == [1, 2, 3]
    assert lengths.tolist() == [h * w, 0, h * w, 0, 1, h * w - 1]


def test_blobs_decode_back_to_the_masks() -> None:
    yy, xx = np.mgrid[:120, :90]
    masks = np.stack([(yy - 60) ** 2 + (xx - c) ** 2 < r**2 for c, r in [(10, 30), (45, 20), (80, 50)]])
    runs = encode_on_device(_transposed(masks))
    assert all((decode_rle(rle) == mask).all() for rle, mask in zip(runs.rles(), masks, strict=True))


def test_no_masks() -> None:
    runs = encode_on_device(torch.zeros((0, 5, 4), dtype=torch.bool))
    assert runs.rles() == [] and runs.areas.shape == (0,) and runs.boxes_xyxy.shape == (0, 4)
