"""Evaluate a model or a labeling run against COCO ground truth: ``python -m jobs.evaluate``.

    python -m jobs.evaluate --gt val.json --images val/ --model demo-shapes --output eval.json        # box + point
    python -m jobs.evaluate --gt val.json --labels out/run --output eval.json     # score a labeling run's outputs

Protocols (``--protocols box,point,detector,everything``) are those of EfficientViT-SAM and SAM: GT-box mIoU,
RITM-clicker point mIoU at 1/3/5 clicks, detector-box mask AP, class-agnostic mask AR@10/100/1000 (see
``pipeline/evaluation/evaluate.py``). Writes the results JSON to ``--output`` (local or s3://) and prints the headline
numbers. ``--compare CARD.json`` also prints the box mIoU next to a model card's committed validation number.
Exit status 0 on success, 1 when ``--compare`` finds a difference above ``--tolerance``, 2 on a bad flag, file or
request (one line).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jobs.cli import prog
from pipeline.config.sections import ConfigError, ModelConfig, StorageConfig
from pipeline.evaluation.evaluate import EvalRequest, evaluate, summary_lines
from pipeline.io import storage as st
from pipeline.models import resolve_name


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog("jobs.evaluate"), description=__doc__.splitlines()[0])
    parser.add_argument("--gt", required=True, help="COCO instances JSON (local or s3://)")
    parser.add_argument("--images", help="folder or s3:// prefix the GT file_names are relative to")
    parser.add_argument("--output", help="results JSON to write (local or s3://)")
    parser.add_argument("--protocols", help="comma list of box, point, detector, everything")
    parser.add_argument("--model", help="registered model to run (e.g. demo-shapes, efficientvit-sam-l0)")
    parser.add_argument("--weights", help="weight file (default: the model card's)")
    parser.add_argument("--labels", help="a completed labeling run's --output to score instead of the model")
    parser.add_argument("--detections", help="COCO results JSON of detector boxes (detector protocol)")
    parser.add_argument("--clicks", default="1,3,5", help="click counts for the point protocol")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--compare", help="model card JSON with committed validation numbers to compare box mIoU with")
    parser.add_argument("--tolerance", type=float, default=0.02, help="largest box mIoU difference --compare accepts")
    parser.add_argument("--s3-endpoint-url", help="S3-compatible endpoint")
    return parser.parse_args(argv)


def build_request(args: argparse.Namespace) -> EvalRequest:
    try:
        clicks = tuple(int(c) for c in args.clicks.split(","))
    except ValueError:
        raise ConfigError(f"--clicks must be a comma list of integers, got {args.clicks!r}") from None
    model = None
    if args.model:
        model = ModelConfig(name=resolve_name(args.model), weights=args.weights, device=args.device)
    protocols = tuple(p.strip() for p in args.protocols.split(",")) if args.protocols else ()
    return EvalRequest(
        gt=args.gt,
        images=args.images,
        protocols=protocols,
        model=model,
        labels=args.labels,
        detections=args.detections,
        clicks=clicks,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    storage = StorageConfig(s3_endpoint_url=args.s3_endpoint_url)
    try:
        results = evaluate(build_request(args), storage)
    except (ValueError, OSError) as e:
        print(f"evaluate: error: {e}", file=sys.stderr)
        return 2
    for line in summary_lines(results):
        print(f"evaluate: {line}")
    if args.output:
        st.write_bytes(args.output, (json.dumps(results, indent=2) + "\n").encode(), storage)
        print(f"evaluate: results in {args.output}")
    return compare(results, args.compare, args.tolerance) if args.compare else 0


def compare(results: dict, card_path: str, tolerance: float) -> int:
    """Prints the box mIoU next to the committed validation number; 1 when they differ by more than ``tolerance``."""
    card = json.loads(Path(card_path).read_text())
    committed = card["validation"]["box"]["miou"]["all"]
    if "box" not in results:
        print("evaluate: error: --compare needs the box protocol", file=sys.stderr)
        return 2
    measured = results["box"]["miou"]["all"]
    ok = abs(measured - committed) <= tolerance
    verdict = "within" if ok else "NOT within"
    print(
        f"evaluate: box mIoU {measured:.4f} vs committed validation {committed:.4f} ({card['name']}, "
        f"{card['validation']['data']}): difference {measured - committed:+.4f}, {verdict} {tolerance}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
