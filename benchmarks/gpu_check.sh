#!/usr/bin/env bash
# The GPU check (benchmarks/README.md, "The GPU check"), for anyone with a CUDA GPU. In the project's root:
#     bash benchmarks/gpu_check.sh --data DIR           # DIR: a folder of face images, e.g. the Kaggle set's
#     bash benchmarks/gpu_check.sh --pack runs/gpu_pack # offline: the wheels and faces benchmarks/gpu_pack.sh wrote
#     bash benchmarks/gpu_check.sh --smoke              # the same steps, tiny, on a CPU (about 1-2 minutes)
# --out DIR: where summary.md, gpu_check.log and the generators go (default runs/gpu_check/<mode>-<date>-<time>);
# --train-minutes N: the cap of the training run (default 15). PYTHON: the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: bash benchmarks/gpu_check.sh [--smoke] [--out DIR] [--data DIR] [--pack DIR] [--train-minutes N]"
mode=full results="" data="" pack="" minutes=""
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) mode=smoke ;;
        --out | --data | --pack | --train-minutes)
            [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
            case "$1" in
                --out) results="$2" ;;
                --data) data="$2" ;;
                --pack) pack="$2" ;;
                --train-minutes) minutes="$2" ;;
            esac
            shift ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
    shift
done
python="${PYTHON:-python3}"
[ -n "$results" ] || results="runs/gpu_check/$mode-$(date +%Y%m%d-%H%M%S)"
options=(--mode "$mode" --out "$results")
[ -z "$minutes" ] || options+=(--train-minutes "$minutes")

if [ "$mode" = full ]; then
    # Everything is checked before the first step: the GPU, then the packages, then the faces.
    "$python" -c 'import sys, torch; torch.cuda.is_available() or sys.exit("gpu_check: torch sees no CUDA GPU here (--smoke runs on a CPU)")'
    if [ -z "$pack" ] && [ -z "$data" ] && [ -d runs/gpu_pack ]; then
        pack=runs/gpu_pack
    fi
    if [ -n "$pack" ]; then
        [ -d "$pack/wheels" ] || { echo "gpu_check: $pack/wheels is missing: make the pack with benchmarks/gpu_pack.sh" >&2; exit 3; }
        # The pack's wheels of what this Python lacks, and of the versions the tests pin, go to a folder of
        # their own, first on PYTHONPATH; nothing already installed is touched.
        site="$pack/site"
        rm -rf "$site"
        mapfile -t wheels < <("$python" - "$pack" <<'PY'
import importlib.metadata
import re
import sys
from pathlib import Path

pack = Path(sys.argv[1])
pins = {}
if (pack / "pinned.txt").exists():
    for line in (pack / "pinned.txt").read_text().split():
        name, version = line.split("==")
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
for wheel in sorted((pack / "wheels").glob("*.whl")):
    name = wheel.name.split("-")[0]
    try:
        have = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        have = None
    pinned = pins.get(re.sub(r"[-_.]+", "-", name).lower())
    if have is None or (pinned and have != pinned):
        print(wheel)
PY
        )
        if [ "${#wheels[@]}" -gt 0 ]; then
            echo "gpu_check: installing ${#wheels[@]} wheels from $pack/wheels into $site"
            "$python" -m pip install -q --no-index --no-deps --no-compile --target "$site" "${wheels[@]}"
            site=$(cd "$site" && pwd)
            export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
        fi
        [ -n "$data" ] || data="$pack/faces"
    fi
    "$python" - <<'PY'
import importlib.util
import sys

needed = (
    "papermill", "ipykernel", "nbclient", "pytest", "torchvision", "numpy", "PIL", "matplotlib", "tqdm",
    "kagglehub", "safetensors",
)
missing = [name for name in needed if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(
        f"gpu_check: missing {', '.join(missing)}: pip install -r requirements-dev.txt, or, offline, "
        "give --pack DIR (benchmarks/gpu_pack.sh)"
    )
PY
    if [ -z "$data" ] || [ ! -d "$data" ]; then
        echo "gpu_check: no faces${data:+ in $data}: give --data DIR (a folder of face images) or --pack DIR" >&2
        exit 3
    fi
    options+=(--data "$data")
fi

mkdir -p "$results"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
"$python" benchmarks/gpu_check.py "${options[@]}" 2>&1 | tee "$results/gpu_check.log"
