"""FID and KID of the EMA generators that benchmarks/gpu_check.sh exported, against real faces they never
trained on: the files of --faces (default ../shared/data/anime-faces/images) not listed in the check's
trained_faces.txt (with the default offline pack, the 2,000 faces gpu_pack.sh held out). It runs on the CPU,
on the machine that trained them or any other that has the check's --out folder and the faces.

    python benchmarks/gpu_fid.py OUT --weights ../shared/models/fid-inception/weights-inception-2015-12-05-fidhelper-converted.pth

OUT is the check's --out folder (generators.json, generator_eNNN.safetensors, trained_faces.txt). The notebook's
own load_generator, generate_images and fid_kid do the work; ~3.5 min per 1,000 images on a 2-core CPU.
"""

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_code import SHARED_FACES, load_notebook  # noqa: E402


def held_out_folder(faces, trained_list, count, seed=0):
    """A temporary folder of links to `count` faces of the folder `faces` that are not in trained_list."""
    trained = set(Path(trained_list).read_text().split())
    suffixes = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
    files = [
        path
        for path in sorted(Path(faces).iterdir())
        if path.suffix.lower() in suffixes and path.name not in trained
    ]
    if not files:
        raise SystemExit(f"gpu_fid: every face in {faces} was trained on: give --faces a folder with others")
    chosen = sorted(random.Random(seed).sample(files, min(count, len(files))))
    folder = Path(tempfile.mkdtemp(prefix="held_out_faces_"))
    for path in chosen:
        (folder / path.name).symlink_to(path.resolve())
    return folder


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", help="the --out folder of benchmarks/gpu_check.sh")
    parser.add_argument("--weights", default="", help="local Inception weights (FID_WEIGHTS)")
    parser.add_argument("--samples", type=int, default=1000, help="generated images per generator")
    parser.add_argument("--real", type=int, default=2000, help="held-out real faces")
    parser.add_argument("--faces", default=str(SHARED_FACES), help="real faces, some never trained on")
    parser.add_argument(
        "--cache", default="runs/cache", help="where decoded faces and FID features are cached"
    )
    args = parser.parse_args()
    folder = Path(args.folder)
    nb = load_notebook()
    record = json.loads((folder / "generators.json").read_text())
    spec_path = Path(tempfile.mkdtemp()) / "generator.json"
    spec_path.write_text(json.dumps(record["spec"]))
    faces = nb.prepare_dataset(
        held_out_folder(args.faces, folder / record["trained_faces"], args.real),
        record["spec"]["image_size"],
        0,
        0,
        args.cache,
    )
    real = torch.from_numpy(faces.images).permute(0, 3, 1, 2).contiguous()
    cpu = torch.device("cpu")
    name = nb.real_features_name(faces.key, len(real), 0, cpu)
    print(
        f"{len(real)} real faces never trained on ({record['faces']:,} were); {args.samples} generated per "
        f"generator; CPU, torch {torch.__version__}"
    )
    print(f"{'epoch':>5} {'images seen':>12} {'FID':>8} {'KID':>8} {'± std':>7}")
    for export in record["exports"]:
        generator, spec = nb.load_generator(folder / export["file"], spec_path)
        fakes = nb.generate_images(generator, args.samples, spec["latent_dim"], 1, cpu)
        scores = nb.fid_kid(fakes, real, name, args.cache, args.weights, cpu)
        print(
            f"{export['epoch']:>5} {export['images_seen']:>12,} {scores['fid']:>8.2f} {scores['kid']:>8.4f} "
            f"{scores['kid_std']:>7.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
