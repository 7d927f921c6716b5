"""The one-shot GPU check: everything a session lent a GPU should measure, in one call of about 8 minutes.
`benchmarks/gpu_check.sh` runs it (it installs the carried wheels first); benchmarks/README.md ("The GPU
check") says what to carry, how long each step takes and what comes back.

Steps, each timed, each a row of the summary table (printed, and written to OUT/summary.md):
  1. tests      the device-marked tests on the device (`pytest -m device --device cuda`), which also check
                that no training step syncs with the host (torch.cuda.set_sync_debug_mode("error"))
  2. notebook   the notebook end to end with papermill: QUICK; 64 px in PRECISION auto, fp16 (with the
                gradient scaler) and fp32; COMPILE on; and a CUDA checkpoint resumed on the CPU
  3. speed      benchmarks/train_speed.py: the notebook's step against the tutorial loop at batch 128 and
                a larger batch, with the share of the measured matmul peak
  4. train      the default schedule's worth of images (25 epochs of ~63,000 faces = 1.6 million) on the
                carried faces; the EMA generator of a few epochs goes to OUT for FID on a CPU afterwards
                (benchmarks/gpu_fid.py)

--mode smoke runs the same steps at tiny sizes on the CPU in about a minute (a test runs it, so the script
cannot rot before a GPU is lent); it skips COMPILE (compiling on a 2-core CPU takes minutes) and fp16."""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would garble the log
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from notebook_code import SHARED_FACES, load_notebook, notebook_config  # noqa: E402

TINY = dict(
    IMAGE_SIZE=32, G_WIDTH=8, D_WIDTH=8, LATENT_DIM=16, BATCH_SIZE=16, SAMPLE_COUNT=16, GENERATE_COUNT=16
)
MODES = {
    "full": dict(
        device="cuda",
        tests="",  # all of them, for real
        budget_s=500,  # of the command's 600 s limit: the rest covers the wheels' install and a margin
        quick_plays_game=True,  # QUICK as the README's first command runs it, the 2-D game included
        notebook=dict(FID_SAMPLES=0, IMAGE_SIZE=64, EPOCHS=1, PLAY_GAME_2D=False),  # the game: CPU work
        precisions=["auto", "fp16", "fp32"],
        compile=True,
        resume_images=512,
        speed=[["--images", "8000", "--batch-size", str(batch), "--rounds", "3"] for batch in (128, 512)],
        train_images=1_600_000,
        train_overrides=dict(IMAGE_SIZE=64, BATCH_SIZE=128),
        exports=4,
    ),
    "smoke": dict(
        device="cpu:0",  # spelled with an index, as "cuda:0" is: the notebook must accept it (it once crashed)
        tests="--collect-only",  # the suite itself runs them all on the CPU: here, only the command line
        budget_s=900,  # never binding at these sizes: the smoke run must train all its epochs
        quick_plays_game=False,
        notebook=dict(FID_SAMPLES=0, EPOCHS=1, PLAY_GAME_2D=False, **TINY),
        precisions=[],  # QUICK and the resume runs already run the notebook end to end on the CPU
        compile=False,
        resume_images=32,
        speed=[
            [*"--images 64 --image-size 64 --width 8 --batch-size 16 --rounds 1 --peak-size 512".split()],
        ],
        train_images=960,
        train_overrides=dict(TINY, LOG_EVERY=4),
        exports=2,
    ),
}


class Summary:
    """The rows of the summary table: step, status, seconds, figures."""

    def __init__(self, started):
        self.started, self.rows = started, []

    def elapsed(self):
        return time.perf_counter() - self.started

    def run(self, step, function, *args):
        """Run function(*args) -> figures (a str); record ok/FAILED with its time. Returns the figures or None."""
        print(f"\n=== {step} (at {self.elapsed():.0f} s)", flush=True)
        started = time.perf_counter()
        try:
            figures, status = function(*args), "ok"
        except Exception as error:  # a failed step is a row of the table; the others still run
            figures, status = f"{type(error).__name__}: {str(error)[-300:]}", "FAILED"
        seconds = time.perf_counter() - started
        self.rows.append((step, status, seconds, figures))
        print(f"--> {status} in {seconds:.1f} s: {figures}", flush=True)
        return figures if status == "ok" else None

    def skip(self, step, reason):
        self.rows.append((step, "skipped", 0.0, reason))

    def table(self):
        lines = ["| step | status | seconds | figures |", "| --- | --- | ---: | --- |"]
        lines += [
            f"| {step} | {status} | {seconds:.1f} | {figures} |"
            for step, status, seconds, figures in self.rows
        ]
        return "\n".join(lines)


def machine_line():
    import platform

    import torch

    gpu = ""
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        gpu = f", GPU {properties.name} ({properties.total_memory / 2**30:.0f} GiB, capability {properties.major}.{properties.minor})"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}{gpu}"


def device_tests(device, extra):
    """The device-marked tests on device (extra: more pytest options, e.g. --collect-only)."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-m",
        "device",
        "--device",
        device,
        "tests/test_device.py",
    ]
    command += extra.split()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    print(result.stdout[-3000:], result.stderr[-2000:])
    last = (result.stdout.strip().splitlines() or ["no output"])[-1]
    if result.returncode != 0:
        raise RuntimeError(last)
    return last


def run_notebook(work, name, parameters, fresh=True):
    """Execute the notebook with papermill, its run folder work/name (emptied first if fresh); returns the
    figures of its last epoch. The executed notebook is written once, when the run ends (after each cell
    costs 3 s a run; work/ does not come back from the GPU machine anyway)."""
    import papermill

    run_dir = work / name
    if fresh:
        shutil.rmtree(run_dir, ignore_errors=True)
    parameters = {"RUN_DIR": str(run_dir), "CACHE_DIR": str(work / "cache"), **parameters}
    output = work / f"{name}{'' if fresh else '_resumed'}.ipynb"
    papermill.execute_notebook(
        str(ROOT / "anime_gan.ipynb"),
        str(output),
        parameters=parameters,
        kernel_name="python3",
        progress_bar=False,
        cwd=str(work),
        execution_timeout=600,
        request_save_on_cell_execute=False,
    )
    cells = json.loads(output.read_text(encoding="utf-8"))["cells"]
    streams = ["".join(out.get("text", "")) for cell in cells for out in cell.get("outputs", [])]
    printed = [line for text in streams for line in text.splitlines() if line.startswith("device: ")]
    chosen = printed[0] if printed else "device not printed"
    epochs = json.loads((Path(run_dir) / "metrics.json").read_text())["epochs"]
    last = epochs[-1]
    return (
        f"{chosen}; epoch {last['epoch']}: {last['steps']} steps, "
        f"{last['images_per_second']:,.0f} images/s, loss D {last['loss_d']:.3f}, loss G {last['loss_g']:.3f}"
    )


def resume_on_cpu(work, data, mode, device):
    """A checkpoint written on the device, resumed on the CPU for one more epoch."""
    small = {
        **mode["notebook"],
        "DATA_DIR": str(data),
        "MAX_IMAGES": mode["resume_images"],
        "PRECISION": "fp32",
    }
    first = run_notebook(work, "resume", {**small, "DEVICE": device, "EPOCHS": 1})
    second = run_notebook(work, "resume", {**small, "DEVICE": "cpu", "EPOCHS": 2}, fresh=False)
    return f"on {device}: {first} | resumed on cpu: {second}"


def speed(arguments, device, data):
    import train_speed

    result = train_speed.main(["--device", device, "--data", str(data), *arguments])
    return (
        f"batch {result['batch_size']} ({result['precision']}): notebook {result['notebook_images_per_s']:,.0f} vs "
        f"tutorial {result['baseline_images_per_s']:,.0f} images/s = {result['ratio']:.2f}x; "
        f"{100 * result['notebook_share_of_peak']:.1f}% vs {100 * result['baseline_share_of_peak']:.1f}% of the "
        f"measured matmul peak ({result['gflop_per_image']:.2f} GFLOP/image)"
    )


def train_schedule(mode, device_name, data, work, out, deadline):
    """Train on the carried faces for the default schedule's images (or until the deadline); export the EMA
    generator at evenly spaced epochs. Returns the figures."""
    import torch

    nb = load_notebook()
    overrides = {
        "DATA_DIR": str(data),
        "RUN_DIR": str(work / "train"),
        "DEVICE": device_name,
        "LOG_EVERY": 50,
    }
    overrides.update(mode["train_overrides"])
    probe = notebook_config(nb, **overrides)
    faces = nb.prepare_dataset(Path(data), probe.image_size, 0, 0, work / "cache")
    steps_per_epoch = len(faces.images) // probe.batch_size
    epochs = math.ceil(mode["train_images"] / (steps_per_epoch * probe.batch_size))
    config = notebook_config(nb, **overrides, EPOCHS=epochs)
    device = nb.pick_device(config.device)
    hardware = nb.choose_hardware(device, nb.pick_precision("auto", device))
    if device.type == "cuda":
        nb.configure_cuda(hardware.precision, deterministic=False)
    images = nb.place_images(faces.images, device)
    gan = nb.build_gan(config, hardware)
    exports = {round(epochs * (index + 1) / mode["exports"]) for index in range(mode["exports"])}
    started, seen, exported = time.perf_counter(), 0, []
    for epoch in range(1, epochs + 1):
        history = nb.train_one_epoch(gan, images, epoch, config, hardware)
        seen += len(history) * config.batch_size
        if not torch.isfinite(history).all():
            raise RuntimeError(f"non-finite losses in epoch {epoch}")
        out_of_time = time.perf_counter() > deadline
        if epoch in exports or out_of_time:
            weights, spec = nb.export_generator(gan.sampler(), config, work)
            shutil.move(weights, out / f"generator_e{epoch:03d}.safetensors")
            exported.append(
                {"epoch": epoch, "images_seen": seen, "file": f"generator_e{epoch:03d}.safetensors"}
            )
        if out_of_time:
            break
    seconds = time.perf_counter() - started
    spec = json.loads(Path(spec).read_text())
    (out / "generators.json").write_text(
        json.dumps({"spec": spec, "faces": len(faces.images), "exports": exported}, indent=1)
    )
    last = history.mean(0).tolist()
    return (
        f"{hardware.precision}, {len(faces.images):,} faces, {epoch}/{epochs} epochs, {seen:,} images in {seconds:.0f} s "
        f"= {seen / seconds:,.0f} images/s; last epoch loss D {last[0]:.3f}, loss G {last[1]:.3f}; "
        f"exported epochs {[row['epoch'] for row in exported]}"
    )


def smoke_faces(work):
    """A small folder of faces for the smoke mode: the first 96 shared faces, or drawn ones without ../shared."""
    folder = work / "faces"
    if folder.is_dir():
        return folder
    folder.mkdir(parents=True)
    shared = sorted(SHARED_FACES.glob("*.jpg"))[:96] if SHARED_FACES.is_dir() else []
    for path in shared:
        shutil.copy(path, folder / path.name)
    if not shared:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import write_faces

        write_faces(folder, 96, size=40)
    return folder


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=sorted(MODES), default="full")
    parser.add_argument("--out", default=os.environ.get("OUT", "runs/gpu_check/out"), help="where results go")
    parser.add_argument("--data", default=str(ROOT / ".gpu_faces" / "images"), help="faces (full mode)")
    parser.add_argument("--work", default="", help="scratch folder for the runs (default: beside --out)")
    args = parser.parse_args()
    mode, summary = MODES[args.mode], Summary(time.perf_counter())
    out = Path(args.out).resolve()
    work = Path(args.work).resolve() if args.work else out.parent / f"{out.name}_work"
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    data = smoke_faces(work) if args.mode == "smoke" else Path(args.data).resolve()
    device = mode["device"]
    print(f"gpu_check --mode {args.mode}: {machine_line()}; data {data}; budget {mode['budget_s']} s")

    summary.run("device tests", device_tests, device, mode["tests"])
    notebook = {**mode["notebook"], "DATA_DIR": str(data), "DEVICE": device}
    quick = {
        key: value for key, value in notebook.items() if key not in ("IMAGE_SIZE", "EPOCHS", "BATCH_SIZE")
    }
    quick["PLAY_GAME_2D"] = mode["quick_plays_game"]
    summary.run("notebook QUICK", run_notebook, work, "run_quick", {**quick, "QUICK": True})  # adds _quick
    if not mode["precisions"]:
        summary.skip("notebook in each precision", "not in smoke mode (the CPU has no fp16)")
    for precision in mode["precisions"]:
        summary.run(
            f"notebook {precision}",
            run_notebook,
            work,
            f"p_{precision}",
            {**notebook, "PRECISION": precision},
        )
    summary.run("resume on the CPU", resume_on_cpu, work, data, mode, device)
    for arguments in mode["speed"]:
        summary.run(
            f"speed batch {arguments[arguments.index('--batch-size') + 1]}", speed, arguments, device, data
        )
    if mode["compile"]:
        summary.run("notebook COMPILE", run_notebook, work, "compiled", {**notebook, "COMPILE": True})
    else:
        summary.skip("notebook COMPILE", "not in smoke mode")
    deadline = summary.started + mode["budget_s"] - 20  # leave time to export and write the summary
    summary.run("train the default schedule", train_schedule, mode, device, data, work, out, deadline)

    table = summary.table()
    print(f"\n{machine_line()}\n{table}")
    (out / "summary.md").write_text(f"# gpu_check --mode {args.mode}\n\n{machine_line()}\n\n{table}\n")
    failed = [row[0] for row in summary.rows if row[1] == "FAILED"]
    print(
        f"\n{len(summary.rows) - len(failed)} steps ok or skipped, {len(failed)} failed; {summary.elapsed():.0f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
