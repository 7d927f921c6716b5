"""Training speed: the notebook's training step and data path against a faithful tutorial-style baseline.

Both run in this one process, on the same images, device, model widths and batch size, interleaved
A/B/A/B after a warm-up. Prints images/s, the ratio, and the fraction of the device's measured matmul
peak that each reaches (from the FLOPs of one training step, counted by torch's FlopCounterMode).
Also times first-time decoding, cached reload, and (on CPU) each precision / memory-layout variant.

    python benchmarks/train_speed.py                      # CPU, ~5 minutes on 2 cores
    python benchmarks/train_speed.py --device cuda --images 15000 --rounds 5
    python benchmarks/train_speed.py --device cuda --data .gpu_faces/images   # on the lent GPU machine

On CUDA it sets cuDNN up as the notebook does (configure_cuda), and the notebook's share of the peak is
taken against the matmul peak of the number format it trains in (fp16 against fp16, bf16 against bf16).
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would garble the table
import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from torchvision import transforms  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_code import SHARED_FACES, load_notebook, notebook_config  # noqa: E402


# ---- the baseline: the PyTorch DCGAN tutorial's models and loop, at the same sizes ----------------
class TutorialGenerator(nn.Module):
    """pytorch/tutorials dcgan_faces_tutorial Generator (64 px), with its sizes as arguments."""

    def __init__(self, nz, ngf):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, x):
        return self.main(x)


class TutorialDiscriminator(nn.Module):
    """pytorch/tutorials dcgan_faces_tutorial Discriminator (64 px): Sigmoid output for BCELoss."""

    def __init__(self, ndf):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(3, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return self.main(x)


def tutorial_loader(files, image_size, batch_size, workers):
    """torchvision ImageFolder + DataLoader with the tutorial's PIL transforms, over `files` (symlinked)."""
    root = Path(tempfile.mkdtemp(prefix="tutorial_faces_"))
    (root / "faces").mkdir()
    for path in files:
        (root / "faces" / path.name).symlink_to(path.resolve())
    dataset = torchvision.datasets.ImageFolder(
        root=str(root),
        transform=transforms.Compose(
            [
                transforms.Resize(image_size),
                transforms.CenterCrop(image_size),
                transforms.ToTensor(),
                transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
            ]
        ),
    )
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True
    )


def tutorial_epoch(loader, net_g, net_d, opt_g, opt_d, latent_dim, device):
    """One epoch of the tutorial's loop: decode every epoch, BCELoss on sigmoid, fp32, .item() per step."""
    criterion, images = nn.BCELoss(), 0
    for data in loader:
        net_d.zero_grad()
        real = data[0].to(device)
        label = torch.full((real.size(0),), 1.0, device=device)
        err_real = criterion(net_d(real).view(-1), label)
        err_real.backward()
        fake = net_g(torch.randn(real.size(0), latent_dim, 1, 1, device=device))
        label.fill_(0.0)
        output = net_d(fake.detach()).view(-1)
        err_fake = criterion(output, label)
        err_fake.backward()
        d_g_z1 = output.mean().item()
        opt_d.step()
        net_g.zero_grad()
        label.fill_(1.0)
        output = net_d(fake).view(-1)
        err_g = criterion(output, label)
        err_g.backward()
        opt_g.step()
        _ = (err_real + err_fake).item(), err_g.item(), d_g_z1, output.mean().item()
        images += real.size(0)
    return images


# ---- measurement helpers --------------------------------------------------------------------------
def sync(device):
    """Wait for queued device work, so a timer reads finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device):
    """(seconds, result) of one call, with the device synchronised before and after."""
    sync(device)
    started = time.perf_counter()
    result = function()
    sync(device)
    return time.perf_counter() - started, result


def matmul_peak_gflops(device, dtype, size, repeats=10):
    """Best achieved GFLOP/s of a size³ matmul in dtype: the peak the fractions below are relative to."""
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    for _ in range(2):
        a @ b
    best = min(timed(lambda: a @ b, device)[0] for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def flops_per_image(nb, config, hardware, images):
    """FLOPs of one notebook training step, divided by the batch size."""
    gan = nb.build_gan(config, hardware)
    real = nb.real_batch(
        images, torch.arange(config.batch_size, device=hardware.device), True, None, hardware.device
    )
    noise = torch.randn(config.batch_size, config.latent_dim, 1, 1, device=hardware.device)
    with FlopCounterMode(display=False) as counter:
        nb.train_step(gan, real, noise, hardware)
    return counter.get_total_flops() / config.batch_size


PEAK_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def main(argv=None):
    """Run the comparison; returns its figures (images/s, shares of peak) for benchmarks/gpu_check.py."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(SHARED_FACES), help="folder of face images")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--images", type=int, default=1024, help="images per timed round (one epoch)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--width", type=int, default=64, help="G_WIDTH and D_WIDTH")
    parser.add_argument("--rounds", type=int, default=3, help="timed A/B rounds after one warm-up round each")
    parser.add_argument(
        "--epochs-per-round", type=int, default=1, help="notebook epochs per round (raise on GPUs)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="DataLoader workers of the baseline (tutorial: 2)"
    )
    parser.add_argument(
        "--peak-size", type=int, default=0, help="matmul side for the peak (0: 8192 GPU, 2048 CPU)"
    )
    parser.add_argument(
        "--variants", action="store_true", help="also time each precision / layout / compile variant"
    )
    parser.add_argument(
        "--full-decode", action="store_true", help="also time decoding and reloading the whole folder"
    )
    args = parser.parse_args(argv)
    if args.image_size != 64:
        parser.error("--image-size: the tutorial's networks (the baseline) are 64 px only")
    if not Path(args.data).is_dir():
        parser.error(f"--data {args.data!r} is not a folder of images (../shared is not on the GPU machine)")

    nb = load_notebook()
    cache = Path(tempfile.mkdtemp(prefix="bench_cache_"))
    config = notebook_config(
        nb,
        DATA_DIR=args.data,
        RUN_DIR=str(cache),
        IMAGE_SIZE=args.image_size,
        MAX_IMAGES=args.images,
        BATCH_SIZE=args.batch_size,
        G_WIDTH=args.width,
        D_WIDTH=args.width,
        DEVICE=args.device,
        LOG_EVERY=20,
        EPOCHS=10**6,
    )
    device = nb.pick_device(config.device)
    precision = nb.pick_precision("auto", device)
    hardware = nb.choose_hardware(device, precision)  # as the notebook does
    if device.type == "cuda":
        nb.configure_cuda(precision, deterministic=False)  # cudnn.benchmark, as the notebook sets it
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}"
    )
    print(
        f"setup: {args.images} images of {args.image_size} px, batch {args.batch_size}, widths {args.width}, "
        f"notebook default on this device: {hardware}"
    )

    if args.full_decode:  # the whole folder, as a first run of the notebook meets it
        full_cache = Path(tempfile.mkdtemp(prefix="bench_full_cache_"))
        seconds, full = timed(
            lambda: nb.prepare_dataset(Path(args.data), args.image_size, 0, 0, full_cache), device
        )
        print(
            f"whole folder, first-time decode: {len(full.images)} images in {seconds:.1f} s = {len(full.images) / seconds:,.0f} images/s"
        )
        seconds, _ = timed(
            lambda: nb.prepare_dataset(Path(args.data), args.image_size, 0, 0, full_cache), device
        )
        print(
            f"whole folder, cached reload:     {len(full.images)} images in {seconds:.1f} s = {len(full.images) / seconds:,.0f} images/s"
        )
    # First-time decode (all cores) and cached reload of the timed subset, through the notebook's prepare_dataset.
    seconds, faces = timed(
        lambda: nb.prepare_dataset(Path(args.data), args.image_size, args.images, 0, cache), device
    )
    print(
        f"first-time decode: {len(faces.images)} images in {seconds:.2f} s = {len(faces.images) / seconds:,.0f} images/s"
    )
    seconds, _ = timed(
        lambda: nb.prepare_dataset(Path(args.data), args.image_size, args.images, 0, cache), device
    )
    print(
        f"cached reload:     {len(faces.images)} images in {seconds:.2f} s = {len(faces.images) / seconds:,.0f} images/s"
    )
    images = nb.place_images(faces.images, device)

    gan = nb.build_gan(config, hardware)
    epoch_counter = iter(range(1, 10**6))

    def notebook_round():
        for _ in range(args.epochs_per_round):
            nb.train_one_epoch(gan, images, next(epoch_counter), config, hardware)
        return args.epochs_per_round * (len(images) // args.batch_size) * args.batch_size

    files = nb.choose_files(nb.find_image_files(Path(args.data)), args.images, 0)
    loader = tutorial_loader(files, args.image_size, args.batch_size, args.workers)
    net_g = TutorialGenerator(config.latent_dim, args.width).to(device)
    net_d = TutorialDiscriminator(args.width).to(device)
    adam = dict(lr=2e-4, betas=(0.5, 0.999))
    opt_g, opt_d = torch.optim.Adam(net_g.parameters(), **adam), torch.optim.Adam(net_d.parameters(), **adam)

    def baseline_round():
        return sum(
            tutorial_epoch(loader, net_g, net_d, opt_g, opt_d, config.latent_dim, device)
            for _ in range(args.epochs_per_round)
        )

    speeds = {"notebook": [], "baseline": []}
    for round_index in range(args.rounds + 1):  # round 0 is the warm-up
        for name, run in (("notebook", notebook_round), ("baseline", baseline_round)):
            seconds, count = timed(run, device)
            if round_index:
                speeds[name].append(count / seconds)
            print(
                f"  round {round_index}{' (warm-up)' if not round_index else ''} {name:>8}: {count / seconds:8,.1f} images/s"
            )

    flops = flops_per_image(nb, config, hardware, images)
    dtypes = {torch.float32, PEAK_DTYPES[precision]} | ({torch.bfloat16} if device.type == "cpu" else set())
    peak_size = args.peak_size or (8192 if device.type == "cuda" else 2048)
    peak = {dtype: matmul_peak_gflops(device, dtype, peak_size) for dtype in sorted(dtypes, key=str)}
    notebook_peak = peak[PEAK_DTYPES[precision]]
    notebook, baseline = statistics.median(speeds["notebook"]), statistics.median(speeds["baseline"])
    print(
        f"\nFLOPs per image per training step: {flops / 1e9:.2f} GFLOP; measured matmul peak: "
        + ", ".join(f"{str(k).split('.')[-1]} {v:,.0f} GFLOP/s" for k, v in peak.items())
    )
    print(f"{'':>10} {'images/s':>10} {'GFLOP/s':>9} {'% of peak':>10}")
    print(
        f"{'notebook':>10} {notebook:10,.1f} {notebook * flops / 1e9:9,.1f} {100 * notebook * flops / 1e9 / notebook_peak:9.1f}%"
        f"   ({precision}, channels_last={hardware.channels_last})"
    )
    print(
        f"{'baseline':>10} {baseline:10,.1f} {baseline * flops / 1e9:9,.1f} {100 * baseline * flops / 1e9 / peak[torch.float32]:9.1f}%   (fp32)"
    )
    print(
        f"ratio notebook / baseline: {notebook / baseline:.2f}x (median of {args.rounds} interleaved rounds each)"
    )

    if args.variants:
        time_variants(nb, config, device, images, args)
    return {
        "device": str(device),
        "precision": precision,
        "batch_size": args.batch_size,
        "notebook_images_per_s": notebook,
        "baseline_images_per_s": baseline,
        "ratio": notebook / baseline,
        "notebook_share_of_peak": notebook * flops / 1e9 / notebook_peak,
        "baseline_share_of_peak": baseline * flops / 1e9 / peak[torch.float32],
        "gflop_per_image": flops / 1e9,
    }


def time_variants(nb, config, device, images, args):
    """images/s of the notebook step for each precision, memory layout and (optionally) torch.compile."""
    variants = [("fp32", False, False), ("fp32", True, False), ("bf16", False, False), ("bf16", True, False)]
    if device.type == "cuda":
        variants += [("fp16", True, False), ("bf16", True, True)]
    else:
        variants += [("bf16", True, True)]
    print("\nvariants of the notebook step (median of interleaved rounds):")
    results = {variant: [] for variant in variants}
    gans = {}
    for round_index in range(args.rounds + 1):
        for precision, channels_last, compiled in variants:
            hardware = nb.Hardware(device, precision, channels_last)
            key = (precision, channels_last, compiled)
            if key not in gans:
                variant_config = replace(config, compile=compiled)
                gans[key] = (nb.build_gan(variant_config, hardware), hardware, variant_config)
            gan, hardware, variant_config = gans[key]
            seconds, _ = timed(partial(nb.train_one_epoch, gan, images, 1, variant_config, hardware), device)
            count = (len(images) // config.batch_size) * config.batch_size
            if round_index:
                results[key].append(count / seconds)
            elif compiled:
                print(f"  compile warm-up round: {seconds:.1f} s")
    base = statistics.median(results[("fp32", False, False)])
    for (precision, channels_last, compiled), speeds in results.items():
        speed = statistics.median(speeds)
        print(
            f"  {precision} channels_last={channels_last!s:5} compile={compiled!s:5}: {speed:8,.1f} images/s"
            f"  ({speed / base:.2f}x fp32)"
        )


if __name__ == "__main__":
    main()
