"""Section 6, Training: "The losses", "The optimizers, and what else training keeps" and "One training step".
The BCE targets (real 1, fake 0, the generator's 1); LR and BETA1 in both optimizers and in the first step
itself; train_step changes both networks and leaves the discriminator trainable; the EMA generator (off, its
first update, its warm-up decay, after training, through a checkpoint). In-process and fast.
tests/sabotage_gaps.py runs the target and LR tests against copies of the notebook with that code broken;
tests/sabotage_check.py shows that the learning tests need the targets too."""

import math

import pytest
import torch
from conftest import CPU, CPU_FP32, cpu_hardware, state_equal, tiny_gan

# ---------------------------------------------------------------------------------------------------------
# The loss targets (the fast check; tests/sabotage_check.py shows that the learning test needs them too)


def test_loss_targets_are_real_1_fake_0_and_generator_1(nb):
    """Logits of +-20 are certain answers: a right one costs ~0, a wrong one ~20 (BCE = softplus(-+logit)).
    Catches any swapped target: D's real target 0, D's fake target 1, G's target 0 (sabotage_check.py's
    variants a, b, c; and d, all three swapped, which learns the same game with the logit's sign flipped
    but breaks the notebook's stated convention, D(x) near 1 for real images)."""
    sure = torch.full((4,), 20.0)
    assert nb.discriminator_loss(sure, -sure).item() == pytest.approx(0, abs=1e-6)  # both right
    assert nb.discriminator_loss(sure, sure).item() == pytest.approx(20, rel=1e-4)  # a fake called real
    assert nb.discriminator_loss(-sure, -sure).item() == pytest.approx(20, rel=1e-4)  # a real called fake
    assert nb.generator_loss(sure).item() == pytest.approx(0, abs=1e-6)  # D calls the fakes real: G is done
    assert nb.generator_loss(-sure).item() == pytest.approx(20, rel=1e-4)
    # Undecided logits (0) cost log 2 per term, averaged over the batch (not summed).
    zero = torch.zeros(8)
    assert nb.discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert nb.generator_loss(zero).item() == pytest.approx(math.log(2))


# ---------------------------------------------------------------------------------------------------------
# LR and BETA1


@pytest.mark.parametrize(("lr", "beta1"), [(0.0003, 0.3), (0.00005, 0.0)])
def test_both_optimizers_use_lr_and_beta1(nb, make_config, lr, beta1):
    """Neither value is Adam's default (0.001, 0.9), so `torch.optim.Adam(network.parameters())` without the
    settings fails here (the learning test trains with LR 0.001 and could not tell)."""
    gan = nb.build_gan(make_config(LR=lr, BETA1=beta1), cpu_hardware(nb))
    for optimizer, network in ((gan.opt_g, gan.generator), (gan.opt_d, gan.discriminator)):
        [group] = optimizer.param_groups
        assert group["lr"] == lr and group["betas"] == (beta1, 0.999)
        assert [id(p) for p in group["params"]] == [id(p) for p in network.parameters()]


def test_the_first_step_moves_each_weight_by_lr(nb, make_config, tiny_images):
    """Adam's first update is lr * g / (|g| + eps): each weight with a gradient moves by almost exactly LR.
    So LR reaches the step itself, not only the optimizer's settings, for both networks."""
    lr = 0.0003
    config = make_config(LR=lr, EMA_DECAY=0)
    hardware = cpu_hardware(nb)
    gan = nb.build_gan(config, hardware)
    before = [p.detach().clone() for p in (*gan.generator.parameters(), *gan.discriminator.parameters())]
    real = nb.real_batch(tiny_images, torch.arange(16), False, None, CPU)
    nb.train_step(gan, real, torch.randn(16, config.latent_dim, 1, 1), hardware)
    after = [*gan.generator.parameters(), *gan.discriminator.parameters()]
    moves = torch.cat([(a.detach() - b).abs().flatten() for a, b in zip(after, before)])
    moved = moves[moves > 0]
    assert len(moved) > 0.9 * len(moves)
    assert torch.quantile(moved, 0.5).item() == pytest.approx(lr, rel=0.02)
    assert moved.max().item() <= lr * 1.001  # (float32 rounding of weights near 1)


# ---------------------------------------------------------------------------------------------------------
# One training step


def test_train_step_changes_both_networks_and_leaves_discriminator_trainable(nb, make_config, decoded):
    _, images = decoded
    config = make_config(BATCH_SIZE=8)
    hardware = nb.Compute(torch.device("cpu"), "fp32", channels_last=False)
    gan = nb.build_gan(config, hardware)
    g_before = [p.detach().clone() for p in gan.generator.parameters()]
    d_before = [p.detach().clone() for p in gan.discriminator.parameters()]
    real = nb.real_batch(images, torch.arange(8), False, None, torch.device("cpu"))
    scores = nb.train_step(gan, real, torch.randn(8, config.latent_dim, 1, 1), hardware)
    assert scores.shape == (4,) and torch.isfinite(scores).all()
    assert all(not torch.equal(b, p) for b, p in zip(g_before, gan.generator.parameters()))
    assert any(not torch.equal(b, p) for b, p in zip(d_before, gan.discriminator.parameters()))
    assert all(p.requires_grad for p in gan.discriminator.parameters())


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_the_step_computes_in_the_chosen_number_format(nb, make_config, decoded, precision, dtype):
    """D's logits in all three of its forward passes come out in the run's number format. Catches a
    train_step that lost its autocast: bf16 (and a T4's fp16) would then silently train in fp32."""
    _, images = decoded
    config = make_config(BATCH_SIZE=8)
    compute = nb.Compute(torch.device("cpu"), precision, channels_last=False)
    gan = nb.build_gan(config, compute)
    seen = []
    gan.discriminator.register_forward_hook(lambda module, inputs, logits: seen.append(logits.dtype))
    real = nb.real_batch(images, torch.arange(8), False, None, torch.device("cpu"))
    nb.train_step(gan, real, torch.randn(8, config.latent_dim, 1, 1), compute)
    assert seen == [dtype] * 3


# ---------------------------------------------------------------------------------------------------------
# EMA


NO_METRICS = {"epochs": [], "steps": {"loss_d": [], "loss_g": [], "d_real": [], "d_fake": []}, "fid": []}


def test_ema_off_samples_from_the_generator(nb, make_config):
    gan = nb.build_gan(make_config(EMA_DECAY=0), nb.Compute(**CPU_FP32))
    assert gan.ema is None
    assert gan.drawing_generator is gan.generator


def test_ema_after_training_differs_but_is_finite(nb, make_config, faces_dir):
    gan, _, _ = tiny_gan(nb, make_config, faces_dir, EMA_DECAY=0.999)
    assert gan.drawing_generator is gan.ema.module
    assert int(gan.ema.n_averaged) == 64 // 16  # one update per training step
    ema, raw = gan.ema.module.state_dict(), gan.generator.state_dict()
    assert all(torch.isfinite(tensor.float()).all() for tensor in ema.values())
    assert any(not torch.equal(ema[name], raw[name]) for name, _ in gan.generator.named_parameters())


def test_ema_state_survives_a_checkpoint(nb, make_config, faces_dir, tmp_path):
    gan, config, hardware = tiny_gan(nb, make_config, faces_dir, EMA_DECAY=0.999)
    metrics = NO_METRICS
    fixed_noise = torch.randn(config.sample_count, config.latent_dim, 1, 1)
    path = tmp_path / "checkpoint.pt"
    nb.save_checkpoint(path, gan, 1, metrics, fixed_noise, config, cpu_hardware(nb))

    fresh = nb.build_gan(config, hardware)
    assert not state_equal(fresh.ema.state_dict(), gan.ema.state_dict())
    epoch, _, _ = nb.restore_checkpoint(fresh, nb.read_checkpoint(path), config, cpu_hardware(nb))
    assert epoch == 1
    assert state_equal(fresh.ema.state_dict(), gan.ema.state_dict())  # n_averaged included
    assert int(fresh.ema.n_averaged) == int(gan.ema.n_averaged) == 4
    noise = torch.randn(8, config.latent_dim, 1, 1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(nb.draw(fresh.drawing_generator, noise), nb.draw(gan.drawing_generator, noise))


def test_first_ema_update_copies_the_generator(nb, make_config):
    gan = nb.build_gan(make_config(EMA_DECAY=0.999), nb.Compute(**CPU_FP32))
    with torch.no_grad():
        for parameter in gan.generator.parameters():
            parameter.add_(0.5)
        for module in gan.generator.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.add_(0.3)
    assert not state_equal(gan.ema.module.state_dict(), gan.generator.state_dict())
    nb.update_ema(gan.ema, gan.generator, 0.999, step=0)
    assert state_equal(gan.ema.module.state_dict(), gan.generator.state_dict())  # buffers too


def test_ema_decay_warm_up_formula(nb):
    from torch.optim.swa_utils import AveragedModel

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = AveragedModel(model, use_buffers=True)
    nb.update_ema(ema, model, 0.999, step=0)  # the first update copies
    for step, decay in ((1, 0.999), (5, 0.999), (30, 0.5), (2000, 0.99)):
        before = [tensor.clone() for tensor in ema.module.state_dict().values()]
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.copy_(torch.randn_like(parameter))
            model[1].running_mean.copy_(torch.randn(2))
            model[1].running_var.copy_(torch.rand(2) + 0.5)
        nb.update_ema(ema, model, decay, step=step)
        weight = min(decay, (1 + step) / (10 + step))  # 2/11 at step 1, 6/15 at 5, then the set decay
        for (name, current), old in zip(model.state_dict().items(), before):
            if current.is_floating_point():
                torch.testing.assert_close(
                    ema.module.state_dict()[name],
                    weight * old + (1 - weight) * current,
                    msg=f"step {step}, {name}",
                )
