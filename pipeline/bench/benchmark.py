"""``jobs.bench``'s work: time the reference way and our labeling path on the same images and weights, back to back
in one process, and compare their masks. Returns one JSON-able report (see :func:`run_bench`)."""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.bench.agreement import box_agreement, grid_agreement
from pipeline.bench.data import list_images, random_boxes, write_images
from pipeline.bench.memory import PeakMemory
from pipeline.bench.sides import SideResult, make_segment, run_ours, run_reference_boxes, run_reference_grid
from pipeline.config.loading import to_dict
from pipeline.config.sections import LabelConfig
from pipeline.models import create_model
from pipeline.runtime import allocator
from pipeline.runtime.accuracy import accuracy_gate, gate_images
from pipeline.runtime.capability import cpu_report
from pipeline.runtime.load import load_runtime
from pipeline.runtime.torch_backend import pick_device
from pipeline.runtime.weights import load_model
from pipeline.timing import STAGES

_EXIF_ORIENTATION, _TRANSPOSED = 0x0112, (5, 6, 7, 8)


@dataclass(frozen=True)
class BenchOptions:
    """What to run on; the labeling settings themselves come from the :class:`LabelConfig`."""

    input_dir: Path | None = None
    """Folder of photos; None generates ``count`` photo-like JPEGs of ``size_hw``."""
    count: int = 4
    size_hw: tuple[int, int] = (1536, 2048)
    boxes_per_image: int = 10
    reference: bool = True
    """Also time the reference way and compare masks."""
    reference_allocator: str = "default"
    """``default``: the reference runs with the allocator a plain Python process has (the usual way); ``same``: with
    the settings our side uses (``segment.keep_freed_memory``), for a like-for-like figure."""
    seed: int = 0


def run_bench(cfg: LabelConfig, options: BenchOptions, workdir: Path | None = None) -> dict:
    """Runs both sides and returns the report (``ours``, ``reference``, ``speedup``, ``agreement``, conditions).

    The reference runs first, so that it sees the process's memory allocator as a plain Python process has it
    (unless ``options.reference_allocator`` is ``same``); ours then applies the label job's own settings
    (``segment.keep_freed_memory``, :mod:`pipeline.runtime.allocator`), as its actors do.
    """
    if cfg.prompts.mode not in ("boxes", "grid"):
        raise ValueError(f"--prompts must be boxes or grid for the benchmark, got {cfg.prompts.mode!r}")
    if options.reference_allocator not in ("default", "same"):
        raise ValueError(f"reference allocator must be default or same, got {options.reference_allocator!r}")
    with tempfile.TemporaryDirectory(prefix="samlabel-bench-") as tmp:
        work = Path(workdir or tmp)
        files = (
            list_images(options.input_dir, options.count)
            if options.input_dir
            else write_images(work / "images", options.count, options.size_hw, options.seed)
        )
        cfg, weights_note = _with_weights(cfg, work, options.seed)
        boxes = _boxes(files, options) if cfg.prompts.mode == "boxes" else None
        device = pick_device(cfg.model.device)
        torch.set_num_threads(cfg.segment.threads or os.cpu_count() or 1)  # both sides, as the segment actor does
        reference = reference_memory = None
        if options.reference:
            if options.reference_allocator == "same" and cfg.segment.keep_freed_memory:
                allocator.keep_freed_memory()
            reference_allocator_tuned = allocator.in_effect()
            model, _ = load_model(cfg.model, cfg.storage)
            model = model.to(device).eval()
            _warm_up_reference(model, files[0])
            with PeakMemory(device) as reference_memory:
                if boxes is not None:
                    reference = run_reference_boxes(model, files, boxes)
                else:
                    reference = run_reference_grid(model, files, cfg)
            del model
        segment = make_segment(cfg)
        _warm_up(segment, files[0], cfg, boxes)
        with PeakMemory(device) as ours_memory:
            ours = run_ours(segment, cfg, files, boxes, work / "out")
        report = {
            "conditions": _conditions(cfg, files, weights_note, device),
            "ours": _side_report(ours, len(files), ours_memory.peak_mb),
        }
        tuned = "glibc keeps freed memory (segment.keep_freed_memory)"
        report["conditions"]["allocator"] = {"ours": tuned if allocator.in_effect() else "default"}
        report["conditions"].update(resolved_precision(segment.runtime, cfg))
        if report["conditions"]["precision"] != "fp32" or report["conditions"]["decoder_precision"] != "fp32":
            report["gate"] = _accuracy_gate(cfg, segment.runtime)
        if reference is None:
            return report
        report["conditions"]["allocator"]["reference"] = tuned if reference_allocator_tuned else "default"
        report["reference"] = _side_report(reference, len(files), reference_memory.peak_mb)
        report["speedup"] = round(reference.seconds / ours.seconds, 3) if ours.seconds > 0 else None
        report["agreement"] = (
            box_agreement(ours.rles, reference.rles)
            if boxes is not None
            else grid_agreement(ours.rles, reference.rles)
        )
        return report


def resolved_precision(runtime, cfg: LabelConfig) -> dict:
    """The precisions our side ran (``auto`` resolved in the runtime) and the configured ones."""
    configured = {"precision": cfg.model.precision, "decoder_precision": cfg.model.decoder_precision}
    ran = {k: getattr(runtime, k, "fp32" if v == "auto" else v) for k, v in configured.items()}
    return {**ran, "configured_precision": list(configured.values())}


def _accuracy_gate(cfg: LabelConfig, runtime) -> dict:
    """The label job's accuracy gate for reduced precision (our runtime against fp32 on the gate's generated images),
    reported instead of enforced."""
    fp32 = dataclasses.replace(cfg.model, precision="fp32", decoder_precision="fp32", compile=False)
    return dataclasses.asdict(accuracy_gate(runtime, load_runtime(fp32, cfg.storage, 64), gate_images()))


def _with_weights(cfg: LabelConfig, work: Path, seed: int) -> tuple[LabelConfig, str]:
    """The config with a weight file for both sides: the given one, or seeded random weights saved to ``work``."""
    if cfg.model.weights:
        return cfg, cfg.model.weights
    path = work / f"random-{cfg.model.name}-seed{seed}.pt"
    torch.save(create_model(cfg.model.name, seed=seed).state_dict(), path)
    model = dataclasses.replace(cfg.model, weights=str(path), weights_sha256=None)
    return dataclasses.replace(cfg, model=model), f"random (seed {seed})"


def _boxes(files: list[Path], options: BenchOptions) -> list[np.ndarray]:
    boxes = []
    for i, path in enumerate(files):
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSED:
                w, h = h, w
        boxes.append(random_boxes(h, w, options.boxes_per_image, options.seed * 7919 + i))
    return boxes


def _warm_up_reference(model, path: Path) -> None:
    """The reference's first kernel calls (one image set, one box predicted), outside its timing."""
    from pipeline.bench.sides import load_rgb
    from pipeline.segment.reference import ReferencePredictor
    from pipeline.timing import StageTimer

    predictor = ReferencePredictor(model)
    predictor.set_image(load_rgb(path, StageTimer.off()))
    predictor.predict(box=np.array([10.0, 10.0, 200.0, 200.0]), multimask_output=True)


def _warm_up(segment, path: Path, cfg: LabelConfig, boxes: list[np.ndarray] | None) -> None:
    """Our side's first kernel calls (allocator, oneDNN primitives), outside its timing."""
    from pipeline.bench.sides import load_rgb
    from pipeline.segment.predictor import encode_images, predict
    from pipeline.segment.prompts import make_prompts
    from pipeline.timing import StageTimer

    image = load_rgb(path, StageTimer.off())
    encoded = encode_images(segment.runtime, [image])
    predict(segment.runtime, encoded, make_prompts([0], boxes=np.array([[10.0, 10.0, 200.0, 200.0]])), True)


def _side_report(side: SideResult, images: int, peak_mb: float | None) -> dict:
    masks = sum(sum(m is not None for m in per_image) for per_image in side.rles)
    stages = {s: round(side.stage_seconds[s], 3) for s in (*STAGES, "mask_generator") if s in side.stage_seconds}
    return {
        "seconds": round(side.seconds, 3),
        "images_per_second": round(images / side.seconds, 4) if side.seconds > 0 else None,
        "stage_seconds": stages,
        "prompts_per_image": round(side.prompts / images, 2),
        "masks_per_image": round(masks / images, 2),
        "peak_memory_mb": peak_mb,
    }


def _conditions(cfg: LabelConfig, files: list[Path], weights: str, device: torch.device) -> dict:
    sizes = []
    for path in files:
        with Image.open(path) as im:
            sizes.append(im.size[0] * im.size[1] / 1e6)
    config = to_dict(cfg)
    return {
        "machine": {
            **cpu_report(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "model": cfg.model.name,
        "weights": weights,
        "backend": cfg.model.backend,
        "precision": cfg.model.precision,
        "decoder_precision": cfg.model.decoder_precision,
        "prompts": cfg.prompts.mode,
        "settings": config["grid"] if cfg.prompts.mode == "grid" else config["boxes"],
        "segment": config["segment"],
        "images": {
            "count": len(files),
            "megapixels_min": round(min(sizes), 2),
            "megapixels_max": round(max(sizes), 2),
        },
    }
