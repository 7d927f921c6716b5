"""Check the claims of tests/test_6_learning.py (faces) and tests/test_6_game_2d.py (points in the plane): each
passes on the notebook's real loss functions, fails when the BCE targets are broken, and passes when all
three targets are swapped together (the same game, sign flipped).

For each variant this writes a copy of anime_gan.ipynb with the targets edited by exact string replacement
(each string must occur exactly once, so a changed notebook stops the check loudly instead of testing the
wrong thing), runs `python -m pytest -q` on each test file against the copy (ANIME_GAN_NOTEBOOK names it),
one run at a time, and prints a table. Exit status 0 only when every row is OK.

    python tests/sabotage_check.py            # about 5 x (35 + 17) s on 2 CPU cores
    python tests/sabotage_check.py tests/test_6_game_2d.py    # only the files named

Not collected by pytest (the name does not start with test_)."""

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "anime_gan.ipynb"

REAL_1 = "real_loss = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))"
REAL_0 = "real_loss = F.binary_cross_entropy_with_logits(real_logits, torch.zeros_like(real_logits))"
FAKE_0 = "fake_loss = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))"
FAKE_1 = "fake_loss = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))"
GEN_1 = "return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))"
GEN_0 = "return F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))"

# -q: the README's quiet output; no:importnb: where importnb is installed, its pytest plugin would collect
# (and train) every test twice; no:cacheprovider: no .pytest_cache written for the throwaway copies.
PYTEST_OPTIONS = ["-q", "-p", "no:importnb", "-p", "no:cacheprovider"]
TEST_FILES = ["tests/test_6_learning.py", "tests/test_6_game_2d.py"]

# name: (what it does, the (old, new) replacements, the expected outcome of each file in TEST_FILES)
VARIANTS = {
    "real": ("the notebook as it is", [], "pass"),
    "a": ("D's targets swapped (real 0, fake 1), G's target 1", [(REAL_1, REAL_0), (FAKE_0, FAKE_1)], "fail"),
    "b": ("real target 0 (fake 0, G 1)", [(REAL_1, REAL_0)], "fail"),
    "c": ("G's target 0 (real 1, fake 0)", [(GEN_1, GEN_0)], "fail"),
    "d": (
        "all three swapped (real 0, fake 1, G 0)",
        [(REAL_1, REAL_0), (FAKE_0, FAKE_1), (GEN_1, GEN_0)],
        "pass",
    ),
}


def edited(text, replacements):
    """text with each old string (which must occur exactly once) replaced by its new one."""
    for old, new in replacements:
        count = text.count(old)
        if count != 1:
            raise SystemExit(
                f"{NOTEBOOK.name} holds {count} copies of {old!r} (expected exactly 1): "
                "the loss functions changed, so update the replacement strings in this script."
            )
        text = text.replace(old, new)
    return text


def run_tests(notebook_path, test_file):
    """Run test_file against notebook_path: ("pass" | "fail" | "error", pytest's summary, seconds)."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *PYTEST_OPTIONS, test_file],
        cwd=ROOT,
        env={**os.environ, "ANIME_GAN_NOTEBOOK": str(notebook_path)},
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    lines = [line for line in result.stdout.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    summary = (
        re.sub(r" in [\d.]+s.*", "", lines[-1].strip("= ")) if lines else f"(exit status {result.returncode})"
    )
    outcome = {0: "pass", 1: "fail"}.get(result.returncode, "error")
    if outcome == "fail" and " error" in summary:  # a fixture broke: not the failure the test should give
        outcome = "error"
    return outcome, summary, seconds


def main(test_files):
    text = NOTEBOOK.read_text(encoding="utf-8")
    copies = {name: edited(text, replacements) for name, (_, replacements, _) in VARIANTS.items()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="sabotage_") as folder:
        for name, (description, _, expected) in VARIANTS.items():
            path = Path(folder) / f"anime_gan_{name}.ipynb"
            path.write_text(copies[name], encoding="utf-8")
            for test_file in test_files:
                print(f"variant {name}: {description}: {test_file} ...", file=sys.stderr, flush=True)
                observed, summary, seconds = run_tests(path, test_file)
                test = Path(test_file).stem
                rows.append(
                    (name, test, description, expected, observed, observed == expected, seconds, summary)
                )
    print(
        f"{'variant':<8} {'test':<14} {'expected':<8} {'observed':<8} {'OK':<3} {'seconds':>7}  {'pytest':<20} targets"
    )
    for name, test, description, expected, observed, ok, seconds, summary in rows:
        print(
            f"{name:<8} {test:<14} {expected:<8} {observed:<8} {'yes' if ok else 'NO':<3} {seconds:>7.0f}  {summary:<20} {description}"
        )
    return 0 if all(row[5] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or TEST_FILES))
