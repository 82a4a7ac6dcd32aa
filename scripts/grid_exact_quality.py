"""Grid output quality and cost: the default (filtered on low-res logits), ``grid.exact`` and SAM's reference
generator on the same images and weights, scored as class-agnostic mask AR@100/AR@1000 against COCO ground truth.

    python scripts/grid_exact_quality.py --gt out/demo/shapes/val.json --images out/demo/shapes/val \
        --model demo-shapes --points-per-side 32 --limit 200

Prints one JSON line per side (seconds, masks per image, AR) and writes them to ``--output`` if given. The three
sides run one after the other in this process, one image at a time, on the CPU in fp32.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO

from pipeline.config.sections import GridConfig, ModelConfig, StorageConfig
from pipeline.evaluation.coco_metrics import mask_ar
from pipeline.runtime.capability import cpu_report
from pipeline.runtime.torch_backend import TorchSam
from pipeline.runtime.weights import load_model
from pipeline.segment.grid import generate_grid_masks
from pipeline.segment.predictor import prepare_images
from pipeline.segment.reference import ReferenceMaskGenerator, generator_kwargs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", required=True, help="COCO instances JSON")
    parser.add_argument("--images", required=True, help="folder the GT file_names are relative to")
    parser.add_argument("--model", default="demo-shapes")
    parser.add_argument("--weights", help="weight file (default: the model card's)")
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--limit", type=int, help="first N images of the GT file")
    parser.add_argument("--sides", default="default,exact,reference")
    parser.add_argument("--output", help="JSON file for the results")
    args = parser.parse_args()

    gt = COCO(args.gt)
    image_ids = sorted(gt.getImgIds())[: args.limit]
    sam, _ = load_model(ModelConfig(name=args.model, weights=args.weights), StorageConfig())
    runtime = TorchSam(sam)
    cfg = GridConfig(points_per_side=args.points_per_side)
    results = []
    for side in args.sides.split(","):
        detections, start = [], time.perf_counter()
        for image_id in image_ids:
            info = gt.loadImgs(image_id)[0]
            image = np.asarray(Image.open(Path(args.images) / info["file_name"]).convert("RGB"))
            for rle, score in _masks(side, sam, runtime, image, cfg):
                detections.append({"image_id": image_id, "category_id": 1, "segmentation": rle, "score": score})
        seconds = time.perf_counter() - start
        ar = mask_ar(gt, detections, max_dets=(100, 1000))
        result = {
            "side": side,
            "images": len(image_ids),
            "seconds": round(seconds, 2),
            "masks_per_image": round(len(detections) / max(len(image_ids), 1), 2),
            **{k: round(v, 4) for k, v in ar.items()},
            "points_per_side": args.points_per_side,
            "model": args.model,
            "machine": {**cpu_report(), "torch_threads": torch.get_num_threads()},
        }
        print(json.dumps(result))
        results.append(result)
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1) + "\n")


def _masks(side: str, sam, runtime: TorchSam, image: np.ndarray, cfg: GridConfig) -> list[tuple[dict, float]]:
    """(COCO RLE, predicted IoU) of each mask one side keeps for ``image``."""
    if side == "reference":
        masks = ReferenceMaskGenerator(sam, **generator_kwargs(cfg)).generate(image)
        return [(m["segmentation"], float(m["predicted_iou"])) for m in masks]
    grid = GridConfig(**{**cfg.__dict__, "exact": side == "exact"})
    canvases, input_hw = prepare_images([image], runtime.encoder_input_size)
    masks = generate_grid_masks(runtime, canvases, input_hw, np.array([image.shape[:2]]), grid)[0]
    return list(zip(masks.rles, masks.predicted_iou.astype(float).tolist(), strict=True))


if __name__ == "__main__":
    main()
