"""How should samples be drawn? FID of the raw and EMA generators of a finished run, in eval and train mode.

The notebook samples from the EMA generator in eval mode, with batch-norm statistics averaged along with
the weights (AveragedModel(use_buffers=True)). This script measures that choice against the
alternatives on a run's checkpoint, with the same noise and the same real images for every row:

- raw / EMA generator, eval mode (batch norm uses running statistics: each face depends only on its noise);
- raw / EMA generator, train mode (batch norm uses the statistics of the batch of 500 being drawn);
- EMA weights with the raw generator's batch-norm statistics (what use_buffers=False keeps: it copies the
  buffers over after every update instead of averaging them), eval mode.

    python benchmarks/ema_sampling.py runs/reference --weights ../shared/models/fid-inception/weights-inception-2015-12-05-fidhelper-converted.pth
"""

import argparse
import copy
import os
import sys
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_code import load_notebook, notebook_config  # noqa: E402


@torch.no_grad()
def draw_in_mode(nb, generator, noise, train_mode, batch_size=500):
    """uint8 images from a copy of generator in train or eval mode (the copy keeps the original's buffers intact)."""
    model = copy.deepcopy(generator).train(train_mode)
    return torch.cat([nb.to_uint8(model(chunk)) for chunk in noise.split(batch_size)])


def only_cache(cache_dir, image_size):
    """The one decoded-faces cache of this image size in cache_dir; exits saying what to pass otherwise."""
    found = sorted(Path(cache_dir).glob(f"faces_{image_size}px_*.npy"))
    if len(found) != 1:
        names = ", ".join(path.name for path in found) or "none"
        sys.exit(
            f"{cache_dir} holds {len(found)} caches of {image_size} px faces ({names}): pass the run's with --images."
        )
    return found[0]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", help="a finished run folder (its checkpoint is read)")
    parser.add_argument(
        "--cache-dir", default="runs/cache", help="the run's CACHE_DIR (its decoded images are read)"
    )
    parser.add_argument(
        "--images",
        default="",
        help="the run's decoded faces (CACHE_DIR/faces_<size>px_<key>.npy), if several",
    )
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--real", type=int, default=1000)
    parser.add_argument("--weights", default="", help="local Inception weights for FID")
    args = parser.parse_args()

    nb = load_notebook()
    paths = nb.run_paths(args.run_dir)
    state = nb.read_checkpoint(paths.checkpoint)
    # Parameters newer than the checkpoint (PLAY_GAME_2D, HUB_REPO, HUB_PUBLIC, ...) take their defaults; ones
    # the notebook no longer has are dropped.
    defaults = asdict(notebook_config(nb))
    saved = {name: value for name, value in state["config"].items() if name in defaults}
    config = nb.Config(**{**defaults, **saved, "fid_weights": args.weights})
    compute = nb.Compute(torch.device("cpu"), "fp32", channels_last=False)
    gan = nb.build_gan(config, compute)
    nb.load_training_state(gan, state)
    cache_dir = Path(args.cache_dir)
    cache = Path(args.images) if args.images else only_cache(cache_dir, config.image_size)
    import numpy as np

    real = nb.real_images_for_fid(np.load(cache), args.real, config.seed)
    noise = torch.randn(args.samples, config.latent_dim, 1, 1, generator=torch.Generator().manual_seed(12345))
    # What AveragedModel(use_buffers=False) draws with: averaged weights, but the raw generator's batch-norm
    # statistics (it copies the buffers over after every update instead of averaging them).
    unaveraged = copy.deepcopy(gan.ema.module)
    for name, buffer in gan.generator.named_buffers():
        unaveraged.get_buffer(name).copy_(buffer)
    candidates = [
        ("EMA, eval mode, averaged BN statistics (notebook)", gan.ema.module, False),
        ("EMA, train mode (batch statistics)", gan.ema.module, True),
        ("raw, eval mode", gan.generator, False),
        ("raw, train mode (batch statistics)", gan.generator, True),
        ("EMA weights, raw BN statistics (use_buffers=False)", unaveraged, False),
    ]
    print(
        f"run {args.run_dir}: epoch {state['epoch']}, {config.image_size} px, EMA decay {config.ema_decay}; "
        f"{args.samples} samples vs {len(real)} real images, same noise for every row"
    )
    print(f"{'sampling':<52} {'FID':>7} {'KID':>8}")
    for name, generator, train_mode in candidates:
        fakes = draw_in_mode(nb, generator, noise, train_mode)
        scores = nb.fid_kid(
            fakes,
            real,
            f"real_ema_probe_{cache.stem}_{len(real)}",
            cache_dir,
            args.weights,
            torch.device("cpu"),
        )
        print(f"{name:<52} {scores['fid']:7.1f} {scores['kid']:8.4f}")


if __name__ == "__main__":
    main()
