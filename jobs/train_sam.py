"""Train a registered SAM architecture end to end on COCO instance masks: ``python -m jobs.train_sam``.

    python -m jobs.train_sam --train-json shapes/train.json --images shapes/train --out demo_shapes.safetensors

Every TrainConfig field is a flag (``--steps 3000``, ``--lr 0.002``, ``--init earlier.safetensors`` ...). The run
is deterministic for a given seed and thread count. Writes the weights (safetensors state dict) and
``<out>.log.json`` (config, loss curve).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import torch

from jobs.cli import prog
from pipeline.models.checkpoint import CheckpointError
from pipeline.train.sam.data import CocoMasks
from pipeline.train.sam.training import TrainConfig, train


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog("jobs.train_sam"), description=__doc__.splitlines()[0])
    parser.add_argument("--train-json", required=True, help="COCO instances file with RLE or polygon masks")
    parser.add_argument("--images", required=True, help="folder the file_names are relative to")
    parser.add_argument("--out", required=True, help="output .safetensors path")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.type == "bool":
            parser.add_argument(flag, type=lambda v: v.lower() in ("1", "true", "yes"), default=field.default)
        else:
            kind = {"int": int, "float": float, "str": str}[field.type]
            parser.add_argument(flag, type=kind, default=field.default)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    try:
        data = CocoMasks(args.train_json, args.images)
    except (OSError, ValueError) as e:
        print(f"train_sam: error: {e}", file=sys.stderr)
        return 2
    try:
        summary = train(data, Path(args.out), cfg)
    except CheckpointError as e:  # --init: raised before the first step
        print(f"train_sam: error: --init {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # --train-only naming no parameter: raised before the first step
        print(f"train_sam: error: {e}", file=sys.stderr)
        return 2
    print(f"train_sam: {cfg.steps} steps in {summary['seconds']} s; weights in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
