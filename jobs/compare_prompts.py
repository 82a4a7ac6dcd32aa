"""Compare segment-everything prompt sources on the same images and weights: ``python -m jobs.compare_prompts``.

    python -m jobs.compare_prompts --input DIR|s3://...|manifest --model l0 --weights URI \\
        [--set yolo.weights=URI] [--set autoppn.weights=URI] [--set grid.points_per_side=32] [--limit N] [--json FILE]

Runs in this process (no Ray), one image at a time, on CUDA when present else CPU. grid always runs; yolo and
autoppn run when their weights are set. Prints a table and writes the JSON report
(see ``pipeline.evaluation.compare_prompts``).
Exit status: 0 done, 2 a bad flag, input or weight file.
"""

from __future__ import annotations

import argparse
import io
import json
import sys

import numpy as np
from PIL import Image, ImageOps

from jobs.cli import prog
from pipeline.config.loading import load_config
from pipeline.config.sections import ConfigError, LabelConfig
from pipeline.io.listing import list_images
from pipeline.io.storage import read_bytes
from pipeline.models.checkpoint import CheckpointError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog("jobs.compare_prompts"), description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="folder, file://, s3://bucket/prefix, or a manifest")
    parser.add_argument("--model", default="efficientvit-sam-l0", help="SAM model name")
    parser.add_argument("--weights", help="SAM weights: local path, s3://... or hf://...")
    parser.add_argument("--limit", type=int, default=8, help="images compared (default 8)")
    parser.add_argument("--json", help="where to write the JSON report (local path)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="labeling config")
    args = parser.parse_args(argv)
    overrides = [f"input.uri='{args.input}'", "output.uri=unused", f"model.name={args.model}"]
    overrides += [f"model.weights='{args.weights}'"] if args.weights else []
    try:
        cfg = load_config(LabelConfig, None, overrides + args.set)
        report = _run(cfg, args.limit)
    except (ConfigError, CheckpointError, ValueError, OSError) as e:
        print(f"samlabel: error: {e}", file=sys.stderr)
        return 2
    from pipeline.evaluation.compare_prompts import table

    print(table(report["methods"]))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
    return 0


def _run(cfg: LabelConfig, limit: int) -> dict:
    from pipeline.evaluation.compare_prompts import compare_methods
    from pipeline.prompts.autoppn.checkpoint import load_head
    from pipeline.prompts.yolo import Detector
    from pipeline.runtime.load import load_runtime

    uris = list_images(cfg.input.uri, cfg.storage, cfg.input.extensions, cfg.input.manifest_column)
    images = [_image(uri, cfg) for uri in uris["image_uri"].to_pylist()[:limit]]
    runtime = load_runtime(cfg.model, cfg.storage, cfg.segment.decoder_chunk)
    device = "cpu" if runtime.device.type == "cpu" else str(runtime.device.index or 0)
    detector = Detector(cfg.yolo, cfg.storage, device, cfg.model.cache_dir) if cfg.yolo.weights else None
    head = None
    if cfg.autoppn.weights:
        head, _ = load_head(cfg.autoppn.weights, cfg.storage, cache_dir=cfg.model.cache_dir, device=runtime.device)
    methods = compare_methods(runtime, images, cfg.grid, detector, head, cfg.autoppn, cfg.segment.decoder_chunk)
    settings = {k: cfg.__dict__[k].__dict__ for k in ("model", "grid", "autoppn", "yolo")}
    return {"device": str(runtime.device), "images": len(images), "settings": settings, "methods": methods}


def _image(uri: str, cfg: LabelConfig) -> np.ndarray:
    with Image.open(io.BytesIO(read_bytes(uri, cfg.storage))) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


if __name__ == "__main__":
    sys.exit(main())
