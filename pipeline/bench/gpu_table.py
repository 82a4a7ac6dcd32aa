"""The GPU table: per model, precision and compile mode, encoder-only images/s per batch and images/s of the segment
stage with box prompts and with a point grid (encoder → prompts → mask decoder → filters → upsampling → RLE, i.e.
the labeling actor's work on decoded images), their ratio to encoder-only, GPU utilisation, compile seconds and the
accuracy gate against eager fp32 on the same weights.

Read/decode are not in the segment figure: in the labeling job they run as parallel CPU tasks next to the GPU
actor. Runs on CPU too (slowly), which is how it is tested.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import torch

from pipeline.bench.benchmark import _with_weights
from pipeline.bench.data import photo_like, random_boxes
from pipeline.bench.throughput import encoder_throughput, timed_calls
from pipeline.config.sections import BoxesConfig, GridConfig, LabelConfig
from pipeline.runtime.accuracy import accuracy_gate
from pipeline.runtime.load import load_runtime
from pipeline.segment.boxes import segment_boxes_in_steps, step_slices
from pipeline.segment.grid import generate_grid_masks
from pipeline.segment.predictor import prepare_images


def segment_throughput(runtime, batch: int, boxes_per_image: int, iterations: int, size_hw=(480, 640)) -> dict:
    """Images/s of encode + ``boxes_per_image`` box prompts + upsampling + RLE on ``batch`` decoded images."""
    images = [photo_like(*size_hw, seed=i) for i in range(batch)]
    canvases, input_hw = prepare_images(images, runtime.encoder_input_size)
    original_hw = np.array([image.shape[:2] for image in images])
    boxes = [random_boxes(*size_hw, boxes_per_image, seed=i) for i in range(batch)]

    def once() -> None:
        # As the segment actor runs it: in steps, the next images queued on a GPU while the host RL-encodes.
        steps = ((canvases[s], input_hw[s], original_hw[s], boxes[s]) for s in step_slices(batch, runtime.device))
        segment_boxes_in_steps(runtime, steps, BoxesConfig())

    return timed_calls(once, runtime.device, batch, iterations, warmup=1)


def grid_throughput(runtime, batch: int, points_per_side: int, iterations: int, size_hw=(480, 640)) -> dict:
    """Images/s of the grid mode (default filters, ``points_per_side``², no crop layers) on ``batch`` decoded
    images: encoder, decoder, filters, NMS, upsampling and RLE."""
    images = [photo_like(*size_hw, seed=i) for i in range(batch)]
    canvases, input_hw = prepare_images(images, runtime.encoder_input_size)
    original_hw = np.array([image.shape[:2] for image in images])
    cfg = GridConfig(points_per_side=points_per_side)

    def once() -> None:
        generate_grid_masks(runtime, canvases, input_hw, original_hw, cfg)

    return timed_calls(once, runtime.device, batch, iterations, warmup=1)


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """What the GPU table measures."""

    models: list[str]
    precisions: list[str]
    batches: list[int]
    """Encoder-only rows per batch; the segment and grid rows use the largest."""
    iterations: int
    compile_modes: list[str] = dataclasses.field(default_factory=lambda: ["eager"])
    """eager, aot (model.aot_compile: AOTInductor packages cached per batch bucket)."""
    boxes_per_image: int = 10
    grid_points_per_side: int = 32


def gpu_table(cfg: LabelConfig, spec: TableSpec, work: Path) -> list[dict]:
    """Rows per (model, precision, compile mode) on ``cfg.model.device``: encoder-only per batch, segment + boxes
    and grid at the largest batch, each with images/s and GPU utilisation; compile seconds and the accuracy gate."""
    rows = []
    gate_images = [photo_like(600, 800, seed=s) for s in range(2)]
    batch = max(spec.batches)
    for name in spec.models:
        base = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name=name))
        base, _ = _with_weights(base, work, seed=0)
        fp32 = dataclasses.replace(base.model, precision="fp32", decoder_precision="fp32", aot_compile=False)
        reference = load_runtime(fp32, base.storage, 64)
        # The rows are about the encoder's precision: the decoder runs as configured, fp32 for "auto".
        decoder = "fp32" if base.model.decoder_precision == "auto" else base.model.decoder_precision
        for precision, mode in itertools.product(spec.precisions, spec.compile_modes):
            model = dataclasses.replace(
                base.model,
                precision=precision,
                decoder_precision=decoder,
                aot_compile=mode == "aot",
                compile_buckets=tuple(sorted(set(spec.batches))),
                cache_dir=str(work / "cache"),
            )
            runtime = load_runtime(model, base.storage, base.segment.decoder_chunk)
            compile_seconds = _warm_buckets(runtime, spec.batches)
            reduced = (runtime.precision, runtime.decoder_precision) != ("fp32", "fp32") or mode != "eager"
            gate = accuracy_gate(runtime, reference, gate_images) if reduced else None
            common = {
                "model": name,
                "precision": runtime.precision,
                "decoder_precision": runtime.decoder_precision,
                "compile": mode,
                "compile_seconds": compile_seconds,
                "gate_mask_iou": gate and gate.mask_iou_mean,
            }
            encoder = {}
            for b in spec.batches:
                encoder[b] = {"what": "encoder-only", **common, **encoder_throughput(runtime, b, spec.iterations)}
                rows.append(encoder[b])
            boxes = segment_throughput(runtime, batch, spec.boxes_per_image, spec.iterations)
            grid = grid_throughput(runtime, batch, spec.grid_points_per_side, max(1, spec.iterations // 4))
            named = {f"segment+{spec.boxes_per_image}box": boxes, f"grid{spec.grid_points_per_side}": grid}
            for what, row in named.items():
                fraction = row["images_per_second"] / encoder[batch]["images_per_second"]
                rows.append({"what": what, **common, **row, "fraction_of_encoder_only": round(fraction, 3)})
            del runtime
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return rows


def _warm_buckets(runtime, batches: list[int]) -> float | None:
    """Builds (or loads) the compiled encoder's package of every batch; the seconds spent building (None: eager)."""
    compiled = getattr(runtime, "compiled", None)
    if compiled is None:
        return None
    for b in batches:
        compiled.runner(b)
    return round(sum(compiled.compile_seconds.values()), 1)


def markdown_table(rows: list[dict]) -> str:
    """The rows as a markdown table (what the GPU check writes next to its JSON)."""
    lines = [
        "| what | model | precision | compile | batch | images/s | GPU util % | of encoder | gate IoU | compile s |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [r.get(k) for k in ("gpu_utilization", "fraction_of_encoder_only", "gate_mask_iou", "compile_seconds")]
        util, fraction, gate, seconds = ("" if v is None else f"{v:.3g}" for v in cells)
        lines.append(
            f"| {r['what']} | {r['model']} | {r['precision']} | {r['compile']} | {r['batch']} "
            f"| {r['images_per_second']:.1f} | {util} | {fraction} | {gate} | {seconds} |"
        )
    return "\n".join(lines)
