"""Training speed: the notebook's training step and data path against a faithful tutorial-style baseline.

Both run in this one process, on the same images, device, model widths and batch size, interleaved
A/B/A/B after a warm-up round each (cuDNN autotuning, compilation, DataLoader start). Each images/s
figure is the images of its timed rounds over their seconds, and rounds go on until each side has at
least --min-seconds (10) of timed training. Prints the ratio and the fraction of the device's measured
matmul peak that each reaches (from the FLOPs of one training step, counted by torch's FlopCounterMode).
Also times first-time decoding, cached reload, the tutorial's DataLoader alone, and (--variants) each
precision / memory-layout / torch.compile variant of the notebook's step.

    python benchmarks/train_speed.py                      # CPU, ~5 minutes on 2 cores
    python benchmarks/train_speed.py --device cuda --data DIR --images 15000   # DIR: a folder of faces

Each side computes in its own number format, and its share of the peak is taken against the matmul peak
of that format: the notebook's step in the precision the notebook picks (fp16 against fp16, bf16 against
bf16; "fp32" turns TF32 off), after configure_cuda as the notebook calls it; the tutorial loop with
PyTorch's defaults, under which cuDNN computes fp32 convolutions in TF32 on Ampere and newer GPUs (so
against the TF32 peak there, fp32 elsewhere), without cudnn.benchmark, fed by its JPEG DataLoader.
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
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


def matmul_peak_gflops(device, number_format, size, repeats=10):
    """Best achieved GFLOP/s of a size³ matmul in number_format (tf32: fp32 with TF32 tensor cores allowed):
    the peak the fractions below are relative to."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if number_format == "tf32" else "highest")
    try:
        a, b = (torch.randn(size, size, device=device).to(PEAK_DTYPES[number_format]) for _ in range(2))
        for _ in range(2):
            a @ b
        best = min(timed(lambda: a @ b, device)[0] for _ in range(repeats))
    finally:
        torch.set_float32_matmul_precision(previous)
    return 2 * size**3 / best / 1e9


def conv_tf32(allowed=None):
    """Whether cuDNN may compute fp32 convolutions in TF32 (PyTorch's default: yes, on GPUs that have it);
    sets it first if allowed is given. The legacy flag cudnn.allow_tf32, the one the notebook's configure_cuda
    sets: setting torch 2.9's cudnn.conv.fp32_precision alone would make every later read of allow_tf32 raise."""
    if allowed is not None:
        torch.backends.cudnn.allow_tf32 = allowed
    return torch.backends.cudnn.allow_tf32


def cudnn_settings(settings=None):
    """(cudnn.benchmark, TF32 convolutions) now; sets them first if settings is given."""
    if settings is not None:
        torch.backends.cudnn.benchmark = settings[0]
        conv_tf32(settings[1])
    return torch.backends.cudnn.benchmark, conv_tf32()


def with_settings(settings, function):
    """function, run under these cuDNN settings (CUDA only): each side of the comparison keeps its own."""

    def run():
        if settings is not None:
            cudnn_settings(settings)
        return function()

    return run


def timed_rounds(sides, device, rounds, min_seconds, warm_up=1):
    """Time each side (name -> function returning the images it trained on) in interleaved rounds, after
    `warm_up` untimed rounds each (cuDNN autotuning, compilation, DataLoader start). Rounds go on until each
    side has at least `rounds` timed rounds and `min_seconds` of timed work. Returns name -> {images,
    seconds, images_per_s (images over seconds), rounds (per-round images/s), warm_up_seconds}."""
    results = {name: {"images": 0, "seconds": 0.0, "rounds": [], "warm_up_seconds": 0.0} for name in sides}
    round_index = 0
    while True:
        pending = [
            name
            for name, result in results.items()
            if round_index < warm_up or len(result["rounds"]) < rounds or result["seconds"] < min_seconds
        ]
        if not pending:
            break
        for name in pending:
            seconds, count = timed(sides[name], device)
            result = results[name]
            if round_index < warm_up:
                result["warm_up_seconds"] += seconds
                label = " (warm-up)"
            else:
                result["images"] += count
                result["seconds"] += seconds
                result["rounds"].append(count / seconds)
                label = ""
            print(
                f"  round {round_index}{label} {name:>8}: {count / seconds:8,.1f} images/s ({seconds:.1f} s)"
            )
        round_index += 1
    for result in results.values():
        result["images_per_s"] = result["images"] / result["seconds"]
    return results


def loader_alone(loader, device, min_seconds):
    """images/s of the tutorial's DataLoader by itself (batches moved to device, no training), after one
    untimed epoch, over whole epochs until at least min_seconds."""

    def epoch():
        return sum(data[0].to(device).size(0) for data in loader)

    timed(epoch, device)
    images, seconds = 0, 0.0
    while not images or seconds < min_seconds:
        spent, count = timed(epoch, device)
        images, seconds = images + count, seconds + spent
    return images / seconds, seconds


def steady(seconds):
    """A note for a figure timed over fewer than STEADY_SECONDS (whatever --min-seconds asked for)."""
    return f" [only {seconds:.1f} s timed: not a steady-state figure]" if seconds < STEADY_SECONDS else ""


def flops_per_image(nb, config, compute, images):
    """FLOPs of one notebook training step, divided by the batch size."""
    gan = nb.build_gan(config, compute)
    indices = torch.arange(config.batch_size, device=images.device)
    real = nb.real_batch(images, indices, True, None, compute.device, compute.memory_format)
    noise = torch.randn(config.batch_size, config.latent_dim, 1, 1, device=compute.device)
    with FlopCounterMode(display=False) as counter:
        nb.train_step(gan, real, noise, compute)
    return counter.get_total_flops() / config.batch_size


PEAK_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
STEADY_SECONDS = 10  # the least timed training behind a speed figure


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
    parser.add_argument(
        "--rounds", type=int, default=3, help="timed A/B rounds at least, after one warm-up round each"
    )
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=STEADY_SECONDS,
        help="timed seconds at least behind each images/s figure (more rounds until then)",
    )
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
        parser.error(f"--data {args.data!r} is not a folder of images: give --data DIR")

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
    compute = nb.choose_compute(device, precision)  # as the notebook does
    tutorial_settings = notebook_settings = None
    if device.type == "cuda":
        tutorial_settings = cudnn_settings()  # PyTorch's defaults, as the tutorial runs
        nb.configure_cuda(
            precision, deterministic=False
        )  # cudnn.benchmark and TF32, as the notebook sets them
        notebook_settings = cudnn_settings()
    # The number format each side computes its convolutions in, for its share of the peak.
    tf32_here = device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8  # Ampere or newer
    notebook_format = "tf32" if precision == "fp32" and tf32_here and notebook_settings[1] else precision
    tutorial_format = "tf32" if tf32_here and tutorial_settings[1] else "fp32"
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}"
    )
    print(
        f"setup: {args.images} images of {args.image_size} px, batch {args.batch_size}, widths {args.width}, "
        f"notebook default on this device: {compute.describe()}, channels-last {compute.channels_last}"
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

    gan = nb.build_gan(config, compute)
    batches = nb.Batches(images, config.batch_size, config.random_flip, config.seed, compute)
    epoch_counter = iter(range(1, 10**6))

    def notebook_round():
        for _ in range(args.epochs_per_round):
            nb.train_one_epoch(gan, batches.epoch(next(epoch_counter)), compute)
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

    sides = {
        "notebook": with_settings(notebook_settings, notebook_round),
        "baseline": with_settings(tutorial_settings, baseline_round),
    }
    speeds = timed_rounds(sides, device, args.rounds, args.min_seconds)
    loader_speed, loader_seconds = loader_alone(loader, device, args.min_seconds)
    if notebook_settings is not None:
        cudnn_settings(notebook_settings)

    flops = flops_per_image(nb, config, compute, images)
    formats = {"fp32", notebook_format, tutorial_format} | ({"bf16"} if device.type == "cpu" else set())
    peak_size = args.peak_size or (8192 if device.type == "cuda" else 2048)
    peak = {name: matmul_peak_gflops(device, name, peak_size) for name in sorted(formats)}
    notebook, baseline = speeds["notebook"]["images_per_s"], speeds["baseline"]["images_per_s"]
    notebook_share = notebook * flops / 1e9 / peak[notebook_format]
    baseline_share = baseline * flops / 1e9 / peak[tutorial_format]
    baseline_limit = (
        "its JPEG DataLoader" if baseline >= 0.8 * loader_speed else "its training step (not its DataLoader)"
    )
    print(
        f"\nFLOPs per image per training step: {flops / 1e9:.2f} GFLOP; measured matmul peak: "
        + ", ".join(f"{name} {value:,.0f} GFLOP/s" for name, value in peak.items())
    )
    print(f"{'':>10} {'images/s':>10} {'timed s':>8} {'GFLOP/s':>9} {'% of peak':>10}")
    print(
        f"{'notebook':>10} {notebook:10,.1f} {speeds['notebook']['seconds']:8.1f} {notebook * flops / 1e9:9,.1f} "
        f"{100 * notebook_share:9.1f}%   ({precision}, channels_last={compute.channels_last}; against the "
        f"{notebook_format} peak){steady(speeds['notebook']['seconds'])}"
    )
    print(
        f"{'baseline':>10} {baseline:10,.1f} {speeds['baseline']['seconds']:8.1f} {baseline * flops / 1e9:9,.1f} "
        f"{100 * baseline_share:9.1f}%   (the tutorial loop: {tutorial_format} convolutions, fed by its JPEG "
        f"DataLoader with {args.workers} workers; against the {tutorial_format} peak)"
        f"{steady(speeds['baseline']['seconds'])}"
    )
    print(
        f"{'loader':>10} {loader_speed:10,.1f} {loader_seconds:8.1f}   the tutorial's DataLoader alone (decode, "
        f"resize, to {device}): the baseline ran at {100 * baseline / loader_speed:.0f}% of it, so {baseline_limit} "
        f"limits it{steady(loader_seconds)}"
    )
    print(
        f"ratio notebook / baseline: {notebook / baseline:.2f}x (images over seconds of "
        f"{len(speeds['notebook']['rounds'])} and {len(speeds['baseline']['rounds'])} interleaved timed rounds, "
        f"after a warm-up round each of {speeds['notebook']['warm_up_seconds']:.1f} and "
        f"{speeds['baseline']['warm_up_seconds']:.1f} s)"
    )

    if args.variants:
        time_variants(nb, config, device, images, args)
    return {
        "device": str(device),
        "precision": precision,
        "batch_size": args.batch_size,
        "notebook_images_per_s": notebook,
        "baseline_images_per_s": baseline,
        "loader_images_per_s": loader_speed,
        "notebook_seconds": speeds["notebook"]["seconds"],
        "baseline_seconds": speeds["baseline"]["seconds"],
        "loader_seconds": loader_seconds,
        "ratio": notebook / baseline,
        "notebook_format": notebook_format,
        "baseline_format": tutorial_format,
        "baseline_limit": baseline_limit,
        "notebook_share_of_peak": notebook_share,
        "baseline_share_of_peak": baseline_share,
        "gflop_per_image": flops / 1e9,
    }


def time_variants(nb, config, device, images, args):
    """images/s of the notebook step for each precision, memory layout and (optionally) torch.compile, each
    timed over at least --min-seconds after a warm-up round; the compiled variant's warm-up on its own line."""
    variants = [("fp32", False, False), ("fp32", True, False), ("bf16", False, False), ("bf16", True, False)]
    if device.type == "cuda":
        variants += [("fp16", True, False), ("bf16", True, True)]
    else:
        variants += [("bf16", True, True)]
    print("\nvariants of the notebook step (images over seconds of interleaved timed rounds):")
    count = (len(images) // config.batch_size) * config.batch_size
    sides = {}
    for precision, channels_last, compiled in variants:
        compute = nb.Compute(device, precision, channels_last)
        variant_config = replace(config, compile=compiled)
        gan = nb.build_gan(variant_config, compute)
        batches = nb.Batches(images, config.batch_size, config.random_flip, config.seed, compute)
        # On a GPU, each variant computes as the notebook sets it up for its precision: fp32 without TF32.
        settings = (True, precision != "fp32") if device.type == "cuda" else None

        def epoch(gan=gan, batches=batches, compute=compute):
            nb.train_one_epoch(gan, batches.epoch(1), compute)
            return count

        name = f"{precision} channels_last={channels_last!s:5} compile={compiled!s:5}"
        sides[name] = with_settings(settings, epoch)
    results = timed_rounds(sides, device, args.rounds, args.min_seconds)
    base = results[next(iter(sides))]["images_per_s"]
    for (*_, compiled), (name, result) in zip(variants, results.items()):
        speed = result["images_per_s"]
        print(
            f"  {name}: {speed:8,.1f} images/s over {result['seconds']:.1f} s  ({speed / base:.2f}x fp32)"
            f"{steady(result['seconds'])}"
        )
        if compiled:
            later = result["seconds"] / len(result["rounds"])
            print(
                f"  {name}: compile: its warm-up epoch took {result['warm_up_seconds']:.1f} s against "
                f"{later:.1f} s for a timed one"
            )


if __name__ == "__main__":
    main()
