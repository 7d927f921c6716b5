"""The tables of samples/RESULTS.md, printed as Markdown from a run folder's metrics.json.

Reads only what the notebook wrote (RUN_DIR/metrics.json), so every figure in RESULTS.md can be
reproduced from the run folder:

    python benchmarks/run_report.py runs/reference25
"""

import argparse
import json
import sys
from pathlib import Path


def batch_size_of(row):
    """The run's BATCH_SIZE, from an epoch row (images/s is rounded to 0.1, far finer than one image/step)."""
    return round(row["images_per_second"] * row["seconds"] / row["steps"])


def epoch_table(epochs, snapshots=None):
    """One Markdown row per epoch: mean losses, mean D scores, seconds and images/s; with the first epoch's
    snapshots (metrics.json's first_epoch_snapshots), a line saying how much of epoch 1 they took."""
    lines = ["| epoch | loss D | loss G | D(x) | D(G(z)) | seconds | images/s |", "| ---: " * 7 + "|"]
    for row in epochs:
        scores = f"{row['loss_d']:.3f} | {row['loss_g']:.3f} | {row['d_real']:.2f} | {row['d_fake']:.2f}"
        lines.append(f"| {row['epoch']} | {scores} | {row['seconds']:.0f} | {row['images_per_second']:.1f} |")
    steps, batch_size = sum(row["steps"] for row in epochs), batch_size_of(epochs[0])
    seconds = sum(row["seconds"] for row in epochs)
    lines.append("")
    lines.append(
        f"{len(epochs)} epochs, {steps:,} steps of {batch_size}, {steps * batch_size:,} images seen in {seconds:,.0f} s "
        f"of training ({steps * batch_size / seconds:.1f} images/s overall)."
    )
    if snapshots and any(row["epoch"] == 1 for row in epochs):
        lines.append(
            f"Epoch 1's time includes {snapshots['seconds']:.1f} s of drawing the first epoch's snapshots "
            f"(after steps {', '.join(map(str, snapshots['steps']))}; plots/first_epoch.png)."
        )
    return "\n".join(lines)


def fid_table(rows):
    """One Markdown row per FID/KID measurement, by epoch then generator."""
    lines = [
        "| epoch | generator | FID | KID | KID ± | generated | real |",
        "| ---: | --- " + "| ---: " * 5 + "|",
    ]
    for row in sorted(rows, key=lambda row: (row["epoch"], row["generator"])):
        kid = f"{row['kid']:.4f} | {row['kid_std']:.4f}"
        name = "EMA" if row["generator"] == "ema" else row["generator"]
        lines.append(
            f"| {row['epoch']} | {name} | {row['fid']:.1f} | {kid} | {row['samples']:,} | {row['real']:,} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", help="a run folder written by anime_gan.ipynb")
    args = parser.parse_args()
    path = Path(args.run_dir) / "metrics.json"
    if not path.is_file():
        sys.exit(f"{path} does not exist: give the RUN_DIR of a run of the notebook.")
    metrics = json.loads(path.read_text())
    snapshots = metrics.get("first_epoch_snapshots")  # runs before the snapshots were recorded have none
    print(epoch_table(metrics["epochs"], snapshots) if metrics["epochs"] else "No epoch finished yet.")
    print()
    print(fid_table(metrics["fid"]) if metrics["fid"] else "No FID/KID in this run.")


if __name__ == "__main__":
    main()
