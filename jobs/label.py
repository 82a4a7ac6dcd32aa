"""Label an image bucket with EfficientViT-SAM: ``python -m jobs.label --input URI --output URI [...]``.

The same flags work under ``ray job submit --working-dir . -- python -m jobs.label ...``. Rerunning into the same
``--output`` resumes an interrupted run. Exit status: 0 the run is complete (now or already), 1 the run failed,
2 a bad flag, config, URI or weight file (reported before any image is read).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from pipeline.config import (
    ConfigError,
    LabelConfig,
    default_run_id,
    label_fingerprint,
    load_config,
    to_dict,
    validate_label_config,
)
from pipeline.inputs import plan_inputs, remaining
from pipeline.io.run_output import prepare_output
from pipeline.prompt_models import check_prompt_model
from pipeline.run import run_and_commit
from pipeline.runtime import resolve_weights, verify_weights

OFFICIAL_L0 = "hf://mit-han-lab/efficientvit-sam/efficientvit_sam_l0.pt"
FLAGS = {
    "input": "input.uri",
    "output": "output.uri",
    "model": "model.name",
    "weights": "model.weights",
    "prompts": "prompts.mode",
    "prompts_file": "prompts.file",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jobs.label", description=__doc__.splitlines()[0])
    parser.add_argument("--input", help="folder, file://, s3://bucket/prefix, or a .txt/.csv/.parquet manifest")
    parser.add_argument("--output", help="output folder (local, file:// or s3://)")
    parser.add_argument("--config", help="YAML config file (sections as in jobs/configs/label.yaml)")
    parser.add_argument("--model", help="efficientvit-sam-l0|l1|l2|xl0|xl1 (or l0 ...), or a test/demo model")
    parser.add_argument("--weights", help="local path, s3://... or hf://owner/repo/file")
    parser.add_argument("--prompts", choices=["grid", "boxes", "yolo", "autoppn"], help="prompt source")
    parser.add_argument("--prompts-file", help="boxes for --prompts boxes: COCO .json or .parquet")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = [f"{key}={_yaml_str(getattr(args, flag))}" for flag, key in FLAGS.items() if getattr(args, flag)]
    start = time.time()
    try:
        cfg = load_config(LabelConfig, args.config, overrides + args.set)
        validate_label_config(cfg)
        weights_sha256 = verify_weights(cfg.model, cfg.storage)
        prompt_model = check_prompt_model(cfg)
        plan = plan_inputs(cfg, prompt_model.categories)
        fingerprint = label_fingerprint(cfg, weights_sha256, prompt_model.weights_sha256)
        state = prepare_output(cfg.output.uri, cfg.storage, fingerprint, to_dict(cfg))
    except (ConfigError, ValueError, OSError) as e:
        print(f"samlabel: error: {e}", file=sys.stderr)
        return 2
    if state.complete:
        print(f"samlabel: {cfg.output.uri} already holds this completed run; nothing to do")
        return 0
    todo = remaining(plan.table, state.done_image_ids)
    if weights_sha256 is None:
        print(
            f"samlabel: warning: {cfg.model.name} runs with random weights (no --weights), so its masks are "
            f"meaningless; for real labels use e.g. --model efficientvit-sam-l0 --weights {OFFICIAL_L0}"
        )
    run_id = default_run_id(cfg, weights_sha256, prompt_model.weights_sha256)
    print(
        f"samlabel: {todo.num_rows} of {plan.table.num_rows} images to label with {cfg.model.name} "
        f"({cfg.prompts.mode} prompts) into {cfg.output.uri}"
    )
    info = {
        "run_id": run_id,
        "fingerprint": fingerprint,
        "config": to_dict(cfg),
        "model": {
            "name": cfg.model.name,
            "weights": resolve_weights(cfg.model),
            "weights_sha256": weights_sha256,
            "backend": cfg.model.backend,
            "precision": cfg.model.precision,
        },
        "prompt_model": {"weights": prompt_model.weights_uri, "weights_sha256": prompt_model.weights_sha256},
    }
    try:
        summary = run_and_commit(cfg, plan, todo, info, started_at=start)
    except Exception as e:  # the run failed after work started: no _SUCCESS, rerun to resume
        logging.getLogger("samlabel").exception("run failed")
        print(
            f"samlabel: error: the run failed ({type(e).__name__}: {e}); rerun the same command to resume",
            file=sys.stderr,
        )
        return 1
    print(summary)
    return 0


def _yaml_str(value: str) -> str:
    """Quotes a flag value so that --set parsing keeps it a string (e.g. a folder named 'null' or '1')."""
    return "'" + value.replace("'", "''") + "'"


if __name__ == "__main__":
    sys.exit(main())
