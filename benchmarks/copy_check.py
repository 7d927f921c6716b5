"""Does a trained generator copy? Its faces' nearest training images, against real faces' nearest other ones.

Uses the notebook's load_generator, generate_images and nearest_images on an exported generator (a folder
with generator.safetensors and generator.json, e.g. one written by recipe_screen.py) and a decoded
training set (a CACHE_DIR .npy of the same image size).

    python benchmarks/copy_check.py runs/recipe_screen/generators/adopted_64px_seed0 \\
        --images runs/recipe_screen/cache/faces_64px_<key>.npy
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_code import load_notebook  # noqa: E402


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("generator", help="folder with generator.safetensors and generator.json")
    parser.add_argument("--images", required=True, help="the training set as a (N, S, S, 3) uint8 .npy")
    parser.add_argument("--count", type=int, default=64, help="generated faces (and real faces) to check")
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args()

    nb = load_notebook()
    folder = Path(args.generator)
    generator, spec = nb.load_generator(folder / "generator.safetensors", folder / "generator.json")
    train = np.load(args.images)
    faces = nb.generate_images(generator, args.count, spec["latent_dim"], args.seed, torch.device("cpu"))
    started = time.perf_counter()
    nearest = nb.nearest_images(faces, train, k=1)[1][:, 0]
    seconds = time.perf_counter() - started
    real = torch.from_numpy(train[: args.count]).permute(0, 3, 1, 2)
    real_nearest = nb.nearest_images(real, train, k=2)[1][:, 1]  # [:, 0] is the face itself
    print(f"{args.count} generated faces against {len(train):,} training faces: {seconds:.1f} s")
    print(
        f"generated -> nearest training face: median {nearest.median():.1f}, range {nearest.min():.1f}-{nearest.max():.1f}"
    )
    print(
        f"real -> nearest other training face: median {real_nearest.median():.1f}, min {real_nearest.min():.1f}"
    )


if __name__ == "__main__":
    main()
