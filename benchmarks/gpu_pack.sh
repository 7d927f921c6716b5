#!/usr/bin/env bash
# Prepare, on this machine, what the one-shot GPU check carries to the GPU machine (benchmarks/README.md,
# "The GPU check"): a subset of the shared faces in .gpu_faces/ and the wheels of the Python packages the GPU
# machine lacks in .whl/ (both ignored by git). Then it prints the device call to make.
#     bash benchmarks/gpu_pack.sh [FACES]        # FACES: how many faces to carry (default 8000, ~31 MiB)
set -euo pipefail
cd "$(dirname "$0")/.."
faces="${1:-8000}"
python="${PYTHON:-python3}"
shared=../shared/data/anime-faces/images
[ -d "$shared" ] || { echo "gpu_pack: $shared is missing" >&2; exit 3; }

# The faces: a repeatable random subset; the others stay behind as held-out faces for FID (gpu_fid.py).
rm -rf .gpu_faces && mkdir -p .gpu_faces/images
"$python" - "$shared" "$faces" <<'PY'
import random
import shutil
import sys
from pathlib import Path

shared, count = Path(sys.argv[1]), int(sys.argv[2])
files = sorted(shared.glob("*.jpg"))
carried = sorted(random.Random(0).sample(files, count))
for path in carried:
    shutil.copy(path, Path(".gpu_faces/images") / path.name)
Path(".gpu_faces/carried.txt").write_text("".join(f"{path.name}\n" for path in carried))
print(f"gpu_pack: {len(carried)} of {len(files)} faces carried; the other {len(files) - len(carried)} are held out")
PY

# The wheels: papermill and its Jupyter kernel with their dependencies, kagglehub and torch-fidelity without
# theirs (torch, scipy, requests are there), minus what the GPU machine already has (device/KINDS.md).
rm -rf .whl && mkdir -p .whl
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$tag")
done
download=("$python" -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" -d .whl)
"${download[@]}" papermill ipykernel
"${download[@]}" --no-deps kagglehub torch-fidelity
present="attrs certifi charset_normalizer click idna jinja2 markupsafe packaging pillow psutil pygments
python_dateutil pyyaml requests six tqdm typing_extensions urllib3 numpy aiohttp aiosignal frozenlist multidict
yarl propcache aiohappyeyeballs filelock fsspec setuptools wheel"
for name in $present; do
    rm -f .whl/"$name"-*.whl .whl/"${name^}"-*.whl
done
echo "gpu_pack: $(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1); faces $(du -sh .gpu_faces | cut -f1)"
tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
total=$(( tracked + $(du -sb .whl | cut -f1) + $(du -sb .gpu_faces | cut -f1) ))
echo "gpu_pack: project $(( tracked / 1048576 )) MiB + carried = $(( total / 1048576 )) MiB of the 64 MiB a call carries"
[ "$total" -lt $(( 64 * 1048576 )) ] || { echo "gpu_pack: too large: carry fewer faces" >&2; exit 4; }
echo 'gpu_pack: then call the device tool: run(command="bash benchmarks/gpu_check.sh", carry=[".whl", ".gpu_faces"], timeout_s=600)'
