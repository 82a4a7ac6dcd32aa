"""AutoPPN target builder: the peak at the distance-transform maximum, the smallest-mask rule, the exact size-group
thresholds, and padding cells ignored."""

import cv2
import numpy as np
import pytest
import torch

from pipeline.prompts.autoppn.boxes import cell_centres, decode_ltrb
from pipeline.prompts.autoppn.model import AutoPPNCard
from pipeline.prompts.autoppn.targets import build_targets, size_group, valid_cells
from pipeline.segment.masks import encode_rle

CARD = AutoPPNCard(out_stride=8)


def _ellipse(hw, centre, axes, angle=0.0):
    mask = np.zeros(hw, np.uint8)
    cv2.ellipse(mask, centre, axes, angle, 0, 360, 1, -1)
    return mask.astype(bool)


def _rect(hw, x0, y0, x1, y1):
    mask = np.zeros(hw, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_peak_is_one_at_the_distance_transform_maximum():
    mask = _ellipse((1024, 1024), (400, 300), (150, 60), angle=30)
    t = build_targets([mask], (1024, 1024), CARD)
    dist = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(np.argmax(dist), dist.shape)
    group = int(size_group(np.array([[300, 300]]), (1024, 1024), CARD.group_thresholds)[0])
    heat = t.heat[group]
    assert heat[y // 8, x // 8] == 1.0 and heat.max() == 1.0 and heat.min() == 0.0
    assert np.count_nonzero(t.heat[[g for g in range(3) if g != group]]) == 0
    # Values fall towards the boundary and are zero outside the mask.
    assert heat[300 // 8, 260 // 8] < heat[y // 8, x // 8]
    assert heat[10, 10] == 0.0


def test_small_mask_gets_a_peak_even_between_cell_centres():
    mask = _rect((1024, 1024), 101, 101, 104, 104)  # 3 px: no cell centre (8k + 4) falls inside
    t = build_targets([mask], (1024, 1024), CARD)
    assert t.heat[0].max() == 1.0 and t.heat[0, 102 // 8, 102 // 8] == 1.0


def test_smallest_mask_owns_shared_cells():
    hw = (1024, 1024)
    whole = _rect(hw, 200, 200, 400, 400)  # r = 0.195, medium
    part = _rect(hw, 240, 240, 320, 320)  # r = 0.078, medium
    t = build_targets([part, whole], hw, CARD)
    centres = torch.as_tensor(cell_centres((128, 128), 8))
    boxes = decode_ltrb(torch.as_tensor(t.box_t[1]).permute(1, 2, 0), centres, 8, (1024, 1024))
    inside_part, only_whole = (280 // 8, 280 // 8), (370 // 8, 370 // 8)
    assert torch.allclose(boxes[inside_part], torch.tensor([240.0, 240, 320, 320]), atol=1e-3)
    assert torch.allclose(boxes[only_whole], torch.tensor([200.0, 200, 400, 400]), atol=1e-3)
    part_alone = build_targets([part], hw, CARD).heat[1]
    assert t.heat[1][inside_part] == part_alone[inside_part]
    # Same result whatever the input order, and from RLEs.
    rles = encode_rle(np.stack([whole, part]))
    assert np.array_equal(build_targets(rles, hw, CARD).heat, t.heat)


@pytest.mark.parametrize(("side", "group"), [(50, 0), (51, 1), (249, 1), (250, 2)])
def test_size_group_thresholds_are_exact(side, group):
    hw = (1000, 800)  # r = max(w, h) / max(H, W) = side / 1000
    assert size_group(np.array([[side, 10]]), hw, (0.05, 0.25))[0] == group
    mask = _rect(hw, 100, 100, 100 + side, 110)
    t = build_targets([mask], hw, CARD)
    assert [bool(t.heat[g].any()) for g in range(3)] == [g == group for g in range(3)]


def test_padding_cells_are_invalid_and_empty():
    hw = (300, 600)  # 1024 frame: 512 x 1024, so rows >= 64 of the 128 are padding
    valid = valid_cells(hw, 8)
    assert valid[:64].all() and not valid[64:].any()
    mask = _rect(hw, 0, 150, 600, 300)  # touches the bottom edge of the image
    t = build_targets([mask], hw, CARD)
    assert np.array_equal(t.valid, valid)
    assert t.heat[:, 64:].max() == 0.0 and t.heat[:, :64].max() == 1.0
    assert np.abs(t.box_t[:, :, 64:]).max() == 0.0


def test_mask_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differs from the image size"):
        build_targets([np.ones((10, 10), bool)], (20, 20), CARD)
