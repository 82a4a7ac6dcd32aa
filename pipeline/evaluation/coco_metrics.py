"""COCOeval-based protocols: detector-box mask AP and class-agnostic segment-everything mask AR@K.

Detector AP (EfficientViT-SAM ``box_from_detector``): detections carry the detector's category and score, their
masks come from the box prompt (best of 3); COCOeval ``segm`` with the standard maxDets 1/10/100.
AR@K (SAM §7.3 object proposals): every GT and every predicted mask is put in one category, predictions are ranked
by score, and COCOeval ``segm`` runs with ``maxDets = [10, 100, 1000]``; AR@K is the recall averaged over IoU
0.50:0.95 at K proposals per image, over all areas (and per area bucket at the largest K). Crowd GT is ignored by
COCOeval as usual.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

AP_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
AR_MAX_DETS = (10, 100, 1000)


def _evaluate(gt: COCO, results: list[dict], max_dets: Sequence[int] | None = None) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(copy.deepcopy(results)) if results else COCO()
        evaluator = COCOeval(gt, dt, "segm")
        if max_dets is not None:
            evaluator.params.maxDets = list(max_dets)
        evaluator.evaluate()
        evaluator.accumulate()
        if max_dets is None:
            evaluator.summarize()
    return evaluator


def mask_ap(gt: COCO, results: list[dict]) -> dict:
    """COCO mask AP (AP, AP50, AP75, APs, APm, APl) of RLE ``results`` against ``gt``, and ``per_class``: each GT
    category's AP (IoU 0.50:0.95, all areas) by name, None for a category without GT masks; 0 when there are no
    results."""
    names = {c["id"]: c["name"] for c in gt.loadCats(gt.getCatIds())}
    if not results:
        per_class = {name: (0.0 if gt.getAnnIds(catIds=[k]) else None) for k, name in names.items()}
        return {**{name: 0.0 for name in AP_NAMES}, "per_class": per_class}
    evaluator = _evaluate(gt, results)
    out: dict = {name: round(float(v), 6) for name, v in zip(AP_NAMES, evaluator.stats[:6], strict=True)}
    precision = evaluator.eval["precision"]  # [IoU thresholds, recall points, categories, areas, max dets]
    per_class = {}
    for k, category in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        per_class[names[category]] = round(float(values.mean()), 6) if values.size else None
    out["per_class"] = per_class
    return out


def class_agnostic(gt: COCO, results: list[dict]) -> tuple[COCO, list[dict]]:
    """Copies of ``gt`` and ``results`` with every category replaced by one (id 1)."""
    document = copy.deepcopy(gt.dataset)
    document["categories"] = [{"id": 1, "name": "object"}]
    for ann in document["annotations"]:
        ann["category_id"] = 1
    agnostic = COCO()
    agnostic.dataset = document
    with contextlib.redirect_stdout(io.StringIO()):
        agnostic.createIndex()
    return agnostic, [{**r, "category_id": 1} for r in results]


def mask_ar(gt: COCO, results: list[dict], max_dets: Sequence[int] = AR_MAX_DETS) -> dict[str, float]:
    """Class-agnostic mask AR@K for each K in ``max_dets`` (all areas), plus ARs/ARm/ARl at the largest K."""
    names = [f"AR@{k}" for k in max_dets] + [f"AR{s}@{max_dets[-1]}" for s in ("s", "m", "l")]
    if not results:
        return {name: 0.0 for name in names}
    agnostic_gt, agnostic = class_agnostic(gt, results)
    recall = _evaluate(agnostic_gt, agnostic, max_dets).eval["recall"]  # [T,K,A,M]: IoU thr, class, area, maxDets

    def average(area: int, m: int) -> float:
        values = recall[:, :, area, m]
        values = values[values > -1]
        return round(float(values.mean()), 6) if values.size else 0.0

    last = len(max_dets) - 1
    values = [average(0, m) for m in range(len(max_dets))] + [average(a, last) for a in (1, 2, 3)]
    return dict(zip(names, values, strict=True))
