"""Section 6, Training, "One epoch": the batches and their order. The fast path computes the same thing as the
slow one: device-resident batches equal the decoded cache (up to the mirror flip) and are channels-last, and
mixed precision trains an epoch with finite losses. Each epoch's data order is a seeded permutation, and
SEED changes it (and with it what an epoch trains)."""

import pytest
import torch
from conftest import CPU, cpu_hardware, one_epoch


def expected_batch(faces, indices):
    """The cached uint8 images at indices as NCHW uint8."""
    return torch.from_numpy(faces.images[indices.numpy()]).permute(0, 3, 1, 2)


def as_uint8(batch):
    """Undo the [-1, 1] scaling exactly (every uint8 value survives float32 scaling and back)."""
    return ((batch + 1) * 127.5).round().to(torch.uint8)


def test_batches_without_flip_equal_the_decoded_cache(nb, decoded):
    faces, images = decoded
    indices = torch.tensor([3, 0, 17, 39, 5])
    batch = nb.real_batch(images, indices, False, None, torch.device("cpu"))
    assert batch.shape == (5, 3, 32, 32) and batch.dtype == torch.float32
    assert torch.equal(as_uint8(batch), expected_batch(faces, indices))
    assert torch.allclose(
        batch, expected_batch(faces, indices).double().div(127.5).sub(1).float(), rtol=0, atol=1e-6
    )
    assert batch.min() >= -1 and batch.max() <= 1


def test_flipped_batches_hold_each_image_or_its_mirror_about_half_the_time(nb, decoded):
    faces, images = decoded
    indices = torch.arange(40)
    batch = as_uint8(
        nb.real_batch(images, indices, True, torch.Generator().manual_seed(1), torch.device("cpu"))
    )
    plain = expected_batch(faces, indices)
    mirrored = [torch.equal(b, p.flip(2)) and not torch.equal(b, p) for b, p in zip(batch, plain)]
    unchanged = [torch.equal(b, p) for b, p in zip(batch, plain)]
    assert all(m or u for m, u in zip(mirrored, unchanged))
    assert 10 <= sum(mirrored) <= 30  # a fair coin per image, not all or nothing


def test_batches_are_channels_last_in_memory(nb, decoded):
    _, images = decoded
    batch = nb.real_batch(
        images, torch.arange(8), True, torch.Generator().manual_seed(0), torch.device("cpu")
    )
    assert batch.is_contiguous(memory_format=torch.channels_last)


def test_epoch_order_is_a_seeded_permutation_that_changes_each_epoch(nb):
    order_1, _ = nb.epoch_random_sources(seed=0, epoch=1, count=100, device=torch.device("cpu"))
    again, _ = nb.epoch_random_sources(seed=0, epoch=1, count=100, device=torch.device("cpu"))
    order_2, _ = nb.epoch_random_sources(seed=0, epoch=2, count=100, device=torch.device("cpu"))
    assert sorted(order_1.tolist()) == list(range(100))
    assert torch.equal(order_1, again) and not torch.equal(order_1, order_2)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_one_epoch_trains_with_finite_losses(nb, make_config, decoded, precision):
    _, images = decoded
    config = make_config(PRECISION=precision, BATCH_SIZE=8)
    hardware = nb.Compute(torch.device("cpu"), precision, channels_last=True)
    gan = nb.build_gan(config, hardware)
    before = [p.detach().clone() for p in gan.generator.parameters()]
    history = one_epoch(nb, gan, images, 1, config, hardware)
    assert history.shape == (5, 4) and torch.isfinite(history).all()
    assert ((history[:, 2:] >= 0) & (history[:, 2:] <= 1)).all()  # D(x) and D(G(z)) are probabilities
    assert any(not torch.equal(b, p) for b, p in zip(before, gan.generator.parameters()))


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
