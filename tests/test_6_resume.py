"""Section 6, "The training loop": a resumed run ends exactly where an uninterrupted one ends. In-process, as
the notebook's cells are wired (conftest.train_run), in fp32 and bf16: one epoch, then a fresh Gan resumed
from the checkpoint to epoch 2, and a stop (KeyboardInterrupt) in the middle of epoch 2 then a resume, each
bit-identical to two epochs in one go. Through the notebook's own cells (conftest.resume_chain): a second run
continues instead of restarting, ends bit-identical to a straight one, and goes on in bf16 and back in fp32.
What a checkpoint holds and which resumes it accepts or refuses: test_6_checkpoints.py; an epoch undone in
place after a stop or a NaN: test_6_interruptions.py; going back to an earlier epoch: test_6_keep_the_past.py."""

import copy
import json
import types
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import assert_identical, cpu_hardware, files_below, tiny_config, train_run

PRECISIONS = ("fp32", "bf16")  # the CPU precisions (conftest.cpu_hardware pairs bf16 with channels-last)
STEPS_PER_EPOCH = 4  # 64 images, BATCH_SIZE 16


def training_state(gan):
    """Everything training changes, as (deep-copied) state dicts."""
    return copy.deepcopy(
        {
            "generator": gan.generator.state_dict(),
            "discriminator": gan.discriminator.state_dict(),
            "opt_g": gan.opt_g.state_dict(),
            "opt_d": gan.opt_d.state_dict(),
            "ema": gan.ema.state_dict(),
            "scaler": gan.scaler.state_dict(),
        }
    )


def loss_fields(metrics):
    """The metrics without their wall-time fields (which differ from run to run)."""
    epochs = [
        {k: v for k, v in row.items() if k not in ("seconds", "images_per_second")}
        for row in metrics["epochs"]
    ]
    return {"epochs": epochs, "steps": metrics["steps"], "fid": metrics["fid"]}


def leftover_temp_files(folder):
    return [p for p in Path(folder).rglob("*") if p.name.startswith(".tmp.")]


@pytest.fixture(scope="module", params=list(PRECISIONS))
def straight_run(request, nb, default_parameters, tiny_images, tmp_path_factory):
    """Two epochs in one go, the reference every resumed run must match bit for bit."""
    precision = request.param
    config = tiny_config(
        nb, default_parameters, tmp_path_factory.mktemp("straight") / "run", PRECISION=precision
    )
    assert config.epochs == 2
    gan, metrics, paths = train_run(nb, config, cpu_hardware(nb, precision), tiny_images)
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    assert metrics["epochs"][0]["steps"] == STEPS_PER_EPOCH
    return types.SimpleNamespace(
        precision=precision, state=training_state(gan), metrics=copy.deepcopy(metrics), paths=paths
    )


# ---------------------------------------------------------------------------------------------------------
# Exact resume and interruption, in-process


def test_resume_from_checkpoint_is_bit_identical_to_a_straight_run(
    nb, default_parameters, tiny_images, straight_run, tmp_path
):
    """1 epoch, then a fresh Gan (other random weights) resumed from the checkpoint to epoch 2 == 2 epochs straight."""
    precision = straight_run.precision
    hardware = cpu_hardware(nb, precision)
    config = tiny_config(nb, default_parameters, tmp_path / "run", PRECISION=precision, EPOCHS=1)
    first_gan, _, paths = train_run(nb, config, hardware, tiny_images)
    assert nb.read_checkpoint(paths.checkpoint)["epoch"] == 1
    # Sanity: after one epoch the weights differ from the final ones, so the comparison below means something.
    assert not torch.equal(first_gan.generator[0].weight, straight_run.state["generator"]["0.weight"])

    gan, metrics, _ = train_run(nb, replace(config, epochs=2), hardware, tiny_images, init_seed=12345)

    assert_identical(training_state(gan), straight_run.state)
    assert loss_fields(metrics) == loss_fields(straight_run.metrics)
    assert loss_fields(json.loads(paths.metrics.read_text())) == loss_fields(straight_run.metrics)
    assert_identical(
        nb.read_checkpoint(paths.checkpoint)["generator"], straight_run.state["generator"], "checkpoint"
    )
    sample = "samples/epoch_002.png"
    assert (paths.root / sample).read_bytes() == (straight_run.paths.root / sample).read_bytes()


def test_keyboard_interrupt_mid_epoch_keeps_last_checkpoint_and_resume_matches(
    nb, default_parameters, tiny_images, straight_run, tmp_path, monkeypatch
):
    """Stop (KeyboardInterrupt) in the middle of epoch 2: epoch 1's checkpoint survives, and resuming finishes
    with exactly the straight run's state."""
    precision = straight_run.precision
    hardware = cpu_hardware(nb, precision)
    config = tiny_config(nb, default_parameters, tmp_path / "run", PRECISION=precision)
    real_step, calls = nb.train_step, []

    def interrupted_step(*args):
        calls.append(1)
        if len(calls) == STEPS_PER_EPOCH + 3:  # the third step of epoch 2
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(nb, "train_step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        train_run(nb, config, hardware, tiny_images)
    monkeypatch.setattr(nb, "train_step", real_step)

    paths = nb.run_paths(config.run_dir)
    state = nb.read_checkpoint(paths.checkpoint)
    assert state["epoch"] == 1
    assert [row["epoch"] for row in state["metrics"]["epochs"]] == [1]
    assert [row["epoch"] for row in json.loads(paths.metrics.read_text())["epochs"]] == [1]
    assert files_below(paths.samples) == ["epoch_001.png"]
    assert leftover_temp_files(paths.root) == []

    gan, metrics, _ = train_run(nb, config, hardware, tiny_images, init_seed=999)
    assert_identical(training_state(gan), straight_run.state)
    assert loss_fields(metrics) == loss_fields(straight_run.metrics)


# ---------------------------------------------------------------------------------------------------------
# Through the notebook's own cells (conftest.resume_chain)


@pytest.fixture(scope="module")
def chain(resume_chain):
    return resume_chain


def test_resume_continues_instead_of_restarting(chain):
    """conftest.resume_chain: EPOCHS 1, then EPOCHS 2 in the same RUN_DIR."""
    assert "Starting a new run." in chain.texts["first"]
    assert "Resuming after epoch 1 of 2" in chain.texts["resumed"]
    assert "PLAY_GAME_2D is False: the 2-D game is skipped." in chain.texts["first"]  # TINY skips it
    assert not (chain.after["first"] / "plots" / "game_2d.png").exists()
    metrics = json.loads((chain.after["resumed"] / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    assert "Epoch 1/2 took" not in chain.texts["resumed"] and "Epoch 2/2 took" in chain.texts["resumed"]
    first_grid = chain.after["first"] / "samples" / "epoch_001.png"
    again = chain.after["resumed"] / "samples" / "epoch_001.png"
    assert again.read_bytes() == first_grid.read_bytes()  # the same file, not written again:
    assert again.stat().st_mtime_ns == first_grid.stat().st_mtime_ns  # (copytree keeps the time)


def comparable_checkpoint(path):
    """A checkpoint's state without what differs between a resumed run and a straight one by design: the
    config (RUN_DIR), the timings, and the FID rows (compared in test_9_evaluate.py)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    for row in state["metrics"]["epochs"]:
        del row["seconds"], row["images_per_second"]
    del state["metrics"]["fid"]
    state["metrics"]["first_epoch_snapshots"].pop("seconds")  # how long drawing the snapshots took
    return {key: value for key, value in state.items() if key != "config"}


def test_resumed_notebook_run_is_bit_identical_to_a_straight_one(chain):
    """The notebook's own cells, not a copy of their wiring: EPOCHS 1 then a resumed EPOCHS 2 ends with the
    same networks, optimizers, EMA, fixed noise, losses and pictures, bit for bit, as EPOCHS 2 in one go."""
    resumed, straight = chain.after["resumed"], chain.after["straight"]
    samples = [f"samples/epoch_00{epoch}.png" for epoch in (1, 2)]
    # Sanity: training moved the weights, so equal files below mean something.
    assert (straight / samples[0]).read_bytes() != (straight / samples[1]).read_bytes()
    expected = comparable_checkpoint(straight / "checkpoints" / "checkpoint.pt")
    actual = comparable_checkpoint(resumed / "checkpoints" / "checkpoint.pt")
    assert expected["epoch"] == actual["epoch"] == 2
    assert_identical(actual, expected, "checkpoint")
    for name in (*samples, "generated.png", "interpolation.png", "generator.safetensors"):
        assert (resumed / name).read_bytes() == (straight / name).read_bytes(), name


def test_end_to_end_fp32_run_resumes_in_bf16_and_back(resume_chain):
    """conftest.resume_chain: an fp32 run (EPOCHS 2) goes on in bf16 (EPOCHS 3), then in fp32 again (EPOCHS 4)."""
    text = resume_chain.texts["bf16"]
    assert "Resuming after epoch 2 of 3" in text and "changed PRECISION" in text
    assert "Training on cpu (CPU), bf16" in text
    text = resume_chain.texts["fp32"]
    assert "Resuming after epoch 3 of 4" in text and "changed PRECISION" in text
    metrics = json.loads((resume_chain.final / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(metrics["steps"][key])).all() for key in ("loss_d", "loss_g"))
