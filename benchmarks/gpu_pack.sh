#!/usr/bin/env bash
# An offline pack for the GPU check (benchmarks/README.md, "The GPU check"): made on a machine with internet
# and the faces, for a GPU machine without internet that already has a CUDA build of torch and torchvision.
#     bash benchmarks/gpu_pack.sh [--out DIR] [--faces N] [--held-out N] [--source DIR]
#                                 [--python-version X.Y] [--arch x86_64|aarch64]
# DIR (default runs/gpu_pack, which git ignores) gets:
#   faces/        the faces to train on: the files of SOURCE (default ../shared/data/anime-faces/images) but a
#                 held-out set, or a repeatable random N of them; copied byte for byte (pre-resizing would
#                 not fit more: these faces are 64 px JPEGs already, README)
#   held_out.txt  the held-out faces (--held-out, default 2,000: random.Random(0).sample of the sorted
#                 files, the recipe screen's split), which the GPU never sees; gpu_fid.py compares with them
#   wheels/       wheels of every package the check needs but torch and torchvision, with their
#                 dependencies (for CPython X.Y, default this one's, on manylinux ARCH, default x86_64)
#   pinned.txt    the versions of papermill, ipykernel and pytest the tests pin (requirements-dev.txt)
# Then copy the project and DIR to that machine and run there: bash benchmarks/gpu_check.sh --pack DIR
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
usage="usage: bash benchmarks/gpu_pack.sh [--out DIR] [--faces N] [--held-out N] [--source DIR] [--python-version X.Y] [--arch ARCH]"
pack=runs/gpu_pack faces=0 held_out=2000 source=../shared/data/anime-faces/images arch=x86_64
version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
    case "$1" in
        --out) pack="$2" ;;
        --faces) faces="$2" ;;
        --held-out) held_out="$2" ;;
        --source) source="$2" ;;
        --python-version) version="$2" ;;
        --arch) arch="$2" ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
    shift 2
done
[ -n "$pack" ] || { echo "$usage" >&2; exit 2; }
[ -d "$source" ] || { echo "gpu_pack: $source is missing: give --source DIR" >&2; exit 3; }

# The faces: all but the held-out ones, or a repeatable random subset of them.
rm -rf "$pack/faces" "$pack/wheels" "$pack/site" && mkdir -p "$pack/faces" "$pack/wheels"
"$python" - "$source" "$pack" "$faces" "$held_out" <<'PY'
import random
import shutil
import sys
from pathlib import Path

source, pack, count, held = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
suffixes = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
files = sorted(path for path in source.iterdir() if path.suffix.lower() in suffixes)
held_out = set(random.Random(0).sample(files, held))
training = [path for path in files if path not in held_out]
packed = sorted(random.Random(0).sample(training, count)) if 0 < count < len(training) else training
for path in packed:
    shutil.copy(path, pack / "faces" / path.name)
(pack / "held_out.txt").write_text("".join(f"{path.name}\n" for path in sorted(held_out)))
print(f"gpu_pack: {len(packed):,} of {len(files):,} faces packed; {len(held_out):,} held out for FID")
PY

# The wheels: requirements.txt and the tests' pinned tools (requirements-dev.txt) with their dependencies,
# but torch and torchvision, which must match that machine's CUDA driver; torch-fidelity without its
# dependencies (torch and torchvision again, and numpy, pillow and tqdm, which are here already).
mapfile -t pinned < <(grep -E '^(papermill|ipykernel|pytest)==' requirements-dev.txt | sed 's/ *#.*//')
printf '%s\n' "${pinned[@]}" > "$pack/pinned.txt"
mapfile -t runtime < <(sed 's/ *#.*//' requirements.txt | grep -v -E '^(torch|torchvision|torch-fidelity)([<>=!~ ]|$)' | grep .)
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_$arch")
done
download=("$python" -m pip download -q --only-binary=:all: --python-version "$version" --implementation cp
    "${platforms[@]}" -d "$pack/wheels")
"${download[@]}" "${runtime[@]}" "${pinned[@]}"
"${download[@]}" --no-deps torch-fidelity
if compgen -G "$pack/wheels/torch-*" >/dev/null || compgen -G "$pack/wheels/torchvision-*" >/dev/null ||
    compgen -G "$pack/wheels/nvidia_*" >/dev/null || compgen -G "$pack/wheels/triton-*" >/dev/null; then
    echo "gpu_pack: a wheel of torch or of its CUDA libraries was pulled in: the pack is for a machine that has them" >&2
    exit 4
fi
mib() { echo "$(( ($(du -sb "$1" | cut -f1) + 524288) / 1048576 )) MiB"; }
echo "gpu_pack: $pack: faces $(mib "$pack/faces"), $(find "$pack/wheels" -name '*.whl' | wc -l) wheels $(mib "$pack/wheels") (CPython $version, $arch), $(mib "$pack") in all"
echo "gpu_pack: copy the project and $pack to the machine with the GPU; there: bash benchmarks/gpu_check.sh --pack $pack"
