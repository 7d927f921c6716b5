"""Section 2's choice of device and number format (pick_device, pick_precision, choose_compute, configure_cuda),
and the device-dependent code of the later sections, tested on the CPU: device spelling (cuda vs cuda:0), an
absent or unknown device, GPUs the build has no kernels for, precision and layout by hardware (native bf16 on
the CPU, fp16 or bf16 by CUDA capability, fp32 only on MPS), TF32 off in fp32, cuDNN flags; the CPU-memory
fallback for a data set too large for the GPU and its pinned batches (section 6, One epoch); fused Adam and
the EMA update without host syncs, Adam's settings on resume (section 6, Training); sampling with COMPILE;
the copy search where the faces are (section 8); FID on the chosen GPU (section 9).

No GPU is needed: CUDA and MPS are mocked where only the choice matters, and PyTorch's FakeTensorMode places
tensors on a fake `cuda:0` where the placement matters (forward passes only: a fake backward needs a driver).
The tests that also run on a real accelerator (marked `device`) are in test_device.py."""

import contextlib
import copy
import importlib

import numpy as np
import pytest
import torch
from conftest import TINY, cpu_hardware, per_step_host_reads
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

CPU = torch.device("cpu")
CUDA0 = torch.device("cuda", 0)


def fake_cuda():
    """A FakeTensorMode in which real CPU tensors may be moved to a fake cuda:0."""
    return FakeTensorMode(allow_non_fake_inputs=True)


# The architectures of the CUDA 12.8 wheels Colab and Kaggle ship (torch.cuda.get_arch_list() there).
WHEEL_ARCHS = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]


def mock_cuda(monkeypatch, count=2, current=1, capability=(7, 5), name="Tesla T4", archs=WHEEL_ARCHS):
    """Make torch believe it has `count` CUDA GPUs of `capability`, `current` being the current one, and a build
    for `archs`."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(archs))


# ---- device spelling -------------------------------------------------------------------------------------
def test_cpu_spelled_with_an_index_is_the_device_tensors_report(nb):
    """torch.device("cpu:0") != torch.device("cpu"), the device every CPU tensor reports."""
    assert nb.pick_device("cpu:0") == torch.zeros(1).device == CPU
    with pytest.raises(nb.ConfigError, match="only one"):
        nb.pick_device("cpu:1")


@pytest.mark.parametrize(("requested", "expected"), [("auto", 1), ("cuda", 1), ("cuda:0", 0), ("cuda:1", 1)])
def test_cuda_devices_carry_their_index(nb, monkeypatch, requested, expected):
    """A GPU tensor reports cuda:N, and torch.device("cuda") is not equal to it: pick_device says which GPU."""
    mock_cuda(monkeypatch, count=2, current=1)
    assert nb.pick_device(requested) == torch.device("cuda", expected)


def test_a_gpu_that_is_not_there_is_a_clear_error(nb, monkeypatch):
    mock_cuda(monkeypatch, count=2, current=0)
    with pytest.raises(nb.ConfigError, match="2 CUDA GPU"):
        nb.pick_device("cuda:2")


@pytest.mark.parametrize("requested", ["auto", "mps", "mps:0"])
def test_mps_is_spelled_as_its_tensors_report_it(nb, monkeypatch, requested):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert nb.pick_device(requested) == torch.device("mps", 0)


@pytest.mark.parametrize("requested", ["cuda", "cuda:0", "mps"])
def test_absent_accelerator_is_a_clear_error(nb, monkeypatch, requested):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a machine with a GPU
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(nb.ConfigError) as raised:
        nb.pick_device(requested)
    assert f"DEVICE {requested!r} is not available here" in str(raised.value)
    assert nb.pick_device("auto") == CPU


@pytest.mark.parametrize("requested", ["banana", "GPU", ""])
def test_unknown_device_is_a_clear_error(nb, requested):
    with pytest.raises(nb.ConfigError) as raised:
        nb.pick_device(requested)
    assert "is unknown: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'" in str(raised.value)


def test_batches_on_a_gpu_spelled_without_index_stay_on_it(nb):
    """The data set on cuda:0 and DEVICE "cuda" (no index): the batch is indexed there, never pinned (pinning a
    GPU tensor raises). The old comparison `batch.device != device` sent every batch to pin_memory()."""
    images = torch.randint(0, 256, (8, 4, 4, 3), dtype=torch.uint8)
    with fake_cuda():
        on_gpu = images.to(CUDA0)
        batch = nb.real_batch(on_gpu, torch.arange(4, device=CUDA0), False, None, torch.device("cuda"))
        assert batch.device == CUDA0 and batch.shape == (4, 3, 4, 4) and batch.dtype == torch.float32


# ---- the data set too large for the GPU ------------------------------------------------------------------
def test_images_too_large_for_the_gpu_stay_in_cpu_memory_unpinned(nb, monkeypatch, capsys):
    """Pinning the whole array (the pinned allocator rounds up to a power of two) could exhaust Colab's RAM."""
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 10**9))
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: pytest.fail("the whole data set was pinned"))
    images = np.zeros((10, 8, 8, 3), np.uint8)  # 1,920 bytes, more than half of the 1,000 free
    placed = nb.place_images(images, CUDA0)
    assert placed.device == CPU and "stay in CPU memory" in capsys.readouterr().out
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10**9, 10**9))
    with fake_cuda():
        assert nb.place_images(images, CUDA0).device == CUDA0  # room enough: on the GPU


def test_batches_from_cpu_memory_are_gathered_into_pinned_memory_and_copied_without_blocking(nb, monkeypatch):
    """Each batch: gathered straight into a pinned buffer (where a driver exists), copied non-blocking."""
    images = torch.randint(0, 256, (16, 4, 4, 3), dtype=torch.uint8)
    indices = torch.tensor([3, 1, 7, 7])
    made, copies = [], []
    real_empty, real_to = torch.empty, torch.Tensor.to

    def empty(*shape, pin_memory=False, **options):  # no driver here: record the request, allocate plainly
        made.append(pin_memory)
        return real_empty(*shape, **options)

    def to(self, *args, non_blocking=False, **options):
        copies.append(non_blocking)
        return real_to(self, *args, non_blocking=non_blocking, **options)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(torch.Tensor, "to", to)
    with fake_cuda():
        batch = nb.real_batch(images, indices, False, None, CUDA0, torch.contiguous_format)
    assert batch.device == CUDA0 and batch.shape == (4, 3, 4, 4)
    assert made[0] is True and copies[0] is True  # the first: the staging buffer and its copy
    monkeypatch.undo()
    gathered = nb.copy_batch_to(CPU, images, indices)  # the gather itself, checked by value
    assert torch.equal(gathered, images[indices])


def test_without_a_driver_nothing_is_pinned(nb):
    """CUDA unavailable (the CI machine): the gather works and never asks for pinned memory."""
    images = torch.randint(0, 256, (6, 4, 4, 3), dtype=torch.uint8)
    batch = nb.copy_batch_to(CPU, images, torch.tensor([5, 0]))
    assert not batch.is_pinned() and torch.equal(batch, images[[5, 0]])


def test_the_epoch_order_lives_where_the_images_are(nb):
    """With the images in CPU memory the order stays there too: no GPU-to-host copy of indices every step."""
    meta = torch.device("meta")  # stands for "not the training device": any tensor can be placed there
    order, _ = nb.epoch_random_sources(0, 1, 10, CPU, order_device=meta)
    assert order.device == meta and order.shape == (10,)
    assert nb.epoch_random_sources(0, 1, 10, CPU)[0].device == CPU  # by default: on the training device


# ---- precision and autocast ------------------------------------------------------------------------------
def test_fp32_never_creates_an_autocast_context(nb, monkeypatch):
    """torch 2.3 and 2.4 raise for torch.autocast("mps", enabled=False): fp32 must not call it at all."""

    def refuse(device_type, *args, **kwargs):
        raise RuntimeError(f"User specified an unsupported autocast device_type '{device_type}'")

    monkeypatch.setattr(torch, "autocast", refuse)
    with nb.Compute(torch.device("mps", 0), "fp32", False).autocast():
        pass
    with pytest.raises(RuntimeError, match="unsupported autocast"):  # the positive control: bf16 does call it
        nb.Compute(CPU, "bf16", True).autocast()


def test_bf16_autocast_computes_in_bf16(nb):
    with nb.Compute(CPU, "bf16", True).autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("requested", "ok"), [("auto", True), ("fp32", True), ("bf16", False), ("fp16", False)]
)
def test_mps_trains_in_fp32_only(nb, monkeypatch, requested, ok):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    mps = torch.device("mps", 0)
    if ok:
        assert nb.pick_precision(requested, mps) == "fp32"
    else:
        with pytest.raises(nb.ConfigError, match="MPS has no"):
            nb.pick_precision(requested, mps)


def test_fp16_on_cpu_is_a_clear_error(nb):
    with pytest.raises(nb.ConfigError) as raised:
        nb.pick_precision("fp16", CPU)
    assert "PRECISION 'fp16' needs a CUDA GPU" in str(raised.value) and "'fp32'" in str(raised.value)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_precisions_are_accepted(nb, precision):
    assert nb.pick_precision(precision, CPU) == precision


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


# ---- the networks, optimizers and EMA on a GPU (placement, with fake tensors) -----------------------------
# torch's own Tensor.__deepcopy__ (the EMA copy of the fake generator) reads a fake tensor's data pointer
@pytest.mark.filterwarnings("ignore:Accessing the data pointer of FakeTensor:UserWarning")
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_a_gpu_gan_keeps_weights_and_ema_on_the_gpu_and_uses_fused_adam(
    nb, make_config, monkeypatch, precision
):
    config = make_config()
    # built outside the fake mode (it cannot swap parameters it created itself), then moved by build_gan
    networks = {
        "build_generator": nb.build_generator(config.latent_dim, config.g_width, config.image_size),
        "build_discriminator": nb.build_discriminator(config.d_width, config.image_size),
    }
    for name, network in networks.items():
        monkeypatch.setattr(nb, name, lambda *args, network=network: network)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # an A100
    with fake_cuda():
        gan = nb.build_gan(config, nb.choose_compute(CUDA0, precision))
        weights = [*gan.generator.parameters(), *gan.discriminator.parameters(), *gan.ema.module.parameters()]
        assert {tensor.device for tensor in weights} == {CUDA0}
        assert {tensor.device for tensor in gan.ema.module.buffers()} == {CUDA0}
        assert gan.generator(torch.randn(2, config.latent_dim, 1, 1, device=CUDA0)).device == CUDA0
    assert gan.ema.n_averaged.device == CPU  # a host-side counter: update_ema never reads it from the GPU
    assert all(group["fused"] for opt in (gan.opt_g, gan.opt_d) for group in opt.param_groups)


def test_cpu_adam_is_the_default_kernel(nb, make_config):
    """Fused Adam only on CUDA: on the CPU the default kernel, which every CPU figure was measured with; LR and
    BETA1 reach both optimizers."""
    gan = nb.build_gan(make_config(LR=0.0003, BETA1=0.4), cpu_hardware(nb))
    for optimizer in (gan.opt_g, gan.opt_d):
        assert not optimizer.defaults["fused"] and optimizer.defaults["lr"] == 0.0003
        assert optimizer.defaults["betas"] == (0.4, 0.999)


def test_update_ema_matches_averaged_model_and_copies_the_counter(nb, make_config, tiny_images):
    """The written-out update does to the float weights what AveragedModel.update_parameters with the EMA
    averaging function does, to the bit; batch norm's integer counter is copied, not averaged (16 tiny kernels
    a step for a number eval mode never reads). Catches either drifting."""
    config = make_config()
    hardware = cpu_hardware(nb)
    gan = nb.build_gan(config, hardware)
    reference = AveragedModel(gan.generator, use_buffers=True)
    for step in range(5):
        real = nb.real_batch(tiny_images, torch.arange(16), False, None, CPU)
        nb.train_step(gan, real, torch.randn(16, config.latent_dim, 1, 1), hardware)
        nb.update_ema(gan.ema, gan.generator, 0.999, step)
        reference.multi_avg_fn = get_ema_multi_avg_fn(min(0.999, (1 + step) / (10 + step)))
        reference.update_parameters(gan.generator)
    mine, theirs, generator = (
        gan.ema.module.state_dict(),
        reference.module.state_dict(),
        gan.generator.state_dict(),
    )
    assert mine.keys() == theirs.keys()
    for key, value in mine.items():
        assert torch.equal(value, theirs[key] if value.is_floating_point() else generator[key]), key
    assert int(gan.ema.n_averaged) == 5


# ---- no host sync per step ---------------------------------------------------------------------------------
def test_no_host_reads_per_step_with_the_fp16_scaler_and_ema(nb, monkeypatch, make_config, tiny_images):
    """On a GPU each read makes the CPU wait. AveragedModel read its counter (`n_averaged == 0`) and GradScaler
    with plain Adam read the overflow flag (.item()) every step; the fused kernel keeps that flag on the device.
    The same count with plain Adam is the positive control: the counter does see the scaler's read."""
    config = make_config(EMA_DECAY=0.999, LOG_EVERY=1000)
    hardware = cpu_hardware(nb, "fp16")  # the T4 path: fp16 with the gradient scaler
    assert per_step_host_reads(nb, monkeypatch, config, hardware, tiny_images, fused=True) == 0
    assert per_step_host_reads(nb, monkeypatch, config, hardware, tiny_images, fused=False) >= 4


# ---- resume settings -------------------------------------------------------------------------------------------
def adam_state_after_a_step(fused, lr):
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(3))
    optimizer = torch.optim.Adam([weight], lr=lr, betas=(0.5, 0.999), fused=fused)
    weight.sum().backward()
    optimizer.step()
    return weight, optimizer


@pytest.mark.parametrize(("saved_fused", "now_fused"), [(False, True), (True, False)])
def test_resume_keeps_this_runs_adam_settings(nb, saved_fused, now_fused):
    """load_state_dict brings back the checkpoint's lr, betas and `fused`: a CPU checkpoint resumed on a GPU
    would lose the fused kernel, and a changed LR would be announced but silently ignored."""
    _, saved = adam_state_after_a_step(saved_fused, lr=0.001)
    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.Adam([weight], lr=0.0005, betas=(0.4, 0.999), fused=now_fused)
    nb.load_optimizer(optimizer, copy.deepcopy(saved.state_dict()))
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.0005 and group["betas"] == (0.4, 0.999) and bool(group["fused"]) is now_fused
    assert torch.equal(
        optimizer.state[weight]["exp_avg"], saved.state[saved.param_groups[0]["params"][0]]["exp_avg"]
    )
    assert (
        optimizer.state[weight]["step"].dtype == torch.float32 and int(optimizer.state[weight]["step"]) == 1
    )
    weight.sum().backward()
    optimizer.step()  # the loaded state fits the kernel
    assert int(optimizer.state[weight]["step"]) == 2


def test_a_cpu_checkpoint_puts_adam_step_counters_on_the_weights_device_for_the_fused_kernel(nb):
    """Fused Adam reads its step counters on the weights' device; a CPU checkpoint has them on the CPU. (The
    weights on "meta" stand for a GPU's; the group is marked fused as build_gan marks it on CUDA.)"""
    _, saved = adam_state_after_a_step(False, lr=0.001)
    weight = torch.nn.Parameter(torch.zeros(3, device="meta"))
    optimizer = torch.optim.Adam([weight], lr=0.001)
    optimizer.param_groups[0]["fused"] = True
    nb.load_optimizer(optimizer, copy.deepcopy(saved.state_dict()))
    assert (
        optimizer.state[weight]["step"].device == weight.device == optimizer.state[weight]["exp_avg"].device
    )


# ---- cuDNN flags, FID on the chosen GPU -----------------------------------------------------------------------
@pytest.fixture
def restore_backend_flags(monkeypatch):
    """Put torch's global cuDNN and determinism switches back after the test."""
    cudnn = torch.backends.cudnn
    saved = (cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32)
    determinism = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    yield
    cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32 = saved
    torch.use_deterministic_algorithms(determinism[0], warn_only=determinism[1])


@pytest.mark.parametrize(("precision", "tf32"), [("fp32", False), ("bf16", True), ("fp16", True)])
def test_fast_cuda_settings_and_fp32_without_tf32(nb, restore_backend_flags, precision, tf32):
    nb.configure_cuda(precision, deterministic=False)
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    assert torch.backends.cudnn.allow_tf32 is tf32
    assert not torch.are_deterministic_algorithms_enabled()


def test_deterministic_cuda_settings(nb, restore_backend_flags):
    import os

    nb.configure_cuda("bf16", deterministic=True)
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert torch.are_deterministic_algorithms_enabled() and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_fid_runs_inception_on_the_chosen_gpu(nb, monkeypatch, tmp_path):
    """torch-fidelity's cuda=True means "the current GPU": with DEVICE cuda:1 that must be GPU 1."""
    import torch_fidelity

    entered, calls = [], []

    @contextlib.contextmanager
    def current_gpu(device):
        entered.append(device)
        yield
        entered.append("left")

    def calculate_metrics(**options):
        calls.append((options["cuda"], list(entered)))
        return dict.fromkeys(
            ("frechet_inception_distance", "kernel_inception_distance_mean", "kernel_inception_distance_std"),
            1.0,
        )

    monkeypatch.setattr(torch.cuda, "device", current_gpu)
    monkeypatch.setattr(torch_fidelity, "calculate_metrics", calculate_metrics)
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    nb.fid_kid(images, images, "real", tmp_path, "", torch.device("cuda", 1))
    assert calls == [(True, [torch.device("cuda", 1)])] and entered[-1] == "left"
    nb.fid_kid(images, images, "real", tmp_path, "", CPU)
    assert calls[-1] == (False, entered)  # on the CPU: no GPU context at all


def test_real_features_of_a_gpu_and_a_cpu_are_cached_apart(nb):
    names = {
        nb.real_features_name("key", 2000, 0, device) for device in (CPU, CUDA0, torch.device("cuda", 1))
    }
    assert len(names) == 2 and all("key" in name and "2000" in name for name in names)


def test_fid_without_torch_fidelity_is_skipped_with_the_install_command(nb, make_config, monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "torch_fidelity" else find_spec(name, *a),
    )
    generator = nb.build_generator(TINY["LATENT_DIM"], TINY["G_WIDTH"], TINY["IMAGE_SIZE"])
    scores = nb.measure_fid(generator, None, "real", make_config(FID_SAMPLES=10), CPU, "unused")
    assert scores is None and "pip install torch-fidelity" in capsys.readouterr().out


# ---- torch.compile ----------------------------------------------------------------------------------------------
def test_sampling_never_calls_the_compiled_network(nb):
    """With COMPILE, eval mode and each sample batch size would recompile: draw() runs the plain forward."""
    generator = nb.build_generator(TINY["LATENT_DIM"], TINY["G_WIDTH"], TINY["IMAGE_SIZE"])
    generator.compile()
    generator._compiled_call_impl = lambda *args, **kwargs: pytest.fail("sampling ran the compiled network")
    images = nb.draw(generator, torch.randn(3, TINY["LATENT_DIM"], 1, 1))
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.uint8 and generator.training


# ---- the GPUs users get: kernels the build lacks, precision and layout by capability, TF32, scaling ----------
@pytest.mark.parametrize(
    ("capability", "name", "runs"),
    [
        ((6, 0), "Tesla P100-PCIE-16GB", False),  # Kaggle's P100: the wheel has no sm_60
        ((6, 1), "GeForce GTX 1080", False),
        ((7, 0), "Tesla V100-SXM2-16GB", False),  # sm_75 code does not run on 7.0, and compute_120 is newer
        ((7, 5), "Tesla T4", True),
        ((8, 9), "NVIDIA L4", True),  # sm_86's machine code runs on 8.9
        ((9, 0), "NVIDIA H100", True),
        ((12, 1), "a newer GPU", True),  # sm_120 machine code on 12.1
    ],
)
def test_a_gpu_the_build_has_no_kernels_for_is_found(nb, monkeypatch, capability, name, runs):
    """Catches: trusting torch.cuda.is_available() on a P100 (True) until the first kernel fails."""
    mock_cuda(monkeypatch, count=1, current=0, capability=capability, name=name)
    if runs:
        assert nb.gpu_kernels_missing(0) is None and nb.pick_device("auto") == CUDA0
        return
    problem = nb.gpu_kernels_missing(0)
    assert name in problem and f"{capability[0]}.{capability[1]}" in problem
    with pytest.raises(nb.ConfigError, match="Settings → Accelerator → GPU T4 ×2") as error:
        nb.pick_device("auto")
    assert "DEVICE = 'cpu'" in str(error.value)


def test_portable_code_runs_on_newer_gpus(nb, monkeypatch):
    """A build with compute_80 (PTX) runs on 9.0 by compiling it; machine code sm_90a runs on 9.0 only."""
    mock_cuda(monkeypatch, count=1, current=0, capability=(9, 0), archs=["sm_80", "compute_80"])
    assert nb.gpu_kernels_missing(0) is None
    mock_cuda(monkeypatch, count=1, current=0, capability=(10, 0), archs=["sm_90a"])
    assert nb.gpu_kernels_missing(0) is not None
    mock_cuda(monkeypatch, count=1, current=0, capability=(9, 0), archs=["sm_90a"])
    assert nb.gpu_kernels_missing(0) is None


def test_a_rocm_build_is_not_judged_by_nvidia_architectures(nb, monkeypatch):
    """An AMD GPU under a ROCm build also answers torch.cuda.is_available(); its architecture list holds gfx...
    names. Catches parsing those as NVIDIA ones (an AttributeError before training) or refusing the GPU."""
    mock_cuda(
        monkeypatch,
        count=1,
        current=0,
        capability=(9, 4),
        name="AMD Instinct MI300X",
        archs=["gfx90a", "gfx942"],
    )
    assert nb.gpu_kernels_missing(0) is None and nb.pick_device("auto") == CUDA0


@pytest.mark.parametrize(
    ("capability", "auto", "layout_fp32", "layout_auto"),
    [((6, 0), "fp32", False, False), ((7, 5), "fp16", False, True), ((8, 0), "bf16", False, True)],
)
def test_precision_and_layout_follow_the_hardware(
    nb, monkeypatch, capability, auto, layout_fp32, layout_auto
):
    """Catches: fp16 on Pascal (no tensor cores: no gain), channels-last claimed for every CUDA precision."""
    mock_cuda(monkeypatch, count=1, current=0, capability=capability)
    assert nb.pick_precision("auto", CUDA0) == auto
    assert nb.choose_compute(CUDA0, "fp32").channels_last is layout_fp32
    assert nb.choose_compute(CUDA0, auto).channels_last is layout_auto
    assert nb.choose_compute(CPU, "fp32").channels_last is True  # measured faster on the CPU


def test_a_resumed_run_says_its_precision_changed(nb, make_config, tmp_path, capsys):
    """A T4's fp16 checkpoint resumed on another machine: the note names what ran then and what runs now.
    Catches: comparing the requested PRECISION ("auto" both times) instead of what ran, or what ran with what
    was requested (every "auto" resume would then claim a change)."""
    config = make_config(PRECISION="auto")
    compute = cpu_hardware(nb)
    gan = nb.build_gan(config, compute)
    noise = torch.zeros(2, config.latent_dim, 1, 1)
    metrics = {"data_key": None, "epochs": [], "steps": {}, "fid": []}
    nb.save_checkpoint(tmp_path / "checkpoint.pt", gan, 1, metrics, noise, config, compute)
    state = nb.read_checkpoint(tmp_path / "checkpoint.pt")
    assert state["compute"] == {"device": "cpu (CPU), fp32", "precision": "fp32"}
    nb.restore_checkpoint(nb.build_gan(config, compute), state, config, compute)
    assert "Note: resuming" not in capsys.readouterr().out  # fp32 then and now: nothing to say
    state["compute"] = {"device": "cuda:0 (Tesla T4), fp16", "precision": "fp16"}
    nb.restore_checkpoint(nb.build_gan(config, compute), state, config, compute)
    assert (
        "changed PRECISION (the checkpoint computed on cuda:0 (Tesla T4), fp16; this run on cpu (CPU), fp32)"
        in capsys.readouterr().out
    )


def test_fp32_switches_tf32_off_and_the_old_flag_stays_readable(nb):
    """Catches: setting torch 2.9's cudnn.conv.fp32_precision alone, after which reading allow_tf32 (as
    cudnn.flags() and other libraries do) raises."""
    saved = torch.backends.cudnn.allow_tf32
    try:
        nb.configure_cuda("fp32", deterministic=False)
        assert torch.backends.cudnn.allow_tf32 is False
        with torch.backends.cudnn.flags(enabled=True):  # reads allow_tf32
            pass
        nb.configure_cuda("bf16", deterministic=False)
        assert torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.backends.cudnn.allow_tf32 = saved
        torch.backends.cudnn.benchmark = False


def test_pixels_are_scaled_by_one_multiplication(nb):
    """A GPU divides by a number by multiplying with its reciprocal; the CPU divides, and 111 of the 256 byte
    values then differ in the last bit. Catches: div(127.5), which makes a CPU batch differ from a GPU's."""
    values = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(1, 3, 16, 16)
    expected = values.float() * torch.tensor(1 / 127.5, dtype=torch.float32) - 1
    assert torch.equal(nb.to_model_range(values), expected)
    nhwc = values.permute(0, 2, 3, 1).contiguous()
    batch = nb.real_batch(nhwc, torch.tensor([0]), False, None, CPU)
    assert torch.equal(batch, expected)


def test_the_copy_search_runs_where_the_faces_are(nb, monkeypatch):
    """Catches: the nearest-image search copying the data set to the CPU (about 4.6 G element operations a call
    at 64 px) while the faces sit on a CUDA GPU."""
    seen = []
    cdist = torch.cdist
    monkeypatch.setattr(
        torch, "cdist", lambda a, b, **options: seen.append((a.device, b.device)) or cdist(a, b, **options)
    )
    with fake_cuda():
        faces = torch.zeros(10, 8, 8, 3, dtype=torch.uint8).to(CUDA0)
        distances = nb.pixel_distances(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), faces, chunk=4)
        assert distances.device == CPU and distances.shape == (2, 10)
    assert seen == [(CUDA0, CUDA0)] * 3
    # (a fake MPS tensor cannot be copied to the CPU without an MPS build, so that branch runs on a Mac only)


def test_the_compute_object_names_the_gpu_and_sets_cudnn_once(nb, make_config, monkeypatch):
    """DEVICE and PRECISION resolved once on a (mocked) T4: fp16, channels-last, cuDNN set for it, and the words
    a checkpoint and the model card record. Catches a resolve that skips configure_cuda on a GPU, or a
    description that names the CPU."""
    mock_cuda(monkeypatch, count=1, current=0, capability=(7, 5), name="Tesla T4")
    configured = []
    monkeypatch.setattr(nb, "configure_cuda", lambda precision, deterministic: configured.append(precision))
    compute = nb.resolve_compute(make_config(DEVICE="auto", PRECISION="auto"))
    assert compute == nb.Compute(CUDA0, "fp16", True) and configured == ["fp16"]
    assert compute.describe() == "cuda:0 (Tesla T4), fp16"
    assert nb.what_ran(compute) == {"device": "cuda:0 (Tesla T4), fp16", "precision": "fp16"}
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert nb.resolve_compute(make_config(DEVICE="auto", PRECISION="auto")).describe() == "mps:0 (MPS), fp32"
    assert configured == ["fp16"]  # cuDNN is left alone off CUDA


@pytest.mark.parametrize("saved_fused, now_fused", [(False, True), (True, False)])
def test_a_resumed_optimizer_keeps_this_runs_kernel_and_settings(nb, saved_fused, now_fused):
    """A checkpoint from plain Adam resumed with fused Adam (a CPU run continued on CUDA), and the other way
    round: the optimizer keeps this run's LR and kernel, and Adam's step counters sit where that kernel reads
    them (fused: float32 on the weights' device), so the next step runs. Fused Adam also exists on the CPU."""
    weights = [torch.nn.Parameter(torch.randn(3))]
    saved = torch.optim.Adam(weights, lr=0.1, fused=saved_fused)
    weights[0].grad = torch.ones(3)
    saved.step()
    optimizer = torch.optim.Adam(weights, lr=0.0003, fused=now_fused)
    nb.load_optimizer(optimizer, saved.state_dict())
    group = optimizer.param_groups[0]
    assert (group["fused"], group["lr"]) == (now_fused, 0.0003)
    step = optimizer.state[weights[0]]["step"]
    assert step.item() == 1 and step.dtype == torch.float32 and step.device == weights[0].device
    optimizer.step()
    assert optimizer.state[weights[0]]["step"].item() == 2
