"""Train the AutoPPN proposal head on a frozen EfficientViT-SAM encoder: ``python -m jobs.train_autoppn``.

    python -m jobs.train_autoppn --train coco_train.json|sa1b_folder --val coco_val.json --output DIR|s3://... \\
        [--model l0 --weights URI] [--config FILE.yaml] [--set section.key=value ...]

Runs on Ray Train (CPU workers here, ``--set workers.use_gpu=true`` / ``workers.num_workers=N`` on a cluster).
Rerunning the same command resumes from the latest checkpoint in ``DIR/ray``. Writes ``DIR/autoppn.safetensors``
(use it with ``python -m jobs.label --prompts autoppn --set autoppn.weights=DIR/autoppn.safetensors``) and
``DIR/train.json``. Exit status: 0 trained, 1 training failed, 2 a bad flag, config, dataset or weight file.
"""

from __future__ import annotations

import argparse
import logging
import sys

from jobs.cli import prog
from pipeline.config.loading import load_config
from pipeline.config.sections import ConfigError
from pipeline.train.autoppn.config import TrainJobConfig, validate_train_config

FLAGS = {
    "train": "data.train",
    "val": "data.val",
    "output": "output",
    "model": "model.name",
    "weights": "model.weights",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog("jobs.train_autoppn"), description=__doc__.splitlines()[0])
    parser.add_argument("--train", help="COCO instances .json or SA-1B folder (local or s3://)")
    parser.add_argument("--val", help="held-out validation set, same formats")
    parser.add_argument("--output", help="output folder (local or s3://)")
    parser.add_argument("--model", help="SAM model whose frozen encoder feeds the head")
    parser.add_argument("--weights", help="SAM weights: local path, s3://... or hf://...")
    parser.add_argument("--config", help="YAML config file (sections as in jobs/configs/train_autoppn.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = [f"{key}='{getattr(args, flag)}'" for flag, key in FLAGS.items() if getattr(args, flag)]
    try:
        cfg = load_config(TrainJobConfig, args.config, overrides + args.set)
        validate_train_config(cfg)
        from pipeline.train.autoppn.training import prepare

        train, val, sha = prepare(cfg)
    except (ConfigError, ValueError, OSError) as e:
        print(f"samlabel: error: {e}", file=sys.stderr)
        return 2
    from pipeline.train.autoppn.training import run_training

    try:
        summary = run_training(cfg, train, val, sha)
    except Exception as e:  # training failed after it started: checkpoints stay, rerun to resume
        logging.getLogger("samlabel").exception("training failed")
        print(f"samlabel: error: training failed ({type(e).__name__}: {e}); rerun to resume", file=sys.stderr)
        return 1
    metrics = summary["metrics"]
    print(
        f"samlabel: trained AutoPPN for {metrics.get('epoch')} epochs on {summary['train_images']} images; "
        f"validation recall@{cfg.val.iou} {metrics.get('val_recall', float('nan')):.3f} "
        f"({cfg.val.mask_source} masks); head in {cfg.output.rstrip('/')}/autoppn.safetensors"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
