#!/usr/bin/env bash
# The GPU check in one command, for a fresh GPU machine without network:
#   scripts/gpu_check.sh OUT_DIR [--device cpu] [--budget-seconds N]
# Its Python needs torch, numpy, pyarrow, pillow, pyyaml, safetensors, huggingface_hub and pytest; what the project
# needs beyond that comes as wheels in .whl/ (scripts/gpu_wheels.sh fetches them where there is network) and is
# installed into a private folder. It runs `pytest -m gpu`, then the GPU table, and writes gpu_check.json and
# gpu_check.md to OUT_DIR. --device cpu is the dry run (tiny model, seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
wheels=${SAMLABEL_WHEELS:-.whl}
if compgen -G "$wheels/*.whl" >/dev/null; then
  site=$(mktemp -d)
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheels"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m pipeline.bench.gpu_check "$@"
