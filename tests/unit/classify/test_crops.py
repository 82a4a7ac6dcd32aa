"""What the classifier sees of a mask: a square window around its box with the margin, the image's pixels at the
right place although the image was resized, and the pixels outside the mask at the mean colour (zero after
normalisation) or kept."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.classify.crops import classifier_inputs, mask_crops, square_boxes
from pipeline.segment.masks import encode_rle

MEAN = torch.tensor([0.5, 0.4, 0.3])
STD = torch.tensor([0.2, 0.25, 0.3])
RED, BLUE = (255, 0, 0), (0, 0, 255)


def _normalised(rgb: tuple[int, int, int]) -> torch.Tensor:
    return (torch.tensor(rgb) / 255.0 - MEAN) / STD


def test_square_windows_keep_the_centre_and_add_the_margin() -> None:
    boxes = np.array([[10, 20, 19, 23], [0, 0, 0, 0]], np.float32)  # 10×4 pixels, and a single pixel
    windows = square_boxes(boxes, margin=0.0)
    assert np.allclose(windows[0], [10, 17, 20, 27]) and np.allclose(windows[1], [0, 0, 1, 1])
    assert np.allclose(square_boxes(boxes, margin=0.1)[0], [9, 16, 21, 28])  # 10 + 2·1 on each axis


def test_masks_are_sampled_inside_their_window_and_false_outside_the_image() -> None:
    mask = np.zeros((1, 40, 60), bool)
    mask[0, 10:20, 30:60] = True  # reaches the right border
    crops = mask_crops(encode_rle(mask), square_boxes(np.array([[30, 10, 59, 19]]), 0.0), size=6)
    # The 30-wide window over rows 0..29: the mask's rows 10..19 are the crop's rows 2 and 3 (of 5 px each).
    assert crops.shape == (1, 6, 6) and crops[0].all(axis=1).tolist() == [False, False, True, True, False, False]
    wide = mask_crops(encode_rle(mask), square_boxes(np.array([[30, 10, 59, 19]]), 0.5), size=12)
    assert not wide[0][:, -3:].any()  # past the image's right border


def test_only_the_mask_is_seen_or_the_background_is_kept() -> None:
    original = np.zeros((40, 60, 3), np.uint8)
    original[:, :30], original[:, 30:] = RED, BLUE
    mask = np.zeros((1, 40, 60), bool)
    mask[0, 10:30, 10:26] = True  # red pixels only; its square window reaches into the blue half
    resized = torch.from_numpy(np.ascontiguousarray(original[::2, ::2]))  # the actor holds the image at half size
    rle, box = encode_rle(mask), np.array([[10, 10, 25, 29]], np.float32)
    args = {"size": 16, "mean": MEAN, "std": STD, "margin": 0.25}
    masked = classifier_inputs(resized, (40, 60), rle, box, keep_background=False, **args)[0]
    kept = classifier_inputs(resized, (40, 60), rle, box, keep_background=True, **args)[0]
    pixels = masked.permute(1, 2, 0).reshape(-1, 3)
    seen = pixels.abs().sum(dim=1) > 0
    assert 0 < seen.sum() < len(pixels)
    assert torch.allclose(pixels[seen], _normalised(RED).expand(int(seen.sum()), 3), atol=1e-5)
    assert torch.allclose(kept.permute(1, 2, 0).reshape(-1, 3)[seen], pixels[seen])
    colours = kept.permute(1, 2, 0).reshape(-1, 3)[~seen]
    assert (torch.isclose(colours, _normalised(BLUE), atol=1e-4).all(dim=1)).any()  # the kept background
