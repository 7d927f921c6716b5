"""Does bf16 train as well as fp32? Same seed, data and schedule; compares losses, scores and FID.

The notebook's PRECISION="auto" picks bf16 on CPUs with native bf16 instructions because it is faster
(benchmarks/train_speed.py --variants). This script checks the other half of that choice: that a bf16
run learns as well as an fp32 one. Both runs use the notebook's own train() on the same images.

    python benchmarks/precision_quality.py --weights ../shared/models/fid-inception/weights-inception-2015-12-05-fidhelper-converted.pth
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_code import SHARED_FACES, load_notebook, notebook_config  # noqa: E402


class NoPictures:
    """The keeper's view for a script: each epoch's figure is closed unshown (the run folder keeps the grids)."""

    live = False

    def show(self, figure, kind, epoch=None):
        import matplotlib.pyplot as plt

        plt.close(figure)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(SHARED_FACES))
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--fid-samples", type=int, default=500)
    parser.add_argument("--weights", default="", help="local Inception weights for FID (torch-fidelity)")
    args = parser.parse_args()

    nb = load_notebook()
    work = Path(tempfile.mkdtemp(prefix="precision_quality_"))
    faces = nb.prepare_dataset(Path(args.data), 64, args.images, 0, work)
    real = nb.real_images_for_fid(faces.images, args.fid_samples, seed=0)
    device = torch.device("cpu")
    print(
        f"{len(faces.images)} images, 64 px, widths {args.width}, batch 128, {args.epochs} epochs, seed 0, CPU "
        f"({os.cpu_count()} cores, native bf16: {nb.cpu_has_native_bf16()})"
    )
    print(
        f"{'precision':>9} {'seconds':>8} {'loss D':>7} {'loss G':>7} {'D(x)':>6} {'D(G(z))':>8} {'FID':>7} {'KID':>7}"
    )
    for precision in ("fp32", "bf16"):
        run = work / precision
        config = notebook_config(
            nb,
            DATA_DIR=args.data,
            RUN_DIR=str(run),
            MAX_IMAGES=args.images,
            EPOCHS=args.epochs,
            G_WIDTH=args.width,
            D_WIDTH=args.width,
            PRECISION=precision,
            DEVICE="cpu",
            FID_SAMPLES=args.fid_samples,
            FID_REAL=args.fid_samples,
            FID_WEIGHTS=args.weights,
        )
        compute = nb.choose_compute(device, precision)
        paths = nb.make_run_folder(run)
        gan = nb.build_gan(config, compute)
        _, metrics, fixed_noise = nb.start_or_resume(gan, paths, config, compute)
        images = nb.place_images(faces.images, device)
        batches = nb.Batches(images, config.batch_size, config.random_flip, config.seed, compute)
        keeper = nb.RunKeeper(gan, metrics, fixed_noise, config, compute, paths, images, None, NoPictures())
        started = time.perf_counter()
        nb.train(gan, batches, fixed_noise, compute, keeper)
        seconds = time.perf_counter() - started
        name = f"real_{faces.key}_{len(real)}"
        scores = nb.measure_fid(gan.drawing_generator, real, name, config, device, work) or {}
        last = metrics["epochs"][-1]
        print(
            f"{precision:>9} {seconds:8.1f} {last['loss_d']:7.3f} {last['loss_g']:7.3f} {last['d_real']:6.2f} "
            f"{last['d_fake']:8.2f} {scores.get('fid', float('nan')):7.1f} {scores.get('kid', float('nan')):7.4f}"
        )
        print(
            "          per-epoch loss D:",
            " ".join(f"{row['loss_d']:.3f}" for row in metrics["epochs"]),
            "| loss G:",
            " ".join(f"{row['loss_g']:.3f}" for row in metrics["epochs"]),
        )


if __name__ == "__main__":
    main()
