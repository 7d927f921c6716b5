"""Every setting reaches the code that uses it: the loss targets, LR and BETA1 in both optimizers, the
checks of the whole-number settings, SEED in the epoch order, MAX_IMAGES in the data, COMPILE through a
resume, and IMAGE_SIZE 128. In-process and fast: no test here trains more than one tiny epoch.

Each test names the broken code it catches; tests/sabotage_gaps.py runs a sample of them against copies of
the notebook with that code broken."""

import math

import pytest
import torch
from conftest import cpu_hardware, one_epoch, write_faces

CPU = torch.device("cpu")


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
# Whole-number settings: each has a lower bound


AT_LEAST_ONE = ["LATENT_DIM", "G_WIDTH", "D_WIDTH", "LOG_EVERY", "SAMPLE_COUNT", "GENERATE_COUNT"]


@pytest.mark.parametrize("name", AT_LEAST_ONE)
def test_counts_and_sizes_must_be_at_least_one(nb, make_config, name):
    """0 is refused with a message that names the setting (LOG_EVERY 0 would divide by zero in the epoch
    loop, SAMPLE_COUNT 0 draws an empty grid, ...); 1 is accepted. Catches a name dropped from the notebook's
    AT_LEAST_ONE."""
    with pytest.raises(nb.ConfigError) as raised:
        make_config(**{name: 0})
    assert f"{name} must be 1 or more, not 0." in str(raised.value)
    assert getattr(make_config(**{name: 1}), name.lower()) == 1


@pytest.mark.parametrize(
    ("name", "refused", "accepted", "message"),
    [
        ("FID_SAMPLES", 9, 10, "FID_SAMPLES must be 0 (skip) or at least 10, not 9."),
        ("FID_REAL", 9, 10, "FID_REAL must be at least 10, not 9."),
        ("FID_EVERY", -1, 0, "FID_EVERY must be 0 (off) or more, not -1."),
        ("MAX_IMAGES", -1, 0, "MAX_IMAGES must be 0 (all) or more, not -1."),
        ("SEED", 2**32, 2**32 - 1, "SEED must be a whole number from 0 to 4294967295"),
    ],
)
def test_each_bound_sits_where_its_message_says(nb, make_config, name, refused, accepted, message):
    with pytest.raises(nb.ConfigError) as raised:
        make_config(**{name: refused})
    assert message in str(raised.value)
    assert getattr(make_config(**{name: accepted}), name.lower()) == accepted


# ---------------------------------------------------------------------------------------------------------
# SEED


def test_seed_changes_the_epoch_order_and_the_random_draws(nb):
    """SEED reaches the per-epoch permutation and the generator that draws flips and noise. Catches an
    order seeded by the epoch alone (every SEED would train on the same sequence of batches)."""
    orders, draws = {}, {}
    for seed in (0, 1):
        order, source = nb.epoch_random_sources(seed, 3, 64, CPU)
        orders[seed], draws[seed] = order, torch.randn(8, generator=source)
        again, source = nb.epoch_random_sources(seed, 3, 64, CPU)
        assert torch.equal(order, again) and torch.equal(draws[seed], torch.randn(8, generator=source))
    assert sorted(orders[1].tolist()) == list(range(64))
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(draws[0], draws[1])


def test_seed_changes_what_one_epoch_trains(nb, make_config, tiny_images):
    """Through train_one_epoch: same SEED, same losses; another SEED, other losses (batches, flips, noise
    and starting weights all follow it)."""

    def losses(seed):
        config = make_config(SEED=seed, EMA_DECAY=0)
        return one_epoch(nb, nb.build_gan(config, cpu_hardware(nb)), tiny_images, 1, config, cpu_hardware(nb))

    first = losses(0)
    assert torch.equal(first, losses(0))
    assert not torch.equal(first, losses(1))


# ---------------------------------------------------------------------------------------------------------
# MAX_IMAGES


def test_max_images_caps_the_data_with_a_repeatable_choice(nb, tmp_path):
    """MAX_IMAGES 10 of 24 files: 10 images, chosen by SEED (the same ones again, other ones for another
    seed). Catches prepare_dataset decoding every file whatever MAX_IMAGES says."""
    write_faces(tmp_path / "images", 24, seed=7)
    whole = nb.prepare_dataset(tmp_path / "images", 32, 0, 0, tmp_path / "cache")
    capped = nb.prepare_dataset(tmp_path / "images", 32, 10, 0, tmp_path / "cache")
    again = nb.prepare_dataset(tmp_path / "images", 32, 10, 0, tmp_path / "cache_2")
    other = nb.prepare_dataset(tmp_path / "images", 32, 10, 1, tmp_path / "cache_3")
    assert len(whole.images) == 24 and len(capped.images) == len(other.images) == 10
    assert whole.found == capped.found == 24  # all files are counted, 10 are used
    rows = {image.tobytes() for image in whole.images}
    assert {image.tobytes() for image in capped.images} <= rows  # a subset of the data, not something else
    assert (again.images == capped.images).all() and not (other.images == capped.images).all()


# ---------------------------------------------------------------------------------------------------------
# COMPILE, then a resume


def compiled_and_plain(nb, make_config):
    """A GAN built with COMPILE = True and one without, same settings otherwise."""
    return (
        nb.build_gan(make_config(COMPILE=True), cpu_hardware(nb)),
        nb.build_gan(make_config(COMPILE=False), cpu_hardware(nb)),
    )


@pytest.mark.parametrize("direction", ["compiled-to-plain", "plain-to-compiled"])
def test_a_compiled_run_and_a_plain_one_resume_from_each_other(nb, make_config, tmp_path, direction):
    """COMPILE compiles the networks in place, so their state_dict keys stay those of the plain networks: a
    checkpoint written with COMPILE = True resumes with it off (a GPU run finished on a laptop) and the other
    way round. Catches `generator = torch.compile(generator)`, whose keys start with "_orig_mod."
    (torch.compile compiles on the first forward pass, so nothing here waits for a compiler.)"""
    compiled, plain = compiled_and_plain(nb, make_config)
    source, target = (compiled, plain) if direction == "compiled-to-plain" else (plain, compiled)
    with torch.no_grad():  # the source's weights differ from the target's fresh ones
        for parameter in source.generator.parameters():
            parameter.add_(0.25)
    config = make_config()
    noise = torch.randn(config.sample_count, config.latent_dim, 1, 1)
    metrics = {"epochs": [], "steps": {}, "fid": []}
    nb.save_checkpoint(tmp_path / "checkpoint.pt", source, 1, metrics, noise, config, cpu_hardware(nb))
    epoch, _, _ = nb.restore_checkpoint(
        target, nb.read_checkpoint(tmp_path / "checkpoint.pt"), config, cpu_hardware(nb)
    )
    assert epoch == 1
    for name in ("generator", "discriminator"):
        saved, loaded = getattr(source, name).state_dict(), getattr(target, name).state_dict()
        assert saved.keys() == loaded.keys()
        assert all(torch.equal(saved[key], loaded[key]) for key in saved), name
    assert compiled.generator.state_dict().keys() == plain.generator.state_dict().keys()


# ---------------------------------------------------------------------------------------------------------
# IMAGE_SIZE 128


def test_128_px_networks_have_the_right_shapes(nb, make_config):
    """The largest IMAGE_SIZE the notebook offers: five upsampling steps, (B, 3, 128, 128) images in [-1, 1],
    one logit per image, and the EMA copy draws them too."""
    config = make_config(IMAGE_SIZE=128)
    gan = nb.build_gan(config, cpu_hardware(nb))
    assert nb.upsampling_steps(128) == 5
    noise = torch.randn(2, config.latent_dim, 1, 1)
    with torch.no_grad():
        images = gan.generator(noise)
        assert images.shape == (2, 3, 128, 128) and images.abs().max() <= 1
        assert gan.discriminator(images).shape == (2,)
    assert nb.draw(gan.drawing_generator, noise).shape == (2, 3, 128, 128)
    transposed = [m for m in gan.generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    convolutions = [m for m in gan.discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(transposed) == len(convolutions) == 6  # 1→4, then 4→8→16→32→64→128; and back


def test_128_px_images_decode_to_128_px(nb, tmp_path):
    write_faces(tmp_path / "images", 3, size=150)
    faces = nb.prepare_dataset(tmp_path / "images", 128, 0, 0, tmp_path / "cache")
    assert faces.images.shape == (3, 128, 128, 3)
