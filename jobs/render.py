"""Draw one labeled image with its masks from a run's Parquet output: ``python -m jobs.render``.

    python -m jobs.render --output out/demo --image-id val_00003.png --out overlay.png

Mask fills and outlines, boxes and ``category score`` labels, highest score first. ``--output`` is the labeling
run's output folder (local or s3://); ``--image-id`` is the ``image_id`` column (the path relative to the input).
Exit status 0, or 2 with one line when the run or the image id is not there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs.cli import prog
from pipeline.config.sections import StorageConfig
from pipeline.report.write import render_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog("jobs.render"), description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="the labeling run's output folder (local or s3://)")
    parser.add_argument("--image-id", required=True, help="image_id as in annotations/ (path relative to the input)")
    parser.add_argument("--out", default="overlay.png", help="PNG file to write (default overlay.png)")
    parser.add_argument("--max-side", type=int, default=1024, help="scale the drawing down to this long side")
    parser.add_argument("--s3-endpoint-url", help="S3-compatible endpoint")
    args = parser.parse_args(argv)
    try:
        png = render_image(
            args.output, StorageConfig(s3_endpoint_url=args.s3_endpoint_url), args.image_id, args.max_side
        )
    except (ValueError, OSError) as e:
        print(f"render: error: {e}", file=sys.stderr)
        return 2
    Path(args.out).write_bytes(png)
    print(f"render: {args.image_id} drawn to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
