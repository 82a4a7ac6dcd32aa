"""Export a model to ONNX for the onnxruntime / TensorRT backends.

    python -m jobs.export --model NAME [--weights URI] --output DIR [--opset 17] [--exporter torchscript|dynamo]

Writes ``encoder.onnx``, ``decoder.onnx`` and ``onnx_card.json`` to the local folder DIR (see
:mod:`pipeline.runtime.export`). Exit status 0 on success, 2 with one line on stderr for a bad flag, model name,
weight file or output folder.
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


def main(argv: list[str] | None = None) -> int:
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
