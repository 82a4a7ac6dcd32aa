"""What ``--prompts text`` costs: images/s of the text detector (its actor's work on decoded images, the class
queries embedded once beforehand) and of the segment stage on the boxes it finds (encoder, box prompts, decoder,
upsampling, RLE), and the two in sequence. Without ``text.weights`` the detector is OWLv2-base's architecture with
seeded random weights (the cost of the real model, not its boxes)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.bench.data import photo_like
from pipeline.bench.text_models import write_random_owlv2_base
from pipeline.config.sections import LabelConfig
from pipeline.ontology import NamedClass, read_classes
from pipeline.prompts.text import TextDetector
from pipeline.runtime.load import load_runtime
from pipeline.segment.boxes import segment_boxes
from pipeline.segment.predictor import EncodedImages, prepare_images

DEFAULT_CLASSES = ("person", "forklift", "pallet")


def text_prompt_bench(cfg: LabelConfig, images: int, size_hw: tuple[int, int], work: Path, seed: int) -> dict:
    """Times ``images`` photo-like images through the detector, then the segment stage on its boxes."""
    from pipeline.bench.benchmark import _with_weights

    cfg, sam_weights = _with_weights(cfg, work, seed)
    text = cfg.text
    if not text.weights:
        text = dataclasses.replace(text, weights=str(write_random_owlv2_base(work / "owlv2-base-random", seed)))
    given = text.classes or text.file
    classes = read_classes(text, cfg.storage) if given else [NamedClass(c, (c,)) for c in DEFAULT_CLASSES]
    device = torch.device("cuda" if cfg.model.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    pictures = [photo_like(*size_hw, seed=seed + i) for i in range(images)]
    original_hw = np.array([p.shape[:2] for p in pictures])
    runtime = load_runtime(cfg.model, cfg.storage, cfg.segment.decoder_chunk)
    canvases, input_hw = prepare_images(pictures, runtime.encoder_input_size)
    # The detector reads the encoder's copy of each image, as in the labeling graph.
    resized = [canvases[i, : input_hw[i][0], : input_hw[i][1]] for i in range(images)]

    start = time.perf_counter()
    detector = TextDetector(text, classes, cfg.storage, device, cfg.model.cache_dir)
    load_seconds = time.perf_counter() - start
    detector.detect(resized[:1], original_hw[:1])  # warm-up
    start = time.perf_counter()
    found = []
    for s in range(0, images, text.batch_size):
        found += detector.detect(resized[s : s + text.batch_size], original_hw[s : s + text.batch_size])
    detect_seconds = time.perf_counter() - start

    boxes = [d.boxes_xyxy for d in found]
    warm = EncodedImages(runtime.encode(canvases[:1], input_hw[:1]), original_hw[:1])
    segment_boxes(runtime, warm, boxes[:1], cfg.boxes)
    start = time.perf_counter()
    encoded = EncodedImages(runtime.encode(canvases, input_hw), original_hw)
    masks = segment_boxes(runtime, encoded, boxes, cfg.boxes)
    segment_seconds = time.perf_counter() - start
    return {
        "device": str(device),
        "images": images,
        "size_hw": list(size_hw),
        "sam": {"model": cfg.model.name, "weights": sam_weights, "precision": runtime.precision},
        "detector": {
            "weights": cfg.text.weights or "OWLv2-base architecture, random (seeded)",
            "classes": [c.name for c in classes],
            "load_and_embed_queries_seconds": round(load_seconds, 2),
            "images_per_second": round(images / detect_seconds, 3),
            "boxes_per_image": round(sum(len(b) for b in boxes) / images, 1),
        },
        "segment": {
            "images_per_second": round(images / segment_seconds, 3),
            "masks_per_image": round(sum(len(m.rles) for m in masks) / images, 1),
        },
        "end_to_end_images_per_second": round(images / (detect_seconds + segment_seconds), 3),
    }
