"""Section 6, "The training loop": an interrupted epoch is undone. A stop inside a training step (inside G's
update, while D is frozen) leaves D trainable and the networks at the last checkpoint, and running the
training cell again on the same objects ends bit-identical to a straight run; an fp16 gradient scaler stopped
between its step() and update() does not break the next run; a stop while drawing leaves the generator
training; NaN losses stop training with advice and save nothing of their epoch, and NaN pixels are refused;
running the training cell twice never repeats an epoch."""

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import CPU, cpu_hardware, files_below, tiny_config, train_epochs, train_run

STEPS_PER_EPOCH = 4  # 64 images, BATCH_SIZE 16


# ---------------------------------------------------------------------------------------------------------
# A stop inside a training step


def state_of(gan):
    return copy.deepcopy({name: getattr(gan, name).state_dict() for name in ("generator", "discriminator")})


def same_tensors(a, b):
    return all(torch.equal(a[net][key], b[net][key]) for net in a for key in a[net])


@pytest.fixture(scope="module")
def straight_run(nb, default_parameters, tiny_images, tmp_path_factory):
    """Two fp32 epochs without interruption: (the final networks' state, metrics)."""
    config = tiny_config(
        nb, default_parameters, tmp_path_factory.mktemp("straight") / "run", PRECISION="fp32"
    )
    gan, metrics, _ = train_run(nb, config, cpu_hardware(nb), tiny_images)
    return state_of(gan), metrics


def losses_only(metrics):
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_second")} for row in metrics]


def stop_inside_the_generator_update(nb, monkeypatch, gan, stop_at_call, training):
    """The training cell (train_epochs(nb, gan, *training)) stopped by a KeyboardInterrupt inside the
    stop_at_call-th generator loss, as a user pressing stop there. True if D was frozen at that moment."""
    real_loss, calls, frozen = nb.generator_loss, [], []

    def stopping_loss(logits):
        calls.append(1)
        if len(calls) == stop_at_call:
            frozen.append(not any(p.requires_grad for p in gan.discriminator.parameters()))
            raise KeyboardInterrupt
        return real_loss(logits)

    monkeypatch.setattr(nb, "generator_loss", stopping_loss)
    with pytest.raises(KeyboardInterrupt):
        train_epochs(nb, gan, *training)
    monkeypatch.setattr(nb, "generator_loss", real_loss)
    return frozen == [True]


@pytest.mark.parametrize("stop_at_call", [3, 7], ids=["epoch-1", "epoch-2"])
def test_stop_inside_the_generator_update_then_run_the_cell_again(
    nb, default_parameters, tiny_images, straight_run, tmp_path, monkeypatch, stop_at_call
):
    """KeyboardInterrupt inside G's update (D frozen at that moment): D is trainable again, the networks are
    back at the last checkpoint, and calling train() again on the same objects, as re-running the training
    cell does, ends bit-identical to the straight run."""
    config = tiny_config(nb, default_parameters, tmp_path / "run", PRECISION="fp32")
    hardware = cpu_hardware(nb, "fp32")
    paths = nb.make_run_folder(config.run_dir)
    gan = nb.build_gan(config, hardware)
    _, metrics, fixed_noise = nb.start_or_resume(gan, paths, config, nb.choose_compute(CPU, "fp32"))
    training = (tiny_images, metrics, fixed_noise, config, hardware, paths)
    # 4 steps an epoch: call 3 is in epoch 1, call 7 in epoch 2
    assert stop_inside_the_generator_update(
        nb, monkeypatch, gan, stop_at_call, training
    )  # while D was frozen
    assert all(p.requires_grad for p in gan.discriminator.parameters())
    checkpoint = nb.read_checkpoint(paths.checkpoint)
    assert same_tensors(state_of(gan), {k: checkpoint[k] for k in ("generator", "discriminator")})
    assert [row["epoch"] for row in metrics["epochs"]] == list(range(1, checkpoint["epoch"] + 1))

    train_epochs(nb, gan, tiny_images, metrics, fixed_noise, config, hardware, paths)  # the cell, run again
    expected_state, expected_metrics = straight_run
    assert same_tensors(state_of(gan), expected_state)
    assert losses_only(metrics["epochs"]) == losses_only(expected_metrics["epochs"])


def test_a_stop_between_the_fp16_scalers_step_and_update_leaves_the_next_run_working(
    nb, default_parameters, tiny_images, tmp_path, monkeypatch
):
    """fp16, what "auto" picks on a T4: a stop inside G's update comes after the gradient scaler stepped D's
    optimizer and before its update(). Running the cell again trains every epoch. Catches a rewind that keeps
    that scaler, which then refuses every later step ("step() has already been called since the last
    update()") until the GAN is built anew. The scaler runs on the CPU here, on fp32 losses: its bookkeeping
    is the same."""
    config = tiny_config(nb, default_parameters, tmp_path / "run", PRECISION="fp32")
    hardware = cpu_hardware(nb, "fp32")
    paths = nb.make_run_folder(config.run_dir)
    gan = nb.build_gan(config, hardware)
    gan.scaler = torch.amp.GradScaler("cpu", enabled=True)
    _, metrics, fixed_noise = nb.start_or_resume(gan, paths, config, hardware)
    training = (tiny_images, metrics, fixed_noise, config, hardware, paths)
    stop_inside_the_generator_update(nb, monkeypatch, gan, 3, training)  # in epoch 1, after D's step
    train_epochs(nb, gan, tiny_images, metrics, fixed_noise, config, hardware, paths)  # the cell, run again
    assert [row["epoch"] for row in metrics["epochs"]] == list(range(1, config.epochs + 1))
    assert gan.scaler.is_enabled() and nb.read_checkpoint(paths.checkpoint)["scaler"]


def test_a_stop_while_drawing_leaves_the_generator_training(nb):
    """A stop (or running out of memory) inside draw's forward pass: the generator is back in training mode.
    Catches draw leaving it in eval mode: with EMA_DECAY 0 the generator that draws is the one that trains,
    and it would train on with batch norm's running statistics, unlike a straight run."""

    class Stops(torch.nn.Module):
        def forward(self, images):
            raise KeyboardInterrupt

    generator = torch.nn.Sequential(nb.build_generator(16, 8, 32), Stops())
    with pytest.raises(KeyboardInterrupt):
        nb.draw(generator, torch.randn(4, 16, 1, 1))
    assert all(module.training for module in generator.modules())


def test_frozen_restores_gradients_when_the_block_fails(nb):
    network = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError), nb.frozen(network):
        assert not any(p.requires_grad for p in network.parameters())
        raise ValueError("stopped")
    assert all(p.requires_grad for p in network.parameters())


# ---------------------------------------------------------------------------------------------------------
# The NaN guard


def test_nan_loss_stops_training_with_advice_and_keeps_epoch_1(
    nb, default_parameters, tiny_images, tmp_path, monkeypatch
):
    """Losses turn NaN in epoch 2: NonFiniteLossError suggests a lower LR and fp32; nothing of epoch 2 is saved."""
    config = tiny_config(nb, default_parameters, tmp_path / "run", EPOCHS=3)
    real_step, calls, checkpoints = nb.train_step, [], []

    def diverging_step(*args):
        calls.append(1)
        scores = real_step(*args)
        return scores if len(calls) <= STEPS_PER_EPOCH else scores * float("nan")

    real_save_checkpoint = nb.save_checkpoint

    def recording_save_checkpoint(path, *args):
        real_save_checkpoint(path, *args)
        checkpoints.append(Path(path).read_bytes())

    monkeypatch.setattr(nb, "train_step", diverging_step)
    monkeypatch.setattr(nb, "save_checkpoint", recording_save_checkpoint)
    with pytest.raises(nb.NonFiniteLossError) as raised:
        train_run(nb, config, cpu_hardware(nb), tiny_images)

    message = str(raised.value)
    assert "epoch 2" in message
    assert "Lower LR" in message
    assert "PRECISION = 'fp32'" in message
    paths = nb.run_paths(config.run_dir)
    assert len(checkpoints) == 2  # the starting point (epoch 0) and epoch 1, nothing of epoch 2
    assert paths.checkpoint.read_bytes() == checkpoints[-1]  # epoch 1's, untouched
    assert nb.read_checkpoint(paths.checkpoint)["epoch"] == 1
    assert files_below(paths.samples) == ["epoch_001.png"]
    assert not (paths.samples / "epoch_002.png").exists()
    assert [row["epoch"] for row in json.loads(paths.metrics.read_text())["epochs"]] == [1]


def test_nan_pixels_from_the_generator_are_refused(nb, tmp_path):
    """The second guard: a generator with NaN weights must not produce a sample grid."""
    generator = nb.build_generator(16, 8, 32)
    with torch.no_grad():
        generator[0].weight.fill_(float("nan"))
    with pytest.raises(nb.NonFiniteLossError, match="PRECISION = 'fp32'"):
        nb.draw(generator, torch.randn(4, 16, 1, 1))


# ---------------------------------------------------------------------------------------------------------
# The training cell run again


def test_running_the_training_cell_twice_never_repeats_an_epoch(
    nb, default_parameters, tiny_images, tmp_path, capsys
):
    """train() starts after the last epoch in metrics, so re-running the cell cannot retrain or overwrite epochs,
    and says how to train longer; with EPOCHS raised it trains the new epochs only."""
    hardware = cpu_hardware(nb, "fp32")
    config = tiny_config(nb, default_parameters, tmp_path / "run", PRECISION="fp32", EPOCHS=2)
    gan, metrics, paths = train_run(nb, config, hardware, tiny_images)
    checkpoint = paths.checkpoint.read_bytes()
    fixed_noise = nb.read_checkpoint(paths.checkpoint)["fixed_noise"]
    capsys.readouterr()
    train_epochs(nb, gan, tiny_images, metrics, fixed_noise, config, hardware, paths)
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    assert paths.checkpoint.read_bytes() == checkpoint
    assert "All 2 epochs are trained. To train longer, raise EPOCHS;" in capsys.readouterr().out
    train_epochs(nb, gan, tiny_images, metrics, fixed_noise, replace(config, epochs=3), hardware, paths)
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2, 3]
    assert "epochs are trained" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "change", [dict(IMAGE_SIZE=64), dict(G_WIDTH=16), dict(LATENT_DIM=8), dict(D_WIDTH=4)]
)
def test_networks_older_than_the_parameters_stop_the_training_cell(nb, default_parameters, tmp_path, change):
    """A parameter that shapes the networks changed and 'Check every value' run again, but not the cell that
    builds the GAN: the training cell stops before it writes anything, and says which cells to run. Catches
    a new run that saves the old networks as epoch 0 under the new settings (no later run could resume it)."""
    hardware = cpu_hardware(nb, "fp32")
    gan = nb.build_gan(tiny_config(nb, default_parameters, tmp_path / "old"), hardware)
    config = tiny_config(nb, default_parameters, tmp_path / "run", **change)
    paths = nb.make_run_folder(config.run_dir)
    with pytest.raises(
        nb.ConfigError,
        match="networks are older than the parameters: .*its form and every cell below the forms",
    ):
        nb.start_or_resume(gan, paths, config, hardware)
    assert not [path for path in paths.root.rglob("*") if path.is_file()]


def test_images_older_than_the_parameters_stop_the_training_cell(
    nb, default_parameters, tiny_images, tmp_path
):
    """IMAGE_SIZE changed, the GAN built again, but the images not decoded again: the keeper stops before the
    first checkpoint. Catches 64 px networks trained on 32 px batches."""
    hardware = cpu_hardware(nb, "fp32")
    config = tiny_config(nb, default_parameters, tmp_path / "run", IMAGE_SIZE=64)
    paths = nb.make_run_folder(config.run_dir)
    gan = nb.build_gan(config, hardware)
    _, metrics, fixed_noise = nb.start_or_resume(gan, paths, config, hardware)
    assert tiny_images.shape[1] == 32
    with pytest.raises(nb.ConfigError, match="images are older than the parameters"):
        nb.RunKeeper(gan, metrics, fixed_noise, config, hardware, paths, tiny_images)
    assert not paths.checkpoint.exists()
