"""benchmarks/gpu_check.sh, the one-shot GPU check, in its --smoke mode: the same steps as on the GPU machine
(device tests, the notebook end to end, QUICK, a resume on the CPU, the speed comparison, training and
exporting generators), at tiny sizes on the CPU, with the device spelled "cpu:0" (an indexed device, like the
GPU's cuda:0, which once crashed the first training step). If it breaks here, it would break on the GPU machine, where
each minute counts against a 15-minute budget."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Run the smoke mode once; returns (completed process, out folder)."""
    out = tmp_path_factory.mktemp("gpu_check") / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(SCRIPT), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    return result, out


def test_every_step_succeeds(smoke):
    result, out = smoke
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    rows = [
        line
        for line in (out / "summary.md").read_text().splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    steps = {row.split("|")[1].strip(): row.split("|")[2].strip() for row in rows[1:]}
    expected = {"device tests", "notebook QUICK", "resume on the CPU", "speed batch 16"}
    skipped = {"notebook in each precision", "notebook COMPILE"}
    assert expected | skipped | {"train the default schedule"} == set(steps)
    assert all(steps[step] == "ok" for step in expected | {"train the default schedule"}), steps
    assert (out / "gpu_check.log").stat().st_size > 1000


def test_the_notebook_ran_headless_with_an_indexed_device(smoke):
    """The resume step's first run: the whole notebook, headless, with DEVICE "cpu:0"."""
    _, out = smoke
    executed = json.loads((out.parent / "out_work" / "resume.ipynb").read_text())
    assert executed["metadata"]["papermill"]["parameters"]["DEVICE"] == "cpu:0"
    metrics = json.loads((out.parent / "out_work" / "resume" / "metrics.json").read_text())
    assert [row["steps"] for row in metrics["epochs"]] == [2, 2]  # then resumed on "cpu" for epoch 2


def test_the_resume_step_really_resumed_on_the_cpu(smoke):
    _, out = smoke
    row = next(line for line in (out / "summary.md").read_text().splitlines() if "resume on the CPU" in line)
    assert "resumed on cpu: device: cpu" in row and "epoch 2" in row


def test_generators_come_back_and_draw(smoke, nb):
    _, out = smoke
    record = json.loads((out / "generators.json").read_text())
    assert [row["epoch"] for row in record["exports"]] == [5, 10] and record["faces"] == 96
    spec = out / "spec.json"
    spec.write_text(json.dumps(record["spec"]))
    for row in record["exports"]:
        generator, _ = nb.load_generator(out / row["file"], spec)
        images = nb.draw(generator, torch.randn(4, record["spec"]["latent_dim"], 1, 1))
        assert images.shape == (4, 3, 32, 32) and images.float().std() > 1  # not a blank image


def test_full_mode_without_a_gpu_stops_before_doing_anything(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0 and "no CUDA GPU" in result.stderr
    assert not (tmp_path / "out" / "summary.md").exists()


def test_a_wrong_option_is_a_usage_error():
    result = subprocess.run(["bash", str(SCRIPT), "--fast"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "usage" in result.stderr
