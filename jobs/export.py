"""Export a model to ONNX, or a large run's COCO shards as one file.

    python -m jobs.export [onnx] --model NAME [--weights URI] --output DIR [--opset 17] [--exporter torchscript|dynamo]
    python -m jobs.export coco --run URI --to URI

``onnx`` (the default) writes ``encoder.onnx``, ``decoder.onnx`` and ``onnx_card.json`` to the local folder DIR (see
:mod:`pipeline.runtime.export`). ``coco`` merges the shards of a run (``coco/index.json``, written instead of
``coco.json`` for runs past ``output.coco_max_images``) into one COCO file, streaming, as a smaller run would have
written it. Exit status 0 on success, 2 with one line on stderr for a bad flag, model name, weight file, run or
output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from jobs.cli import prog
from pipeline.models import create_model, resolve_name
from pipeline.runtime.export import export_onnx


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=prog("jobs.export"), description="Export EfficientViT-SAM to ONNX (encoder + decoder).")
    parser.add_argument("--model", required=True, help="registry name, e.g. efficientvit-sam-l0 or l0")
    parser.add_argument("--weights", help="checkpoint URI (local path, s3://, hf://); random weights when omitted")
    parser.add_argument("--output", required=True, help="local output folder (file:// accepted)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17; the dynamo exporter uses >= 18)")
    parser.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript")
    return parser


def _local_dir(uri: str) -> Path:
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    if "://" in uri:
        raise ValueError(f"--output must be a local folder or file:// URI, got {uri!r}")
    return Path(uri)


def _coco_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=prog("jobs.export") + " coco", description="Merge a run's COCO shards into one file.")
    parser.add_argument("--run", required=True, help="the run's output folder (local, file:// or s3://)")
    parser.add_argument("--to", required=True, help="the merged COCO file to write (local, file:// or s3://)")
    return parser


def export_coco(argv: list[str]) -> int:
    from pipeline.config.sections import StorageConfig
    from pipeline.io import storage as st
    from pipeline.io.coco import COCO_DIR, COCO_INDEX, merge_coco_shards

    try:
        args = _coco_parser().parse_args(argv)
        storage = StorageConfig()
        if not st.exists(st.join_uri(args.run, COCO_DIR, COCO_INDEX), storage):
            raise ValueError(f"{args.run} has no {COCO_DIR}/{COCO_INDEX} (a run with one coco.json needs no merge)")
        counts = merge_coco_shards(args.run, args.to, storage)
    except (_UsageError, ValueError, OSError) as exc:
        print(f"jobs.export: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.to}: {counts['images']} images, {counts['annotations']} annotations")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["coco"]:
        return export_coco(argv[1:])
    if argv[:1] == ["onnx"]:
        argv = argv[1:]
    try:
        args = _parser().parse_args(argv)
        name = resolve_name(args.model)
        out_dir = _local_dir(args.output)
        model = create_model(name)
        if args.weights:
            # Imported here: checkpoint loading pulls in storage clients that a random-weight export does not need.
            from pipeline.models.checkpoint import load_checkpoint

            load_checkpoint(model, args.weights, model_name=name)
        card = export_onnx(model, out_dir, args.opset, model_name=name, exporter=args.exporter)
    except (_UsageError, ValueError, OSError, ImportError) as exc:
        print(f"jobs.export: error: {exc}", file=sys.stderr)
        return 2
    files = ", ".join(card[key]["file"] for key in ("encoder", "decoder"))
    print(f"wrote {files} and onnx_card.json to {out_dir} ({name}, opset {card['opset']}, {card['exporter']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
