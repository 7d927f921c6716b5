"""Which DCGAN-compatible tricks make every image count? FID/KID against held-out faces at a fixed budget.

Every run trains the notebook's own networks (build_gan, real_batch, epoch_random_sources, update_ema,
draw) on the same training split for the same number of epochs, then scores the sampling generator with
FID and KID against faces it never saw. The baseline row is the notebook's defaults before this screen
(batch 128, Adam lr 0.0002 for both networks, betas (0.5, 0.999), EMA 0.999, mirroring on), written out
below so later default changes do not move it, and uses the notebook's own train_step. Each variant
changes one thing; `adopted` combines the winners.

The split: the shared faces' files, sorted by name; random.Random(0).sample(files, 2000) are held out
(FID/KID's real images), the other 18,146 are the training set. Both are decoded by the notebook's
prepare_dataset from folders of symbolic links, so they never share a file.

    python benchmarks/recipe_screen.py --size 32 --epochs 4 --variants baseline,batch64 --seeds 0,1 \\
        --weights ../shared/models/fid-inception/weights-inception-2015-12-05-fidhelper-converted.pth
    python benchmarks/recipe_screen.py --table          # the results so far, as a markdown table

Results are appended to benchmarks/results/recipe_screen.jsonl (one line per scored generator), so the
variants can be run a few at a time; never run two at once on the same cores (timings and
throughput would be several times off).
"""

import argparse
import json
import os
import random
import sys
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.optim.swa_utils import AveragedModel  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_code import ROOT, SHARED_FACES, load_notebook, notebook_config  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "recipe_screen.jsonl"
HELD_OUT = 2000

# Each variant: the notebook parameters it changes, plus the step options it uses.
#   lr_d / lr_g: separate learning rates; spectral_norm: on every conv of D; real_target: one-sided
#   label smoothing; diffaugment: colour, translation and cutout on real and fake images before D;
#   extra_ema: more EMA copies tracked along (decay, first step), scored too (training is unchanged).
BEFORE = {"BATCH_SIZE": 128, "LR": 0.0002, "BETA1": 0.5, "EMA_DECAY": 0.999, "RANDOM_FLIP": True}
VARIANTS = {
    "baseline": BEFORE,  # the notebook's defaults before this screen
    "baseline+ema": {**BEFORE, "extra_ema": {"raw": None, "ema0.999_from_half": (0.999, "half")}},
    "batch64": {**BEFORE, "BATCH_SIZE": 64},
    "diffaugment": {**BEFORE, "diffaugment": True},
    "ttur": {**BEFORE, "lr_d": 0.0004, "lr_g": 0.0002},
    "betas0.0": {**BEFORE, "BETA1": 0.0},
    "spectral_norm": {**BEFORE, "spectral_norm": True},
    "smooth0.9": {**BEFORE, "real_target": 0.9},
    # each on top of batch 64, the first winner: do they add to it?
    "batch64+betas0.0": {**BEFORE, "BATCH_SIZE": 64, "BETA1": 0.0},
    "batch64+spectral_norm": {**BEFORE, "BATCH_SIZE": 64, "spectral_norm": True},
    "batch64+smooth0.9": {**BEFORE, "BATCH_SIZE": 64, "real_target": 0.9},
    "adopted": {**BEFORE, "BATCH_SIZE": 64},  # what won by more than the seed noise
}
STEP_OPTIONS = ("lr_d", "lr_g", "spectral_norm", "real_target", "diffaugment", "extra_ema")


def split_files(folder, held_out, seed=0):
    """(train files, held-out files): a seeded random sample of held_out files is held out."""
    files = sorted(path for path in Path(folder).iterdir() if path.suffix.lower() in {".jpg", ".png"})
    chosen = set(random.Random(seed).sample(files, held_out))
    return [path for path in files if path not in chosen], sorted(chosen)


def link_folder(files, folder):
    """A folder of symbolic links to files (made once), for the notebook's prepare_dataset."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        link = folder / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    return folder


# DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"),
# policy "color,translation,cutout", written from the paper's description.
def augment_colour(x):
    """Random brightness, saturation and contrast per image (differentiable)."""
    n = len(x)
    x = x + (torch.rand(n, 1, 1, 1, device=x.device) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device) + 0.5) + mean


def augment_translation(x, ratio=0.125):
    """Shift each image by up to ratio of its side in x and y, filling with zeros."""
    n, _, height, width = x.shape
    shift = int(height * ratio + 0.5)
    dy = torch.randint(-shift, shift + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-shift, shift + 1, (n, 1, 1), device=x.device)
    rows = (torch.arange(height, device=x.device).view(1, -1, 1) + dy + 1).clamp(0, height + 1)
    cols = (torch.arange(width, device=x.device).view(1, 1, -1) + dx + 1).clamp(0, width + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    batch = torch.arange(n, device=x.device).view(-1, 1, 1)
    return padded[batch, rows, cols].permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def augment_cutout(x, ratio=0.5):
    """Zero one random square of side ratio × image side in each image."""
    n, _, height, width = x.shape
    side = int(height * ratio + 0.5)
    top = torch.randint(0, height + 1 - side % 2, (n, 1, 1), device=x.device) - side // 2
    left = torch.randint(0, width + 1 - side % 2, (n, 1, 1), device=x.device) - side // 2
    rows = torch.arange(height, device=x.device).view(1, -1, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, -1)
    inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def diffaugment(x):
    """Colour, translation, then cutout."""
    return augment_cutout(augment_translation(augment_colour(x)))


def variant_step(nb, gan, real, noise, compute, augment, real_target):
    """The notebook's train_step with DiffAugment and/or a smoothed real target."""
    with compute.autocast():
        fake = gan.generator(noise)
        real_logits = gan.discriminator(augment(real))
        fake_logits = gan.discriminator(augment(fake.detach()))
        loss_d = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_target))
        loss_d = loss_d + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    gan.opt_d.zero_grad(set_to_none=True)
    gan.scaler.scale(loss_d).backward()
    gan.scaler.step(gan.opt_d)
    with nb.frozen(gan.discriminator), compute.autocast():
        loss_g = nb.generator_loss(gan.discriminator(augment(fake)))
    gan.opt_g.zero_grad(set_to_none=True)
    gan.scaler.scale(loss_g).backward()
    gan.scaler.step(gan.opt_g)
    gan.scaler.update()
    scores = [loss_d, loss_g, torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean()]
    return torch.stack(scores).detach().float()


def add_spectral_norm(gan, lr, betas):
    """Spectral normalisation on every convolution of D, with a fresh optimizer for its new parameters."""
    for module in gan.discriminator.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.utils.parametrizations.spectral_norm(module)
    gan.opt_d = torch.optim.Adam(gan.discriminator.parameters(), lr=lr, betas=betas)


def train_variant(nb, gan, images, config, compute, options):
    """Train for config.epochs with the variant's step; returns (seconds, images seen, extra EMA copies)."""
    steps_per_epoch = len(images) // config.batch_size
    total_steps = steps_per_epoch * config.epochs
    extra = {}
    for name, spec in options.get("extra_ema", {}).items():
        extra[name] = (None, None) if spec is None else (AveragedModel(gan.generator, use_buffers=True), spec)
    plain = not options.get("diffaugment") and options.get("real_target", 1.0) == 1.0
    augment = diffaugment if options.get("diffaugment") else (lambda x: x)
    device, size, layout = compute.device, config.batch_size, compute.memory_format
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        history = torch.zeros(steps_per_epoch, 4, device=device)  # read back once per epoch: no per-step sync
        order, random_source = nb.epoch_random_sources(config.seed, epoch, len(images), device)
        for step in range(steps_per_epoch):
            indices = order[step * size : (step + 1) * size]
            real = nb.real_batch(images, indices, config.random_flip, random_source, device, layout)
            noise = torch.randn(size, config.latent_dim, 1, 1, device=device, generator=random_source)
            target = options.get("real_target", 1.0)
            step_function = (
                nb.train_step if plain else partial(variant_step, nb, augment=augment, real_target=target)
            )
            history[step] = step_function(gan, real, noise, compute)
            global_step = (epoch - 1) * steps_per_epoch + step
            if gan.ema is not None:
                nb.update_ema(gan.ema, gan.generator, config.ema_decay, global_step)
            for ema, spec in extra.values():
                if ema is not None:
                    decay, first = spec
                    first = total_steps // 2 if first == "half" else first
                    if global_step >= first:
                        nb.update_ema(ema, gan.generator, decay, global_step - first)
        if not torch.isfinite(history).all():
            raise RuntimeError(f"diverged in epoch {epoch}")
    seconds = time.perf_counter() - started
    return seconds, total_steps * size, extra


def run(nb, args, variant, seed, train_images, real_images, real_name):
    """Train one variant with one seed, score its generator(s), append the rows to RESULTS."""
    options = VARIANTS[variant]
    overrides = {key: value for key, value in options.items() if key not in STEP_OPTIONS}
    config = notebook_config(
        nb,
        # RUN_DIR: never written (this script keeps no checkpoints), but the notebook refuses an empty one
        **{"DATA_DIR": args.data, "RUN_DIR": str(Path(args.work) / "run"), "IMAGE_SIZE": args.size},
        **{"EPOCHS": args.epochs},
        **{"SEED": seed, "PRECISION": "fp32", "DEVICE": "cpu", "FID_SAMPLES": args.fid_samples},
        **{"FID_WEIGHTS": args.weights, **overrides},
    )
    compute = nb.choose_compute(torch.device("cpu"), "fp32")
    gan = nb.build_gan(config, compute)
    betas = (config.beta1, 0.999)
    if options.get("spectral_norm"):
        add_spectral_norm(gan, config.lr, betas)
    for optimizer, key in ((gan.opt_d, "lr_d"), (gan.opt_g, "lr_g")):
        for group in optimizer.param_groups:
            group["lr"] = options.get(key, config.lr)
    images = nb.place_images(train_images, compute.device)
    seconds, seen, extra = train_variant(nb, gan, images, config, compute, options)
    saved = Path(args.work) / "generators" / f"{variant}_{args.size}px_seed{seed}"
    saved.mkdir(parents=True, exist_ok=True)
    # for a look at its faces, or the nearest-neighbour check (benchmarks/copy_check.py)
    nb.export_generator(gan.drawing_generator, config, saved)
    generators = {"ema0.999": gan.drawing_generator}
    generators.update(
        {name: gan.generator if ema is None else ema.module for name, (ema, _) in extra.items()}
    )
    for name, generator in generators.items():
        started = time.perf_counter()
        scores = nb.measure_fid(generator, real_images, real_name, config, compute.device, args.cache_dir)
        row = dict(variant=variant, seed=seed, generator=name, size=args.size, epochs=args.epochs)
        row.update(batch=config.batch_size, images_seen=seen, train_seconds=round(seconds, 1))
        row.update(
            images_per_second=round(seen / seconds, 1), fid_seconds=round(time.perf_counter() - started)
        )
        row.update({key: scores[key] for key in ("fid", "kid", "kid_std", "samples", "real")})
        row["command"] = " ".join(["python", *sys.argv])
        print(json.dumps(row), flush=True)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as handle:
            handle.write(json.dumps(row) + "\n")


def print_table():
    """The results so far as a markdown table."""
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    print("| px | variant | batch | generator | seed | images seen | FID | KID ×1000 | images/s (train) |")
    print("|---:|---|---:|---|---:|---:|---:|---:|---:|")
    for row in rows:
        kid = f"{row['kid'] * 1000:.1f} ± {row['kid_std'] * 1000:.1f}"
        print(
            f"| {row['size']} | {row['variant']} | {row['batch']} | {row['generator']} | {row['seed']} "
            f"| {row['images_seen']:,} "
            f"| {row['fid']:.1f} | {kid} | {row['images_per_second']:.0f} |"
        )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(SHARED_FACES))
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--variants", default="baseline")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--fid-samples", type=int, default=1000)
    parser.add_argument("--weights", default="", help="local Inception weights for FID (torch-fidelity)")
    parser.add_argument("--work", default="runs/recipe_screen", help="split folders and caches")
    parser.add_argument("--table", action="store_true", help="print the results so far and stop")
    args = parser.parse_args()
    if args.table:
        return print_table()
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    nb = load_notebook()
    work = Path(args.work)
    args.cache_dir = work / "cache"
    train_files, held_out_files = split_files(args.data, HELD_OUT)
    train = nb.prepare_dataset(link_folder(train_files, work / "train"), args.size, 0, 0, args.cache_dir)
    held_out = nb.prepare_dataset(
        link_folder(held_out_files, work / "held_out"), args.size, 0, 0, args.cache_dir
    )
    real_images = torch.from_numpy(held_out.images).permute(0, 3, 1, 2).contiguous()
    print(
        f"{len(train.images):,} training and {len(real_images):,} held-out faces at {args.size} px",
        flush=True,
    )
    real_name = f"held_out_{held_out.key}_{len(real_images)}"
    for variant in args.variants.split(","):
        for seed in (int(seed) for seed in args.seeds.split(",")):
            run(nb, args, variant, seed, train.images, real_images, real_name)


if __name__ == "__main__":
    main()
