"""Segment-everything comparison: grid vs yolo vs autoppn on the same images and the same SAM weights.

Per method and image: prompts, masks kept, and time per stage: ``encode`` (image encoder), ``prompts`` (the
detector, or the AutoPPN head + Point-NMS; the grid's points cost nothing measurable and count in ``filter``),
``decode`` (mask decoder calls, measured around the runtime's ``decode``) and ``filter`` (everything else:
low-res filters, NMS, upsampling the kept masks, RLE). Agreement: the fraction of the grid's masks that some mask of
the method matches at mask IoU >= 0.5 and >= 0.9. Images are processed one at a time; CUDA is synchronised around
each timed call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from pipeline.config.sections import AutoPPNConfig, BoxesConfig, GridConfig
from pipeline.prompts.autoppn.model import AutoPPN
from pipeline.prompts.autoppn.proposals import propose
from pipeline.prompts.autoppn.segment import segment_autoppn
from pipeline.prompts.yolo import Detector, resize_for_detector
from pipeline.runtime.base import SamRuntime
from pipeline.segment.boxes import segment_boxes
from pipeline.segment.grid import generate_grid_masks
from pipeline.segment.predictor import EncodedImages, prepare_images
from pipeline.segment.prompts import PromptBatch

STAGES = ("encode", "prompts", "decode", "filter")


class TimedRuntime:
    """A runtime whose ``encode`` / ``decode`` calls add their wall time to ``seconds``."""

    def __init__(self, runtime: SamRuntime) -> None:
        self.runtime = runtime
        self.encoder_input_size = runtime.encoder_input_size
        self.device = runtime.device
        self.seconds = {"encode": 0.0, "decode": 0.0}

    def encode(self, images: np.ndarray, input_hw: np.ndarray) -> Any:
        return self._timed("encode", self.runtime.encode, images, input_hw)

    def decode(self, embeddings: Any, prompts: PromptBatch, hints: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._timed("decode", self.runtime.decode, embeddings, prompts, hints)

    def _timed(self, stage: str, fn: Callable, *args: Any) -> Any:
        start = _now(self.device)
        out = fn(*args)
        self.seconds[stage] += _now(self.device) - start
        return out


def compare_methods(
    runtime: SamRuntime,
    images: Sequence[np.ndarray],
    grid: GridConfig,
    detector: Detector | None,
    head: AutoPPN | None,
    autoppn: AutoPPNConfig,
    chunk: int,
) -> dict[str, Any]:
    """The report (see the module doc) for the methods that have a model: grid always, yolo, autoppn."""
    methods: dict[str, Callable] = {"grid": _grid_method(grid)}
    if detector is not None:
        methods["yolo"] = _yolo_method(detector)
    if head is not None:
        methods["autoppn"] = _autoppn_method(head, autoppn, chunk)
    timed = TimedRuntime(runtime)
    rows: dict[str, list[dict]] = {name: [] for name in methods}
    masks: dict[str, list[list[dict]]] = {name: [] for name in methods}
    for image in images:
        for name, method in methods.items():
            timed.seconds = {"encode": 0.0, "decode": 0.0}
            start = _now(timed.device)
            prompts, rles, prompt_seconds, repeated = method(timed, image)
            total = _now(timed.device) - start - repeated
            seconds = {**timed.seconds, "prompts": prompt_seconds}
            seconds["filter"] = max(0.0, total - sum(seconds.values()))
            rows[name].append({"num_prompts": prompts, "num_masks": len(rles), **seconds})
            masks[name].append(rles)
    return {name: _summary(rows[name], masks[name], masks["grid"]) for name in methods}


def _grid_method(cfg: GridConfig) -> Callable:
    def run(runtime: TimedRuntime, image: np.ndarray) -> tuple[int, list[dict], float, float]:
        canvases, input_hw = prepare_images([image], runtime.encoder_input_size)
        out = generate_grid_masks(runtime, canvases, input_hw, np.array([image.shape[:2]]), cfg)[0]
        return cfg.points_per_side**2, out.rles, 0.0, 0.0

    return run


def _yolo_method(detector: Detector) -> Callable:
    single = BoxesConfig(multimask=False)

    def run(runtime: TimedRuntime, image: np.ndarray) -> tuple[int, list[dict], float, float]:
        start = time.perf_counter()
        found = detector.detect([resize_for_detector(image, detector.cfg.imgsz)], np.array([image.shape[:2]]))[0]
        seconds = time.perf_counter() - start
        canvases, input_hw = prepare_images([image], runtime.encoder_input_size)
        encoded = EncodedImages(runtime.encode(canvases, input_hw), np.array([image.shape[:2]]))
        out = segment_boxes(runtime, encoded, [found.boxes_xyxy], single)[0]
        return len(found.scores), out.rles, seconds, 0.0

    return run


def _autoppn_method(head: AutoPPN, cfg: AutoPPNConfig, chunk: int) -> Callable:
    def run(runtime: TimedRuntime, image: np.ndarray) -> tuple[int, list[dict], float, float]:
        canvases, input_hw = prepare_images([image], runtime.encoder_input_size)
        embeddings = runtime.encode(canvases, input_hw)
        hw = np.array([image.shape[:2]])
        # The head + Point-NMS timed on their own; segment_autoppn repeats them, so their time is taken out of filter.
        start = _now(runtime.device)
        proposals = propose(
            head, embeddings, hw, score_thresh=cfg.score_thresh, nms_radius=cfg.nms_radius, top_n=cfg.top_n
        )
        seconds = _now(runtime.device) - start
        out = segment_autoppn(runtime, head, embeddings, hw, cfg, chunk)[0]
        return len(proposals), out.rles, seconds, seconds

    return run


def _summary(rows: list[dict], masks: list[list[dict]], grid: list[list[dict]]) -> dict[str, Any]:
    n = max(len(rows), 1)
    ms = {stage: 1000 * sum(r[stage] for r in rows) / n for stage in STAGES}
    matched = {0.5: 0, 0.9: 0}
    total = 0
    for ours, theirs in zip(masks, grid, strict=True):
        total += len(theirs)
        if ours and theirs:
            best = np.asarray(mask_utils.iou(_rles(ours), _rles(theirs), [0] * len(theirs))).max(axis=0)
            for threshold in matched:
                matched[threshold] += int((best >= threshold).sum())
    return {
        "images": len(rows),
        "prompts_per_image": sum(r["num_prompts"] for r in rows) / n,
        "masks_per_image": sum(r["num_masks"] for r in rows) / n,
        "ms_per_image": {k: round(v, 2) for k, v in ms.items()},
        "decode_filter_ms_per_image": round(ms["decode"] + ms["filter"], 2),
        "grid_masks_matched": {str(k): (v / total if total else None) for k, v in matched.items()},
    }


def _rles(rles: list[dict]) -> list[dict]:
    return [
        {"size": r["size"], "counts": r["counts"].encode() if isinstance(r["counts"], str) else r["counts"]}
        for r in rles
    ]


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def table(report: dict[str, Any]) -> str:
    """A short text table of the report, with decode+filter speed-ups over the grid."""
    grid = report["grid"]["decode_filter_ms_per_image"]
    header = ("method", "prompts", "masks", "encode", "prompts", "decode", "filter", "dec+filt", "speedup", "grid@.5")
    lines = [" ".join(f"{h:>8}" for h in (*header, "grid@.9"))]
    for name, r in report.items():
        ms, agree = r["ms_per_image"], r["grid_masks_matched"]
        speedup = grid / r["decode_filter_ms_per_image"] if r["decode_filter_ms_per_image"] else float("inf")
        lines.append(
            f"{name:>8} {r['prompts_per_image']:8.1f} {r['masks_per_image']:8.1f} {ms['encode']:8.1f} "
            f"{ms['prompts']:8.1f} {ms['decode']:8.1f} {ms['filter']:8.1f} {r['decode_filter_ms_per_image']:8.1f} "
            f"{speedup:7.1f}x "
            f"{_pct(agree['0.5']):>8} {_pct(agree['0.9']):>8}"
        )
    return "\n".join(lines) + "\n(ms per image; speedup = grid decode+filter / method decode+filter)"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"
