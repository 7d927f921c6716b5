"""The notebook at another commit against the working tree's, side by side in one process.

    python benchmarks/notebook_ab.py --old 5857d44                # QUICK end to end, old/new/new/old (ABBA)
    python benchmarks/notebook_ab.py --old 5857d44 --steps 120    # one epoch of train_one_epoch each, 3 rounds

End to end: each notebook runs QUICK with papermill on the same faces (--data), its decoding cache warmed
first, in the order old, new, new, old; it prints each run's wall time, its longest cell (training) and its
epochs' seconds from metrics.json. --steps: both notebooks' own train_one_epoch on the same decoded faces
(QUICK's 32 px, batch 64), interleaved. The old notebook is read with `git show REV:anime_gan.ipynb`.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from notebook_code import NOTEBOOK, ROOT, SHARED_FACES, default_parameters

sys.path.insert(0, str(ROOT / "tests"))
from notebook_module import load_notebook  # noqa: E402


def old_notebook(rev, folder):
    """The notebook of commit rev, written into folder."""
    text = subprocess.run(
        ["git", "show", f"{rev}:anime_gan.ipynb"], cwd=ROOT, check=True, capture_output=True
    )
    path = Path(folder) / f"anime_gan_{rev}.ipynb"
    path.write_bytes(text.stdout)
    return path


def end_to_end(notebooks, data, work):
    """QUICK with papermill, ABBA; one line of JSON per run."""
    import papermill

    for notebook in notebooks.values():  # warm each notebook's cache: their cache keys may differ
        load_notebook(notebook).prepare_dataset(Path(data), 32, 20_000, 0, work / "cache")
    for index, name in enumerate(["old", "new", "new", "old"]):
        run_dir, out = work / f"run_{index}_{name}", work / f"{index}_{name}.ipynb"
        parameters = dict(QUICK=True, DATA_DIR=str(data), RUN_DIR=str(run_dir), CACHE_DIR=str(work / "cache"))
        started = time.perf_counter()
        papermill.execute_notebook(
            str(notebooks[name]), str(out), parameters=parameters, progress_bar=False, cwd=str(work)
        )
        wall = time.perf_counter() - started
        cells = json.loads(out.read_text())["cells"]
        longest = max(c["metadata"].get("papermill", {}).get("duration") or 0 for c in cells)
        metrics = json.loads((Path(f"{run_dir}_quick") / "metrics.json").read_text())
        row = dict(notebook=name, wall_s=round(wall, 1), training_cell_s=round(longest, 1))
        row.update(
            epochs_s=[r["seconds"] for r in metrics["epochs"]], snapshots=metrics.get("first_epoch_snapshots")
        )
        print(json.dumps(row), flush=True)


def epochs_only(notebooks, data, steps, work):
    """One epoch of `steps` steps with each notebook's own train_one_epoch, interleaved, 3 rounds."""
    import torch

    old, new = load_notebook(notebooks["old"]), load_notebook(notebooks["new"])
    values = {**default_parameters(), "QUICK": True, "RUN_DIR": str(work / "unused"), "DATA_DIR": ""}
    config = new.make_config(values)
    old_config = old.make_config({k: v for k, v in values.items() if k in {f.upper() for f in old.KINDS}})
    faces = new.prepare_dataset(Path(data), 32, 20_000, 0, work / "cache").images[: config.batch_size * steps]
    cpu = torch.device("cpu")
    compute = new.resolve_compute(config)
    hardware = old.choose_hardware(cpu, old.pick_precision("auto", cpu))
    images = new.place_images(faces, cpu)
    print(
        f"precision: old {hardware.precision}, new {compute.precision}; {steps} steps of {config.batch_size}"
    )

    def time_old():
        gan = old.build_gan(old_config, hardware)
        started = time.perf_counter()
        old.train_one_epoch(gan, images, 1, old_config, hardware)
        return time.perf_counter() - started

    def time_new():
        gan = new.build_gan(config, compute)
        batches = new.Batches(images, config.batch_size, config.random_flip, config.seed, compute)
        started = time.perf_counter()
        new.train_one_epoch(gan, batches.epoch(1), compute)
        return time.perf_counter() - started

    for round_ in range(3):
        a, b = time_old(), time_new()
        print(f"round {round_}: old {a:.2f} s, new {b:.2f} s, new/old {b / a:.3f}", flush=True)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", required=True, help="the commit whose notebook is the baseline")
    parser.add_argument("--data", default=str(SHARED_FACES), help="folder of face images")
    parser.add_argument(
        "--steps", type=int, default=0, help="time train_one_epoch for this many steps instead"
    )
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        parser.error(f"--data {args.data!r} is not a folder of images")
    work = Path(tempfile.mkdtemp(prefix="notebook_ab_"))
    notebooks = {"old": old_notebook(args.old, work), "new": NOTEBOOK}
    print(f"old: {args.old}, new: the working tree's anime_gan.ipynb; work folder {work}")
    if args.steps:
        epochs_only(notebooks, args.data, args.steps, work)
    else:
        end_to_end(notebooks, args.data, work)


if __name__ == "__main__":
    main()
