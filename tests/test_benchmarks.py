"""benchmarks/gpu_check.sh, the GPU check, in its --smoke mode: the same steps as on a GPU (device tests,
training and exporting generators, the notebook end to end, QUICK, a resume on the CPU, the speed
comparison), at tiny sizes on the CPU, with the device spelled "cpu:0" (an indexed device, like a GPU's
cuda:0, which once crashed the first training step). If it breaks here, it would break on a GPU, after the
owner has set it up and waited for it."""

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
    assert "(finished, " in (out / "summary.md").read_text()


def test_tiny_speed_figures_say_they_are_not_steady_state(smoke):
    """The smoke run's speed figures come from a fraction of a second: every one says so."""
    _, out = smoke
    rows = [
        line for line in (out / "summary.md").read_text().splitlines() if line.startswith("| speed batch")
    ]
    assert rows and all(row.count("not a steady-state figure") >= 2 for row in rows), rows
    train = next(
        line for line in (out / "summary.md").read_text().splitlines() if "train the default" in line
    )
    assert "96 distinct faces" in train and "each face seen 10 times" in train, train
    assert "not a steady-state figure" in train


def test_the_summary_is_rewritten_after_every_step(tmp_path):
    """A run stopped by a time limit keeps the rows it finished."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_check import Summary

    summary = Summary(0.0, tmp_path, "check")
    summary.run("first", lambda: "one")
    assert "| first | ok |" in (tmp_path / "summary.md").read_text()
    summary.run("second", lambda: 1 / 0)
    text = (tmp_path / "summary.md").read_text()
    assert "| second | FAILED |" in text and "ZeroDivisionError" in text and "running: 2 steps" in text
    summary.write(done=True)
    assert "(finished, " in (tmp_path / "summary.md").read_text()


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
    # the notebook's setup line "Training on cpu (CPU), fp32 | run folder: ..." as gpu_check.py reads it
    assert "resumed on cpu: cpu (CPU), fp32;" in row and "epoch 2" in row


def test_generators_come_back_and_draw(smoke, nb):
    _, out = smoke
    record = json.loads((out / "generators.json").read_text())
    assert [row["epoch"] for row in record["exports"]] == [5, 10] and record["faces"] == 96
    assert len((out / record["trained_faces"]).read_text().split()) == 96  # what gpu_fid.py holds out
    spec = out / "spec.json"
    spec.write_text(json.dumps(record["spec"]))
    for row in record["exports"]:
        generator, _ = nb.load_generator(out / row["file"], spec)
        images = nb.draw(generator, torch.randn(4, record["spec"]["latent_dim"], 1, 1))
        assert images.shape == (4, 3, 32, 32) and images.float().std() > 1  # not a blank image


def test_full_mode_without_a_gpu_stops_before_doing_anything(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    command = ["bash", str(SCRIPT), "--out", str(tmp_path / "out"), "--data", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0 and "no CUDA GPU" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("arguments", [["--fast"], ["--out"]])
def test_a_wrong_option_is_a_usage_error(arguments):
    result = subprocess.run(["bash", str(SCRIPT), *arguments], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "usage" in result.stderr
