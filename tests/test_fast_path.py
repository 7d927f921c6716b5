"""The fast training path computes the same thing as the slow one: device-resident batches equal the decoded
cache (up to the mirror flip), mixed precision trains with finite losses, and each epoch's data order is a
seeded permutation."""

import pytest
import torch
from conftest import one_epoch, write_faces


@pytest.fixture
def decoded(nb, tmp_path):
    """32 px images decoded into the notebook's cache, and the same array placed for training."""
    write_faces(tmp_path / "faces", 40, size=48)
    faces = nb.prepare_dataset(tmp_path / "faces", 32, 0, 0, tmp_path)
    return faces, nb.place_images(faces.images, torch.device("cpu"))


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


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"), [(False, False, False), (True, False, True), (False, True, True)]
)
def test_native_bf16_means_avx512_bf16_or_amx_not_onednn_emulation(
    nb, monkeypatch, avx512_bf16, amx, expected
):
    """oneDNN reports bf16 support on any AVX-512 CPU, where bf16 is emulated and slow: auto must not pick it.
    (raising=False: the probes are private, and a torch without one of them must not error here.)"""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert nb.cpu_has_native_bf16() is expected


@pytest.mark.parametrize("missing", [("_is_avx512_bf16_supported",), ("_is_amx_tile_supported",), ("both",)])
def test_a_torch_without_the_bf16_probes_trains_in_fp32(nb, monkeypatch, missing):
    """Older torch has neither private probe (or only one): auto must mean fp32 there, not an AttributeError.
    Catches `torch.cpu._is_avx512_bf16_supported()` called directly."""
    names = ("_is_avx512_bf16_supported", "_is_amx_tile_supported") if missing == ("both",) else missing
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        if name in names:
            monkeypatch.delattr(torch.cpu, name, raising=False)
        else:
            monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
    assert nb.cpu_has_native_bf16() is False
    assert nb.pick_precision("auto", torch.device("cpu")) == "fp32"


@pytest.mark.parametrize(("capability", "expected"), [((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_auto_precision_on_cuda_follows_the_chosen_gpu(nb, monkeypatch, capability, expected):
    """A T4 (7.5) trains in fp16 with a scaler, an A100/H100 in bf16; the GPU asked about is the chosen one."""
    asked = []
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or capability
    )
    device = torch.device("cuda:1")
    assert nb.pick_precision("auto", device) == expected and asked == [device]
    if expected == "fp16":
        with pytest.raises(nb.ConfigError, match="no bf16"):
            nb.pick_precision("bf16", device)


def test_auto_precision_on_cpu_follows_native_bf16_support(nb, monkeypatch):
    monkeypatch.setattr(nb, "cpu_has_native_bf16", lambda: True)
    assert nb.pick_precision("auto", torch.device("cpu")) == "bf16"
    monkeypatch.setattr(nb, "cpu_has_native_bf16", lambda: False)
    assert nb.pick_precision("auto", torch.device("cpu")) == "fp32"
