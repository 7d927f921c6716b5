"""The GPU check: what the notebook does on a CUDA GPU, measured with one command, for anyone who has one.
`benchmarks/gpu_check.sh` runs it (installing an offline pack's wheels first, if it is given one);
benchmarks/README.md ("The GPU check") says how to run it and what it prints.

Steps, in this order, each timed, each a row of the summary table. OUT/summary.md is rewritten after every
step, so a run stopped part-way (a time limit, a lost connection) keeps the rows it finished.
  1. tests      the device-marked tests on the device (`pytest -m device --device cuda`), which also check
                that no training step syncs with the host (torch.cuda.set_sync_debug_mode("error"))
  2. train      the number of images a default run sees (25 epochs of the ~63,000 Kaggle faces = 1.6
                million) on the faces given, with its own time cap (--train-minutes); the row names how
                many distinct faces that was and how often each was seen. The EMA generator of a few
                epochs goes to OUT, for FID on any machine afterwards (benchmarks/gpu_fid.py)
  3. notebook   the notebook end to end with papermill: QUICK; 64 px in PRECISION auto, fp16 (with the
                gradient scaler) and fp32; and a CUDA checkpoint resumed on the CPU
  4. speed      benchmarks/train_speed.py: the notebook's step against the tutorial loop at batch 128 and
                512, with each one's share of the measured matmul peak of the format it computes in
  5. COMPILE    the notebook with COMPILE = True, last: compiling is the slowest step to start

Every speed figure comes from at least STEADY_SECONDS of training after a warm-up: the training run's from
its epochs after the first; the notebook runs' from their second epoch on (they run enough epochs for it,
judged from the training run's speed); the speed rows' from timed rounds after a warm-up round; COMPILE's
first epoch (compilation, cuDNN autotuning) is a row of its own. A figure timed over less says so.

--mode smoke runs the same steps at tiny sizes on the CPU in about a minute (a test runs it, so the script
cannot rot unseen); it skips COMPILE (compiling on a 2-core CPU takes minutes) and the per-precision runs,
and its speed figures are far below STEADY_SECONDS (each says so)."""

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
from notebook_code import SHARED_FACES, default_parameters, load_notebook, notebook_config  # noqa: E402
from train_speed import STEADY_SECONDS, steady  # noqa: E402

DEFAULT_RUN_IMAGES = 1_600_000  # 25 epochs of the ~63,000 Kaggle faces: what a default run sees
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
TINY = dict(
    IMAGE_SIZE=32, G_WIDTH=8, D_WIDTH=8, LATENT_DIM=16, BATCH_SIZE=16, SAMPLE_COUNT=16, GENERATE_COUNT=16
)
MODES = {
    "full": dict(
        device="cuda",
        tests="",  # all of them, for real
        train_minutes=15,  # the training run's cap (--train-minutes)
        quick_plays_game=True,  # QUICK as the README's first command runs it, the 2-D game included
        # The 2-D game is CPU work; KEEP_EVERY 0 keeps one checkpoint, however many epochs a speed run takes.
        notebook=dict(FID_SAMPLES=0, IMAGE_SIZE=64, PLAY_GAME_2D=False, KEEP_EVERY=0),
        precisions=["auto", "fp16", "fp32"],
        compile=True,
        resume_images=512,
        speed=[
            [
                "--images",
                "8000",
                "--batch-size",
                str(batch),
                "--rounds",
                "3",
                "--min-seconds",
                str(STEADY_SECONDS),
            ]
            for batch in (128, 512)
        ],
        train_images=DEFAULT_RUN_IMAGES,
        train_overrides=dict(IMAGE_SIZE=64, BATCH_SIZE=128),
        exports=4,
    ),
    "smoke": dict(
        device="cpu:0",  # spelled with an index, as "cuda:0" is: the notebook must accept it (it once crashed)
        tests="--collect-only",  # the suite itself runs them all on the CPU: here, only the command line
        train_minutes=15,  # never binding at these sizes: the smoke run must train all its epochs
        quick_plays_game=False,
        notebook=dict(FID_SAMPLES=0, PLAY_GAME_2D=False, **TINY),
        precisions=[],  # QUICK and the resume runs already run the notebook end to end on the CPU
        compile=False,
        resume_images=32,
        speed=[
            [
                *"--images 64 --image-size 64 --width 8 --batch-size 16 --rounds 1 --peak-size 512".split(),
                *"--min-seconds 0".split(),  # a smoke test, not a measurement: its rows say so
            ],
        ],
        train_images=960,
        train_overrides=dict(TINY, LOG_EVERY=4),
        exports=2,
    ),
}


class Summary:
    """The rows of the summary table (step, status, seconds, figures), rewritten to out/summary.md after
    every step."""

    def __init__(self, started, out, title):
        self.started, self.out, self.title, self.rows = started, out, title, []

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
        self.add(step, status, seconds, figures)
        print(f"--> {status} in {seconds:.1f} s: {figures}", flush=True)
        return figures if status == "ok" else None

    def skip(self, step, reason):
        self.add(step, "skipped", 0.0, reason)

    def add(self, step, status, seconds, figures):
        self.rows.append((step, status, seconds, figures))
        self.write()

    def table(self):
        lines = ["| step | status | seconds | figures |", "| --- | --- | ---: | --- |"]
        lines += [
            f"| {step} | {status} | {seconds:.1f} | {figures} |"
            for step, status, seconds, figures in self.rows
        ]
        return "\n".join(lines)

    def write(self, done=False):
        state = "finished" if done else f"running: {len(self.rows)} steps so far"
        text = f"# {self.title}\n\n{machine_line()}\n\n{self.table()}\n\n({state}, {self.elapsed():.0f} s)\n"
        temporary = self.out / ".summary.md.tmp"
        temporary.write_text(text)
        os.replace(temporary, self.out / "summary.md")  # never half-written, even if the run is stopped


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


def chosen_compute(streams):
    """What the notebook's setup line says it computes on and in ("Training on cpu (CPU), fp32 | run folder:
    ..." gives "cpu (CPU), fp32"), from the executed notebook's printed text."""
    prefix = "Training on "
    printed = [line for text in streams for line in text.splitlines() if line.startswith(prefix)]
    return printed[0][len(prefix) :].split(" | run folder: ")[0] if printed else "device not printed"


def run_notebook(work, name, parameters, fresh=True):
    """Execute the notebook with papermill, its run folder work/name (emptied first if fresh); returns the
    device and precision it printed and its epoch rows (metrics.json). The executed notebook is written once,
    when the run ends (after each cell costs 3 s a run)."""
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
        execution_timeout=3600,
        request_save_on_cell_execute=False,
    )
    cells = json.loads(output.read_text(encoding="utf-8"))["cells"]
    streams = ["".join(out.get("text", "")) for cell in cells for out in cell.get("outputs", [])]
    return chosen_compute(streams), json.loads((Path(run_dir) / "metrics.json").read_text())["epochs"]


def last_epoch(chosen, epochs):
    """The figures of a run that is not a speed measurement: its device and its last epoch's losses."""
    last = epochs[-1]
    return (
        f"{chosen}; epoch {last['epoch']}: {last['steps']} steps, loss D {last['loss_d']:.3f}, "
        f"loss G {last['loss_g']:.3f}"
    )


def from_second_epoch(chosen, epochs):
    """The figures of a speed run: images/s over its epochs after the first (the first autotunes cuDNN,
    and compiles with COMPILE), which it reports apart."""
    later = epochs[1:]
    if not later:
        return f"{chosen}; only one epoch: no figure after the warm-up"
    seconds = sum(row["seconds"] for row in later)
    images = sum(row["images_per_second"] * row["seconds"] for row in later)
    return (
        f"{chosen}; epochs 2-{later[-1]['epoch']}: {images / seconds:,.0f} images/s over {seconds:.1f} s"
        f"{steady(seconds)}; epoch 1 (warm-up): {epochs[0]['seconds']:.1f} s; "
        f"last epoch loss D {later[-1]['loss_d']:.3f}, loss G {later[-1]['loss_g']:.3f}"
    )


def notebook_quick(work, parameters):
    return last_epoch(*run_notebook(work, "run_quick", parameters))  # the notebook adds _quick to RUN_DIR


def notebook_speed(work, name, parameters):
    return from_second_epoch(*run_notebook(work, name, parameters))


def compile_time(work, name):
    """COMPILE's first epoch against its later ones: the time compilation (and autotuning) cost."""
    epochs = json.loads((work / name / "metrics.json").read_text())["epochs"]
    later = [row["seconds"] for row in epochs[1:]]
    first = epochs[0]["seconds"]
    if not later:
        return f"epoch 1: {first:.1f} s (no later epoch to compare with)"
    typical = sum(later) / len(later)
    return (
        f"epoch 1 (compiling, cuDNN autotuning): {first:.1f} s against {typical:.1f} s for each later epoch: "
        f"about {first - typical:.1f} s of compilation"
    )


def speed_epochs(measured, batch_size):
    """Epochs for a notebook speed run: one to warm up, then enough for 2 × STEADY_SECONDS at the training
    run's speed (the margin covers a faster variant; a slower one only takes longer)."""
    if not measured.get("images_per_s"):
        return 2  # the training run failed: the rows say if a second epoch was too short for a figure
    per_epoch = measured["faces"] // batch_size * batch_size
    return 1 + max(1, min(200, math.ceil(2 * STEADY_SECONDS * measured["images_per_s"] / per_epoch)))


def resume_on_cpu(work, data, mode, device):
    """A checkpoint written on the device, resumed on the CPU for one more epoch."""
    small = {
        **mode["notebook"],
        "DATA_DIR": str(data),
        "MAX_IMAGES": mode["resume_images"],
        "PRECISION": "fp32",
    }
    first = last_epoch(*run_notebook(work, "resume", {**small, "DEVICE": device, "EPOCHS": 1}))
    second = last_epoch(*run_notebook(work, "resume", {**small, "DEVICE": "cpu", "EPOCHS": 2}, fresh=False))
    return f"on {device}: {first}; then resumed on cpu: {second}"  # no "|": the row is a table's


def speed(arguments, device, data):
    import train_speed

    result = train_speed.main(["--device", device, "--data", str(data), *arguments])
    return (
        f"batch {result['batch_size']}: notebook ({result['precision']}) {result['notebook_images_per_s']:,.0f} "
        f"images/s over {result['notebook_seconds']:.1f} s{steady(result['notebook_seconds'])} vs the tutorial "
        f"loop ({result['baseline_format']} convolutions, JPEG DataLoader) {result['baseline_images_per_s']:,.0f} "
        f"images/s over {result['baseline_seconds']:.1f} s{steady(result['baseline_seconds'])} = "
        f"{result['ratio']:.2f}x; share of the measured matmul peak: notebook "
        f"{100 * result['notebook_share_of_peak']:.1f}% of {result['notebook_format']}, tutorial loop "
        f"{100 * result['baseline_share_of_peak']:.1f}% of {result['baseline_format']} "
        f"({result['gflop_per_image']:.2f} GFLOP/image); the tutorial's DataLoader alone: "
        f"{result['loader_images_per_s']:,.0f} images/s, so {result['baseline_limit']} limits that loop"
    )


def train_schedule(mode, device_name, data, work, out, cap_seconds, measured):
    """Train on the faces in data for a default run's number of images, or until cap_seconds; export the EMA
    generator at evenly spaced epochs. Fills measured (faces, steady images/s); returns the figures."""
    started = time.perf_counter()
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
    distinct = len(faces.images)
    steps_per_epoch = distinct // probe.batch_size
    per_epoch = steps_per_epoch * probe.batch_size
    epochs = math.ceil(mode["train_images"] / per_epoch)
    config = notebook_config(nb, **overrides, EPOCHS=epochs)
    compute = nb.resolve_compute(config)  # DEVICE, PRECISION "auto" and cuDNN, as the notebook resolves them
    device = compute.device
    images = nb.place_images(faces.images, device)
    gan = nb.build_gan(config, compute)
    batches = nb.Batches(images, config.batch_size, config.random_flip, config.seed, compute)
    exports = {round(epochs * (index + 1) / mode["exports"]) for index in range(mode["exports"])}
    epoch_seconds, exported = [], []
    for epoch in range(1, epochs + 1):
        epoch_started = time.perf_counter()
        # The history comes back on the device: copying it to the CPU waits for the epoch's last step.
        history = nb.train_one_epoch(gan, batches.epoch(epoch), compute).cpu()
        epoch_seconds.append(time.perf_counter() - epoch_started)
        if not history.isfinite().all():
            raise RuntimeError(f"non-finite losses in epoch {epoch}")
        # Stop before an epoch that would end past the cap.
        out_of_time = time.perf_counter() - started + epoch_seconds[-1] > cap_seconds
        if epoch in exports or out_of_time:
            weights, spec = nb.export_generator(gan.drawing_generator, config, work)
            shutil.move(weights, out / f"generator_e{epoch:03d}.safetensors")
            exported.append(
                {
                    "epoch": epoch,
                    "images_seen": epoch * per_epoch,
                    "file": f"generator_e{epoch:03d}.safetensors",
                }
            )
        if out_of_time:
            break
    spec = json.loads(Path(spec).read_text())
    (out / "generators.json").write_text(
        json.dumps(
            {"spec": spec, "faces": distinct, "trained_faces": "trained_faces.txt", "exports": exported},
            indent=1,
        )
    )
    steady_seconds = sum(epoch_seconds[1:])
    if steady_seconds:
        rate = (len(epoch_seconds) - 1) * per_epoch / steady_seconds
        measured.update(images_per_s=rate)
        speed_text = (
            f"epochs 2-{epoch}: {rate:,.0f} images/s over {steady_seconds:.1f} s{steady(steady_seconds)}"
        )
    else:
        speed_text = "only one epoch: no figure after the warm-up"
    measured.update(faces=distinct)
    stopped = "all epochs" if epoch == epochs else f"stopped by the {cap_seconds / 60:.3g} min cap"
    last = history.mean(0).tolist()
    return (
        f"{compute.precision}, batch {config.batch_size}, {config.image_size} px: {distinct:,} distinct faces, "
        f"{epoch}/{epochs} epochs ({stopped}) = {epoch * per_epoch:,} images, each face seen {epoch} times "
        f"(a default run on the ~63,000 Kaggle faces sees each 25 times); {speed_text}; epoch 1 (warm-up"
        f"{', cuDNN autotuning' if device.type == 'cuda' else ''}): {epoch_seconds[0]:.1f} s; "
        f"last epoch loss D {last[0]:.3f}, loss G {last[1]:.3f}; "
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
    parser.add_argument(
        "--out", default="", help="where the results go (default: runs/gpu_check/<mode>-<date>-<time>)"
    )
    parser.add_argument(
        "--data", default=str(ROOT / "runs" / "gpu_pack" / "faces"), help="folder of faces (full mode)"
    )
    parser.add_argument("--work", default="", help="scratch folder for the runs (default: beside --out)")
    parser.add_argument("--train-minutes", type=float, default=0, help="the training run's cap (full: 15)")
    args = parser.parse_args()
    mode = MODES[args.mode]
    out = Path(args.out or ROOT / "runs" / "gpu_check" / f"{args.mode}-{time.strftime('%Y%m%d-%H%M%S')}")
    out = out.resolve()
    work = Path(args.work).resolve() if args.work else out.parent / f"{out.name}_work"
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    summary = Summary(time.perf_counter(), out, f"gpu_check --mode {args.mode}")
    data = smoke_faces(work) if args.mode == "smoke" else Path(args.data).resolve()
    if not data.is_dir():
        parser.error(f"--data {data}: no such folder of faces")
    trained = sorted(path.name for path in data.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)
    (out / "trained_faces.txt").write_text(
        "".join(f"{name}\n" for name in trained)
    )  # gpu_fid.py holds them out
    device = mode["device"]
    cap_seconds = 60 * (args.train_minutes or mode["train_minutes"])
    print(
        f"gpu_check --mode {args.mode}: {machine_line()}; data {data} ({len(trained)} files); results in {out}"
    )

    summary.run("device tests", device_tests, device, mode["tests"])
    measured = {}
    summary.run(
        "train the default schedule", train_schedule, mode, device, data, work, out, cap_seconds, measured
    )
    notebook = {**mode["notebook"], "DATA_DIR": str(data), "DEVICE": device}
    quick = {key: value for key, value in notebook.items() if key not in ("IMAGE_SIZE", "BATCH_SIZE")}
    quick["PLAY_GAME_2D"] = mode["quick_plays_game"]
    summary.run("notebook QUICK", notebook_quick, work, {**quick, "QUICK": True})
    epochs = speed_epochs(measured, {**default_parameters(), **notebook}["BATCH_SIZE"])
    if not mode["precisions"]:
        summary.skip("notebook in each precision", "not in smoke mode (the CPU has no fp16)")
    for precision in mode["precisions"]:
        parameters = {**notebook, "PRECISION": precision, "EPOCHS": epochs}
        summary.run(f"notebook {precision}", notebook_speed, work, f"p_{precision}", parameters)
    summary.run("resume on the CPU", resume_on_cpu, work, data, mode, device)
    for arguments in mode["speed"]:
        batch = arguments[arguments.index("--batch-size") + 1]
        summary.run(f"speed batch {batch}", speed, arguments, device, data)
    if mode["compile"]:
        parameters = {**notebook, "COMPILE": True, "EPOCHS": epochs}
        summary.run("notebook COMPILE", notebook_speed, work, "compiled", parameters)
        summary.run("COMPILE: compile time", compile_time, work, "compiled")
    else:
        summary.skip("notebook COMPILE", "not in smoke mode")

    summary.write(done=True)
    print(f"\n{machine_line()}\n{summary.table()}")
    failed = [row[0] for row in summary.rows if row[1] == "FAILED"]
    print(
        f"\n{len(summary.rows) - len(failed)} steps ok or skipped, {len(failed)} failed; {summary.elapsed():.0f} s; "
        f"results in {out}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
