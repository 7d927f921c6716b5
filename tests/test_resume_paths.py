"""The resume paths a Colab user walks: a checkpoint from another precision (fp32, bf16, fp16 with its gradient
scaler) or another device (a CUDA GPU) resumes here, and a stop in the middle of a training step leaves a
notebook that continues exactly where the last checkpoint left off.

All on the CPU: fp16 with a gradient scaler runs there too (torch.amp.GradScaler("cpu")), which is what a T4
does on the GPU. The end-to-end runs (papermill) cover the CPU precisions fp32 and bf16."""

import copy
import json

import pytest
import torch
from conftest import cpu_hardware, tiny_config, train_epochs, train_run

CPU = torch.device("cpu")
PRECISIONS = ("fp32", "bf16", "fp16")


def one_epoch_checkpoint(nb, default_parameters, tiny_images, run_dir, precision):
    """Train one epoch under `precision` and return its checkpoint's state."""
    config = tiny_config(nb, default_parameters, run_dir, PRECISION=precision, EPOCHS=1)
    _, _, paths = train_run(nb, config, cpu_hardware(nb, precision), tiny_images)
    return nb.read_checkpoint(paths.checkpoint)


@pytest.fixture(scope="module")
def checkpoints(nb, default_parameters, tiny_images, tmp_path_factory):
    """One epoch-1 checkpoint per precision."""
    return {
        precision: one_epoch_checkpoint(
            nb, default_parameters, tiny_images, tmp_path_factory.mktemp(precision) / "run", precision
        )
        for precision in PRECISIONS
    }


def test_fp16_checkpoint_really_holds_a_scaler_and_the_others_do_not(checkpoints):
    """The premise of the matrix below: only the fp16 run's checkpoint carries gradient-scaler state."""
    assert checkpoints["fp16"]["scaler"]["scale"] > 0
    assert checkpoints["fp32"]["scaler"] == {} and checkpoints["bf16"]["scaler"] == {}


@pytest.mark.parametrize("resumed", PRECISIONS)
@pytest.mark.parametrize("saved", PRECISIONS)
def test_checkpoint_resumes_under_every_other_precision(
    nb, default_parameters, tiny_images, checkpoints, tmp_path, capsys, saved, resumed
):
    state = copy.deepcopy(checkpoints[saved])
    config = tiny_config(nb, default_parameters, tmp_path / "run", PRECISION=resumed, EPOCHS=2)
    hardware = cpu_hardware(nb, resumed)
    gan = nb.build_gan(config, hardware)
    epoch, metrics, fixed_noise = nb.restore_checkpoint(gan, state, config, hardware)
    printed = capsys.readouterr().out

    assert epoch == 1 and [row["epoch"] for row in metrics["epochs"]] == [1]
    for name in ("generator", "discriminator"):
        for key, tensor in getattr(gan, name).state_dict().items():
            assert torch.equal(tensor, state[name][key]), (name, key)
    assert gan.opt_g.state_dict()["state"][0]["step"] == state["opt_g"]["state"][0]["step"] == 4
    if resumed == "fp16" and saved == "fp16":
        assert gan.scaler.get_scale() == state["scaler"]["scale"]
    elif resumed == "fp16":
        assert "gradient scaler starts fresh" in printed
        assert gan.scaler.get_scale() == torch.amp.GradScaler("cpu").get_scale()
    if saved != resumed:
        assert "PRECISION" in printed  # the note that the run now differs from a straight one

    # and training goes on under the new precision
    paths = nb.make_run_folder(config.run_dir)
    train_epochs(nb, gan, tiny_images, metrics, fixed_noise.to(CPU), config, hardware, paths)
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    assert all(torch.isfinite(torch.tensor(metrics["steps"][key])).all() for key in ("loss_d", "loss_g"))


def test_checkpoint_written_on_a_cuda_gpu_loads_on_the_cpu(nb, checkpoints, tmp_path, monkeypatch):
    """Every tensor of this file is stored as living on cuda:0, as a Colab GPU run writes it. Without
    map_location it cannot even be opened on a machine without CUDA; read_checkpoint loads it to the CPU."""
    import torch.serialization

    path = tmp_path / "from_a_gpu.pt"
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(checkpoints["fp16"], path)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)
    state = nb.read_checkpoint(path)
    assert state["generator"]["0.weight"].device == CPU
    assert torch.equal(state["generator"]["0.weight"], checkpoints["fp16"]["generator"]["0.weight"])


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
    real_loss, calls, frozen_during_stop = nb.generator_loss, [], []

    def stopping_loss(logits):
        calls.append(1)
        if len(calls) == stop_at_call:  # 4 steps an epoch: call 3 is in epoch 1, call 7 in epoch 2
            frozen_during_stop.append(not any(p.requires_grad for p in gan.discriminator.parameters()))
            raise KeyboardInterrupt
        return real_loss(logits)

    monkeypatch.setattr(nb, "generator_loss", stopping_loss)
    with pytest.raises(KeyboardInterrupt):
        train_epochs(nb, gan, tiny_images, metrics, fixed_noise, config, hardware, paths)
    monkeypatch.setattr(nb, "generator_loss", real_loss)

    assert frozen_during_stop == [True]  # the stop really came while D was frozen
    assert all(p.requires_grad for p in gan.discriminator.parameters())
    checkpoint = nb.read_checkpoint(paths.checkpoint)
    assert same_tensors(state_of(gan), {k: checkpoint[k] for k in ("generator", "discriminator")})
    assert [row["epoch"] for row in metrics["epochs"]] == list(range(1, checkpoint["epoch"] + 1))

    train_epochs(nb, gan, tiny_images, metrics, fixed_noise, config, hardware, paths)  # the cell, run again
    expected_state, expected_metrics = straight_run
    assert same_tensors(state_of(gan), expected_state)
    assert losses_only(metrics["epochs"]) == losses_only(expected_metrics["epochs"])


def test_frozen_restores_gradients_when_the_block_fails(nb):
    network = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError), nb.frozen(network):
        assert not any(p.requires_grad for p in network.parameters())
        raise ValueError("stopped")
    assert all(p.requires_grad for p in network.parameters())
