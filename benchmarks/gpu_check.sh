#!/usr/bin/env bash
# The one-shot GPU check (benchmarks/README.md, "The GPU check"): on the lent GPU machine, in the project's
# root, after benchmarks/gpu_pack.sh prepared .gpu_faces/ and .whl/ here:
#     bash benchmarks/gpu_check.sh                 # results in $OUT (summary.md, log, generators)
#     bash benchmarks/gpu_check.sh --smoke --out DIR   # the same steps, tiny, on this CPU (~1-2 min)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=full
out="${OUT:-runs/gpu_check/out}"
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) mode=smoke ;;
        --out) out="$2"; shift ;;
        *) echo "usage: bash benchmarks/gpu_check.sh [--smoke] [--out DIR]" >&2; exit 2 ;;
    esac
    shift
done
python="${PYTHON:-python3}"
mkdir -p "$out"

if [ "$mode" = full ]; then
    # Check everything before spending device time on it: the GPU first, then the carried packages and faces.
    "$python" -c 'import sys, torch; torch.cuda.is_available() or sys.exit("gpu_check: torch sees no CUDA GPU here; the full mode is for the GPU machine (--smoke runs on a CPU)")'
    # The GPU machine has torch, torchvision, matplotlib, tqdm, pillow and safetensors, not the rest.
    if [ -d .whl ]; then
        "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    "$python" - <<'PY'
import importlib.util
import sys

needed = ("papermill", "ipykernel", "nbclient", "kagglehub", "safetensors", "matplotlib", "torchvision", "pytest")
missing = [name for name in needed if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"gpu_check: missing {', '.join(missing)}: carry them as wheels in .whl/ (benchmarks/gpu_pack.sh)")
PY
    if [ ! -d .gpu_faces/images ]; then
        echo "gpu_check: no .gpu_faces/images: run benchmarks/gpu_pack.sh first and carry .gpu_faces" >&2
        exit 3
    fi
fi

export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
"$python" benchmarks/gpu_check.py --mode "$mode" --out "$out" 2>&1 | tee "$out/gpu_check.log"
