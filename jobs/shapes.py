"""Generate the synthetic "shapes" dataset in COCO format: ``python -m jobs.shapes``.

    python -m jobs.shapes --out out/shapes --split val --num-images 200 --seed 1

Writes ``<out>/<split>/<split>_NNNNN.png`` and ``<out>/<split>.json`` (COCO instances, RLE masks). Deterministic:
the same split, count and seed give the same files. The demo model was trained on ``--split train --num-images
1500 --seed 0`` and validated on ``--split val --num-images 200 --seed 1`` (see pipeline/models/weights/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs.cli import prog
from pipeline.datasets.shapes import write_split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog("jobs.shapes"), description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--split", default="val", help="split name (folder and JSON name)")
    parser.add_argument("--num-images", type=int, default=200, help="number of images")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    args = parser.parse_args(argv)
    try:
        path = write_split(Path(args.out), args.split, args.num_images, args.seed)
    except (ValueError, OSError) as e:
        print(f"shapes: error: {e}", file=sys.stderr)
        return 2
    print(f"shapes: {args.num_images} images in {Path(args.out) / args.split}, annotations in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
