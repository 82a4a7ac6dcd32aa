#!/usr/bin/env bash
# Fetches the wheels scripts/gpu_check.sh installs on a GPU machine without network, into .whl/ (or $1):
# pycocotools (COCO RLE strings, ~0.5 MB) and segment-anything (the grid's point and crop helpers, ~40 KB), for
# CPython 3.12 on x86-64 Linux. Everything else the check needs is in the GPU image already.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-.whl}
python=${PYTHON:-python3}
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$target" \
  pycocotools==2.0.11 segment-anything==1.0
ls -l "$target"
