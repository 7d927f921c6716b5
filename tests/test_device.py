"""The tests marked `device`, on the accelerator that --device names: batches however the device is spelled
and from CPU memory, one epoch in every precision the device has, no host sync inside a training step
(section 6), and a checkpoint written there that resumes on the CPU (section 6, The training loop).
`python -m pytest -m device --device cuda` on a GPU machine (`--device mps` on a Mac); on the CPU (the
default) they run as part of the suite. benchmarks/gpu_check.sh runs this file by its name. Their mocked
counterparts, and the rest of the device-dependent code, are tested on the CPU in
test_2_device_and_precision.py."""

import pytest
import torch
from conftest import cpu_hardware, one_epoch, per_step_host_reads, tiny_config, train_epochs

CPU = torch.device("cpu")


@pytest.mark.device
def test_batches_are_the_same_on_the_device_however_it_is_spelled(nb, test_device, tiny_images):
    spellings = {test_device, torch.device(test_device.type), nb.pick_device(str(test_device))}
    spellings.add(torch.device(test_device.type, test_device.index or 0))  # cpu:0 too: the old code pinned it
    images = tiny_images.to(nb.pick_device(str(test_device)))
    indices = torch.arange(8, device=images.device)
    expected = nb.real_batch(tiny_images, torch.arange(8), False, None, CPU)
    for device in spellings:
        batch = nb.real_batch(images, indices, False, None, device)
        assert batch.device.type == test_device.type and torch.equal(batch.cpu(), expected), device


@pytest.mark.device
def test_batches_from_cpu_memory_equal_batches_from_the_device(nb, test_device, tiny_images):
    device = nb.pick_device(str(test_device))
    on_device = tiny_images.to(device)
    indices = torch.tensor([5, 2, 9, 2])
    direct = nb.real_batch(on_device, indices.to(device), False, None, device)
    copied = nb.real_batch(tiny_images, indices, False, None, device)  # CPU-resident data set
    assert copied.device == direct.device and torch.equal(copied, direct)


@pytest.mark.device
def test_one_epoch_on_the_device_in_every_precision_it_has(
    nb, test_device, default_parameters, tiny_images, tmp_path
):
    device = nb.pick_device(str(test_device))
    precisions = ["fp32", "bf16"] if device.type == "cpu" else ["fp32"]
    if device.type == "cuda":
        precisions += ["fp16"] + (["bf16"] if torch.cuda.get_device_capability(device)[0] >= 8 else [])
    images = nb.place_images(tiny_images.numpy(), device)
    for precision in precisions:
        config = tiny_config(
            nb, default_parameters, tmp_path / precision, PRECISION=precision, DEVICE=str(device)
        )
        hardware = nb.choose_compute(device, precision)
        gan = nb.build_gan(config, hardware)
        before = [tensor.detach().clone() for tensor in gan.generator.parameters()]
        history = one_epoch(nb, gan, images, 1, config, hardware)
        assert torch.isfinite(history).all() and history.shape == (4, 4), precision
        assert any(not torch.equal(b, a.detach()) for b, a in zip(before, gan.generator.parameters()))
        for optimizer in (gan.opt_g, gan.opt_d):
            for group in optimizer.param_groups:
                for parameter in group["params"]:
                    state = optimizer.state[parameter]
                    assert state["exp_avg"].device == parameter.device
                    on_device = group.get("fused") or group.get("capturable")
                    assert state["step"].device == (parameter.device if on_device else CPU)


@pytest.mark.device
def test_no_device_sync_inside_a_training_step(
    nb, test_device, default_parameters, tiny_images, tmp_path, monkeypatch
):
    """On CUDA, torch raises at any sync inside the per-step work; on the CPU, count host reads with Adam fused."""
    device = nb.pick_device(str(test_device))
    precision = "fp16" if device.type in ("cuda", "cpu") else "fp32"
    config = tiny_config(nb, default_parameters, tmp_path / "run", PRECISION=precision, LOG_EVERY=1000)
    hardware = nb.choose_compute(device, precision)
    images = nb.place_images(tiny_images.numpy(), device)
    if device.type != "cuda":
        assert per_step_host_reads(nb, monkeypatch, config, hardware, images, fused=True) == 0
        return
    gan = nb.build_gan(config, hardware)
    one_epoch(nb, gan, images, 1, config, hardware)  # warm-up: cuDNN's first-call work may sync

    def strict(function):
        def run(*args, **kwargs):
            torch.cuda.set_sync_debug_mode("error")
            try:
                return function(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode(0)

        return run

    for name in ("real_batch", "train_step", "update_ema"):
        monkeypatch.setattr(nb, name, strict(getattr(nb, name)))
    history = one_epoch(nb, gan, images, 2, config, hardware)
    assert torch.isfinite(history).all()


@pytest.mark.device
def test_a_device_checkpoint_resumes_on_the_cpu(nb, test_device, default_parameters, tiny_images, tmp_path):
    device = nb.pick_device(str(test_device))
    config = tiny_config(nb, default_parameters, tmp_path / "run", DEVICE=str(device), EPOCHS=1)
    hardware = nb.choose_compute(device, "fp32")
    paths = nb.make_run_folder(config.run_dir)
    gan = nb.build_gan(config, hardware)
    _, metrics, fixed_noise = nb.start_or_resume(gan, paths, config, nb.choose_compute(device, "fp32"))
    train_epochs(
        nb, gan, nb.place_images(tiny_images.numpy(), device), metrics, fixed_noise, config, hardware, paths
    )
    cpu_config = tiny_config(nb, default_parameters, tmp_path / "run", DEVICE="cpu", EPOCHS=2)
    cpu_gan = nb.build_gan(cpu_config, cpu_hardware(nb))
    epoch, metrics, fixed_noise = nb.start_or_resume(
        cpu_gan, paths, cpu_config, nb.choose_compute(CPU, "fp32")
    )
    assert epoch == 1 and fixed_noise.device == CPU
    for mine, theirs in zip(cpu_gan.generator.state_dict().values(), gan.generator.state_dict().values()):
        assert torch.equal(mine, theirs.cpu())
    train_epochs(nb, cpu_gan, tiny_images, metrics, fixed_noise, cpu_config, cpu_hardware(nb), paths)
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
