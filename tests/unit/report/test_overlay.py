"""Overlays of masks far smaller than a pixel after downscaling still draw (a hostile-folder run failed on them)."""

import numpy as np

from pipeline.report.overlay import OverlayMask, draw_overlay
from pipeline.segment.masks import encode_rle


def test_one_pixel_mask_on_a_large_image_is_drawn():
    image = np.full((2000, 3000, 3), 40, np.uint8)
    mask = np.zeros((1, 2000, 3000), bool)
    mask[0, 1000, 1500] = True
    rle = encode_rle(mask)[0]
    out = draw_overlay(image, [OverlayMask(rle["counts"], [1500, 1000, 1, 1], "object 0.50")], max_side=512)
    assert out.shape == (341, 512, 3)
    assert (out != 40).any()  # the box outline and label were drawn
