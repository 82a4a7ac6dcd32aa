"""The GPU table: per model and precision, encoder-only images/s and images/s of the segment stage
with box prompts (encoder → box prompts → mask decoder → upsampling → RLE, i.e. the labeling actor's work on
decoded images), the ratio of the two, GPU utilisation and the accuracy gate against fp32 on the same weights.

Read/decode are not in the segment figure: in the labeling job they run as parallel CPU tasks next to the GPU
actor. Runs on CPU too (slowly), which is how it is tested.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from pipeline.bench.benchmark import _with_weights
from pipeline.bench.data import photo_like, random_boxes
from pipeline.bench.throughput import encoder_throughput, timed_calls
from pipeline.config.sections import BoxesConfig, LabelConfig
from pipeline.runtime.accuracy import accuracy_gate
from pipeline.runtime.load import load_runtime
from pipeline.segment.boxes import segment_boxes_in_steps, step_slices
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


def gpu_table(
    cfg: LabelConfig, models: list[str], precisions: list[str], batch: int, iterations: int, work: Path
) -> list[dict]:
    """One encoder-only and one segment row per (model, precision), on ``cfg.model.device``."""
    rows = []
    gate_images = [photo_like(600, 800, seed=s) for s in range(2)]
    for name in models:
        base = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name=name))
        base, _ = _with_weights(base, work, seed=0)
        fp32 = dataclasses.replace(base.model, precision="fp32", decoder_precision="fp32")
        reference = load_runtime(fp32, base.storage, 64)
        # The rows are about the encoder's precision: the decoder runs as configured, fp32 for "auto".
        decoder = "fp32" if base.model.decoder_precision == "auto" else base.model.decoder_precision
        for precision in precisions:
            model = dataclasses.replace(base.model, precision=precision, decoder_precision=decoder)
            runtime = load_runtime(model, base.storage, base.segment.decoder_chunk)
            reduced = (runtime.precision, runtime.decoder_precision) != ("fp32", "fp32")
            gate = accuracy_gate(runtime, reference, gate_images) if reduced else None
            common = {
                "model": name,
                "precision": runtime.precision,
                "decoder_precision": runtime.decoder_precision,
                "gate_mask_iou": gate and gate.mask_iou_mean,
            }
            encoder = {"what": "encoder-only", **common, **encoder_throughput(runtime, batch, iterations)}
            boxes = {"what": "segment+10box", **common, **segment_throughput(runtime, batch, 10, iterations)}
            boxes["fraction_of_encoder_only"] = round(boxes["images_per_second"] / encoder["images_per_second"], 3)
            rows += [encoder, boxes]
            del runtime
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return rows
