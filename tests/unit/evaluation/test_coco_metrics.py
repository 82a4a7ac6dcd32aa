"""Mask AP per named class: each GT category's AP from COCOeval's own precision table (the overall AP is their
mean), None for a category without GT masks."""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO

from pipeline.evaluation.coco_metrics import mask_ap
from pipeline.segment.masks import encode_rle


def _gt() -> COCO:
    masks = np.zeros((3, 60, 80), bool)
    masks[0, 5:25, 5:30] = True
    masks[1, 30:55, 40:75] = True
    masks[2, 10:20, 50:70] = True
    annotations = [
        {
            "id": k + 1,
            "image_id": 1,
            "category_id": c,
            "segmentation": rle,
            "area": int(m.sum()),
            "iscrowd": 0,
            "bbox": [0, 0, 1, 1],
        }
        for k, (c, rle, m) in enumerate(zip([1, 1, 2], encode_rle(masks), masks, strict=True))
    ]
    gt = COCO()
    gt.dataset = {
        "images": [{"id": 1, "width": 80, "height": 60, "file_name": "a.png"}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "forklift"}, {"id": 2, "name": "pallet"}, {"id": 3, "name": "person"}],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def test_ap_per_class() -> None:
    gt = _gt()
    anns = gt.loadAnns(gt.getAnnIds())
    results = [  # both forklifts found exactly; the pallet's mask put where there is none
        {"image_id": 1, "category_id": 1, "segmentation": a["segmentation"], "score": 0.9} for a in anns[:2]
    ]
    wrong = np.zeros((1, 60, 80), bool)
    wrong[0, 40:58, 0:20] = True
    results.append({"image_id": 1, "category_id": 2, "segmentation": encode_rle(wrong)[0], "score": 0.8})
    ap = mask_ap(gt, results)
    assert ap["per_class"] == {"forklift": 1.0, "pallet": 0.0, "person": None}
    assert ap["AP"] == 0.5  # the mean over the classes with GT masks


def test_no_results_give_zeros_for_every_class() -> None:
    ap = mask_ap(_gt(), [])
    assert ap["AP"] == 0.0 and ap["per_class"] == {"forklift": 0.0, "pallet": 0.0, "person": None}
