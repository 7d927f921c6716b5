#!/usr/bin/env bash
# Set up and run anime_gan.ipynb headless, on Linux or macOS:
#
#   bash setup_and_run.sh                  # QUICK: faces in a few minutes on a CPU (32 px, 2 epochs, no FID)
#   bash setup_and_run.sh -p QUICK False   # the full schedule: 64 px, 25 epochs, FID/KID (GPU work)
#   bash setup_and_run.sh -p DATA_DIR ~/Pictures/faces -p RUN_DIR runs/mine
#
# Makes a virtual environment in .venv if there is none (PYTHON=python3.12 picks the Python that makes it),
# installs requirements-dev.txt into it when that file changed, then runs the notebook with papermill.
# Every argument goes to papermill after "-p QUICK True", so "-p NAME value" pairs set the notebook's
# parameters and a later "-p QUICK False" wins. The executed notebook goes to runs/, named after the run
# folder (runs/anime_gan_quick.ipynb, runs/anime_gan.ipynb), with _2, _3, ... added rather than
# overwriting an earlier one.
set -euo pipefail
cd "$(dirname "$0")"

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  if ! command -v "$python" >/dev/null 2>&1; then
    echo "setup_and_run.sh: '$python' not found. Install Python 3.10 or newer (or set PYTHON=...)." >&2
    exit 1
  fi
  echo "Making a virtual environment in .venv with $python ..."
  if ! "$python" -m venv .venv; then
    rm -rf .venv # the half-made one: the next try starts clean
    echo "setup_and_run.sh: '$python -m venv .venv' failed. On Debian and Ubuntu it needs the" \
      "python3-venv package: sudo apt install python3-venv (then run this script again)." >&2
    exit 1
  fi
fi

# Install when .venv is new or a requirements file changed since the last successful install.
stamp=.venv/.requirements-installed
if [ ! -e "$stamp" ] || [ requirements-dev.txt -nt "$stamp" ] || [ requirements.txt -nt "$stamp" ]; then
  echo "Installing requirements-dev.txt into .venv ..."
  .venv/bin/python -m pip install -r requirements-dev.txt
  touch "$stamp"
fi

# Where the results will go: the notebook writes to RUN_DIR, with "_quick" added when QUICK is on
# (unless RUN_DIR already ends in _quick). The last "-p NAME value" of a name wins, as in papermill.
quick=True
run_dir=runs/anime_gan
args=("$@")
for ((i = 0; i + 2 < ${#args[@]}; i++)); do
  case "${args[i]}" in
    -p | --parameters)
      case "${args[i + 1]}" in
        QUICK) quick="${args[i + 2]}" ;;
        RUN_DIR) run_dir="${args[i + 2]}" ;;
      esac
      ;;
  esac
done
while [ "${run_dir%/}" != "$run_dir" ]; do run_dir="${run_dir%/}"; done
if [ "$(printf '%s' "$quick" | tr -d '[:space:]' | tr '[:upper:]' '[:lower:]')" != false ]; then
  case "$run_dir" in *_quick) ;; *) run_dir="${run_dir}_quick" ;; esac
fi

mkdir -p runs
name="$(basename -- "${run_dir:-anime_gan}")"
executed="runs/$name.ipynb"
n=2
while [ -e "$executed" ]; do
  executed="runs/${name}_$n.ipynb"
  n=$((n + 1))
done

echo "Running anime_gan.ipynb; the executed notebook goes to $executed"
if ! .venv/bin/python -m papermill anime_gan.ipynb "$executed" -p QUICK True "$@"; then
  echo "setup_and_run.sh: the notebook stopped with an error; the cell and its message are in $executed" >&2
  exit 1
fi
echo
echo "Done. Results (samples, plots, generator, zip): $run_dir/"
echo "The executed notebook, with every cell's output: $executed"
