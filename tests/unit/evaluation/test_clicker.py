"""The RITM clicker: first click at the GT's centermost point, later clicks in the largest error region."""

import cv2
import numpy as np

from pipeline.evaluation.clicker import Clicker, next_click


def test_first_click_is_the_interior_point_farthest_from_the_boundary():
    gt = np.zeros((40, 60), bool)
    gt[10:30, 5:45] = True  # 20×40 rectangle: the centre row band is farthest from its edges
    click = next_click(gt, np.zeros_like(gt), np.ones_like(gt))
    assert click.positive
    assert (click.y, click.x) == (19, 14)  # first row-major argmax of the distance (10 px from the edges)
    dist = cv2.distanceTransform(np.pad(gt, 1).astype(np.uint8), cv2.DIST_L2, 0)[1:-1, 1:-1]
    assert dist[click.y, click.x] == dist.max()


def test_image_border_counts_as_boundary():
    gt = np.zeros((20, 20), bool)
    gt[:, :10] = True  # touches the left, top and bottom borders
    click = next_click(gt, np.zeros_like(gt), np.ones_like(gt))
    assert click.x in (4, 5) and 4 <= click.y <= 15  # 5 px from the left border and from the mask edge


def test_negative_click_when_the_false_positive_region_is_larger():
    gt = np.zeros((50, 50), bool)
    gt[5:10, 5:10] = True
    pred = np.zeros_like(gt)
    pred[5:10, 5:10] = True
    pred[20:45, 20:45] = True  # a large false positive
    click = next_click(gt, pred, np.ones_like(gt))
    assert not click.positive and 20 <= click.y < 45 and 20 <= click.x < 45


def test_clicker_never_clicks_the_same_pixel_twice_and_returns_xy_points():
    gt = np.zeros((9, 9), bool)
    gt[4, 4] = True
    clicker = Clicker(gt)
    first = clicker.click(np.zeros_like(gt))
    second = clicker.click(np.zeros_like(gt))  # same error region, but its best pixel is taken
    assert (first.y, first.x) == (4, 4) and (second.y, second.x) != (4, 4)
    coords, labels = clicker.points_xy()
    assert coords.tolist()[0] == [4.0, 4.0] and labels.tolist()[0] == 1.0
