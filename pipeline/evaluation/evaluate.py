"""One evaluation: which protocols, on what, with which model; returns the JSON-able results.

Protocols (names as in ``--protocols``):

* ``box``: GT-box mIoU (all/large/medium/small). From the model, or from a labeling run made with
  ``--prompts boxes --prompts-file <the GT file>`` (``labels``), matched by annotation id.
* ``point``: RITM-clicker mIoU after each of ``clicks`` clicks (model only).
* ``detector``: mask AP (COCOeval segm) of detector boxes, overall and per class: ``detections`` segmented by the
  model, or a labeling run's masks (``labels``: a ``--prompts yolo``, ``text`` or ``boxes`` run, or any run whose
  masks a classifier named), categories matched by name.
* ``everything``: class-agnostic mask AR@10/100/1000 of a ``grid`` or ``autoppn`` labeling run (``labels``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.config.sections import ModelConfig, StorageConfig
from pipeline.evaluation.coco_metrics import mask_ap, mask_ar
from pipeline.evaluation.detections import read_detections, segment_detections
from pipeline.evaluation.from_outputs import box_miou_from_results, run_info, run_results
from pipeline.evaluation.ground_truth import load_coco
from pipeline.evaluation.prompted import box_miou, point_miou

Protocol = Literal["box", "point", "detector", "everything"]
PROTOCOLS: tuple[Protocol, ...] = ("box", "point", "detector", "everything")
DEFAULT_FOR_RUN = {
    "boxes": ("box", "detector"),
    "yolo": ("detector",),
    "text": ("detector",),
    "grid": ("everything",),
    "autoppn": ("everything",),
}


@dataclass(frozen=True)
class EvalRequest:
    gt: str
    """COCO instances file (local or s3://)."""
    images: str | None = None
    """Folder / prefix the GT file_names are relative to (needed when the model runs)."""
    protocols: tuple[Protocol, ...] = ()
    """Empty: box + point for a model, the run's natural protocols for ``labels``."""
    model: ModelConfig | None = None
    """The model to run (box, point, detector with ``detections``)."""
    labels: str | None = None
    """A completed labeling run's output folder to score instead of running the model."""
    detections: str | None = None
    """COCO results file of detector boxes for ``detector`` with the model."""
    clicks: tuple[int, ...] = (1, 3, 5)
    """Click counts reported by ``point``."""
    decoder_chunk: int = 64
    """Prompts per decoder call when the model runs."""


def default_protocols(run_config: dict) -> tuple[Protocol, ...]:
    """The protocols that score a labeling run of this resolved config: its prompt mode's, and ``detector`` (mask AP
    per class) when a classifier named its masks."""
    protocols = DEFAULT_FOR_RUN.get(run_config["prompts"]["mode"], ())
    classify = run_config.get("classify") or {}
    if (classify.get("classes") or classify.get("file")) and "detector" not in protocols:
        protocols = (*protocols, "detector")
    return protocols


def plan_protocols(request: EvalRequest, storage: StorageConfig) -> tuple[tuple[Protocol, ...], dict | None]:
    """The protocols to run and the labeling run's run.json (when ``labels``); ValueError on impossible requests."""
    info = run_info(request.labels, storage) if request.labels else None
    protocols = request.protocols
    if not protocols:
        protocols = default_protocols(info["config"]) if info else ("box", "point")
    for protocol in protocols:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
        uses_model = protocol == "point" or (protocol in ("box", "detector") and not request.labels)
        if protocol == "detector" and not request.labels and not request.detections:
            raise ValueError("protocol detector needs --detections (boxes to segment) or --labels (a detector run)")
        if protocol == "everything" and not request.labels:
            raise ValueError("protocol everything scores a grid/autoppn labeling run: pass --labels")
        if uses_model and (request.model is None or request.images is None):
            raise ValueError(f"protocol {protocol} runs the model: pass --model and --images")
    return tuple(protocols), info


def evaluate(request: EvalRequest, storage: StorageConfig) -> dict:
    """Runs the protocols and returns ``{"gt", "model"|"labels", <protocol>: {...}}``."""
    protocols, info = plan_protocols(request, storage)
    gt = load_coco(request.gt, storage)
    out: dict = {"gt": request.gt, "images": request.images, "protocols": list(protocols)}
    runtime = None
    if any(p == "point" or (p in ("box", "detector") and not request.labels) for p in protocols):
        from pipeline.runtime.load import fp32_unless_set
        from pipeline.runtime.torch_backend import TorchSam, pick_device
        from pipeline.runtime.weights import load_model, resolve_weights

        sam, sha256 = load_model(request.model, storage)
        # The protocols measure the model itself: fp32 unless a precision is asked for.
        precision = fp32_unless_set(request.model).precision
        runtime = TorchSam(sam, pick_device(request.model.device), precision, request.decoder_chunk)
        out["model"] = {
            "name": request.model.name,
            "weights": resolve_weights(request.model),
            "weights_sha256": sha256,
        }
    results, skipped = run_results(gt, request.labels, storage) if request.labels else ([], 0)
    if info is not None:
        out["labels"] = {
            "uri": request.labels,
            "run_id": info.get("run_id"),
            "model": info.get("model"),
            "prompts": info["config"]["prompts"]["mode"],
            "masks": len(results),
            "masks_not_in_gt": skipped,
        }
    for protocol in protocols:
        if protocol == "box":
            out["box"] = (
                box_miou_from_results(gt, results)
                if request.labels
                else box_miou(runtime, gt, request.images, storage)
            )
        elif protocol == "point":
            out["point"] = point_miou(runtime, gt, request.images, storage, request.clicks)
        elif protocol == "detector":
            if request.labels:
                out["detector"] = {"source": "labels", **mask_ap(gt, results)}
            else:
                detections = read_detections(request.detections, gt, storage)
                segm = segment_detections(runtime, gt, detections, request.images, storage)
                out["detector"] = {"source": request.detections, **mask_ap(gt, segm)}
        else:
            out["everything"] = mask_ar(gt, results)
    return out


def summary_lines(results: dict) -> list[str]:
    """Human-readable lines of the headline numbers."""
    lines = []
    if "box" in results:
        m = results["box"]["miou"]
        lines.append(
            f"box mIoU: all {_f(m['all'])} | large {_f(m['large'])} | medium {_f(m['medium'])} | "
            f"small {_f(m['small'])} ({results['box']['count']['all']} masks)"
        )
    for k, v in results.get("point", {}).items():
        lines.append(f"point mIoU @{k} click{'s' if k != '1' else ''}: all {_f(v['miou']['all'])}")
    if "detector" in results:
        d = results["detector"]
        lines.append(f"detector-box mask AP: {_f(d['AP'])} (AP50 {_f(d['AP50'])}, AP75 {_f(d['AP75'])})")
        per_class = [f"{name} {_f(ap)}" for name, ap in d.get("per_class", {}).items()]
        if per_class:
            lines.append("  per class: " + ", ".join(per_class))
    if "everything" in results:
        e = results["everything"]
        lines.append("class-agnostic mask " + ", ".join(f"{k} {_f(v)}" for k, v in e.items()))
    return lines


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
