"""Command-line plumbing shared by the jobs: the labeling flags, config loading from them, logging with redaction."""

from __future__ import annotations

import argparse
import logging
import os

from pipeline.config.loading import load_config
from pipeline.config.sections import LabelConfig
from pipeline.redact import install_log_redaction

FLAGS = {
    "input": "input.uri",
    "output": "output.uri",
    "model": "model.name",
    "weights": "model.weights",
    "prompts": "prompts.mode",
    "prompts_file": "prompts.file",
}
LOG_LEVEL_ENV = "SAMLABEL_LOG_LEVEL"


def add_labeling_arguments(parser: argparse.ArgumentParser, output_help: str) -> None:
    """The flags of ``jobs.label``; ``--output`` is described by the caller (a run folder or a nightly root)."""
    parser.add_argument("--input", help="folder, file://, s3://bucket/prefix, or a .txt/.csv/.parquet manifest")
    parser.add_argument("--output", help=output_help)
    parser.add_argument("--config", help="YAML config file (sections as in jobs/configs/label.yaml)")
    parser.add_argument("--model", help="efficientvit-sam-l0|l1|l2|xl0|xl1 (or l0 ...), or a test/demo model")
    parser.add_argument("--weights", help="local path, s3://... or hf://owner/repo/file")
    parser.add_argument("--prompts", choices=["grid", "boxes", "yolo", "text", "autoppn"], help="prompt source")
    parser.add_argument("--prompts-file", help="boxes for --prompts boxes: COCO .json or .parquet")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value"
    )
    parser.add_argument("--summary-json", metavar="URI", help="also write the JSON summary line to this file/URI")


def config_from_args(args: argparse.Namespace) -> LabelConfig:
    """Defaults < ``--config`` < the named flags < ``--set``; ConfigError naming the key on a bad value."""
    overrides = [f"{key}={_yaml_str(getattr(args, flag))}" for flag, key in FLAGS.items() if getattr(args, flag)]
    return load_config(LabelConfig, args.config, overrides + args.set)


def setup_logging() -> None:
    """INFO logs (``SAMLABEL_LOG_LEVEL=DEBUG`` adds tracebacks of failed runs), with secrets redacted."""
    import ray.data  # noqa: F401 - configures Ray Data's loggers, whose console handler gets the filter below

    level = os.environ.get(LOG_LEVEL_ENV, "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()


def _yaml_str(value: str) -> str:
    """Quotes a flag value so that --set parsing keeps it a string (e.g. a folder named 'null' or '1')."""
    return "'" + value.replace("'", "''") + "'"
