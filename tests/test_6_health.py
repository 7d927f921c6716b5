"""Section 6, "The training loop", its cell "Training health, and how long it will take": the notebook's own
training made to fail in each of the ways a first GAN fails, and the verdict it gets; healthy runs that stay
quiet; rising FID; the verdict in metrics, the figure, the report and the checkpoint (a checkpoint from
before the health check still resumes); the clock's estimates. (The verdicts' table in section 7 reads the
same metrics.)

The failing runs train the notebook's own networks with train_one_epoch on 512 real 32 px faces (or drawn
ones without ../shared), 32 steps an epoch, widths 16, on the CPU in fp32:
  - the discriminator wins: D's learning rate 250x the default (0.05) with momentum 0.9;
  - the generator collapses: G's output ignores its noise (a layer that zeroes it);
  - unstable: LR 0.1 for both networks.
Every verdict waits for the warm-up (200 steps: 7 epochs here). Each run was measured when the thresholds were
chosen (the notebook's health cell gives the figures), as was the same run with the notebook's defaults, which
stays healthy. What they catch: a check_health that never warns, thresholds turned the wrong way, or a
verdict read from the wrong column of the history."""

import copy
import math
import types

import matplotlib.colors
import pytest
import torch
from conftest import SHARED_FACES, one_epoch, run, tiny_config, train_epochs, write_faces
from torch import nn

CPU = torch.device("cpu")
FAST = dict(
    IMAGE_SIZE=32, G_WIDTH=16, D_WIDTH=16, LATENT_DIM=32, BATCH_SIZE=16, LOG_EVERY=8, PRECISION="fp32"
)


@pytest.fixture(scope="module")
def faces(nb, tmp_path_factory):
    """512 faces at 32 px as the uint8 tensor training reads: real ones if ../shared has them."""
    folder = tmp_path_factory.mktemp("health")
    source = SHARED_FACES
    if not SHARED_FACES.is_dir():
        write_faces(folder / "drawn", 512, size=40)
        source = folder / "drawn"
    data = nb.prepare_dataset(source, 32, 512, 0, folder / "cache")
    return nb.place_images(data.images, CPU)


@pytest.fixture
def one_thread():
    """Networks this small train several times faster on one CPU thread (and the thresholds were measured so)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class IgnoreNoise(nn.Module):
    """Replaces the generator's noise by zeros: every face the same."""

    def forward(self, noise):
        return torch.zeros_like(noise)


def verdicts(nb, default_parameters, faces, tmp_path, epochs, mutate=None, **overrides):
    assert torch.get_num_threads() == 1  # the one_thread fixture
    """Train epochs of 32 steps with the notebook's train_one_epoch and check_health; the verdict of each."""
    config = tiny_config(nb, default_parameters, tmp_path / "run", **{**FAST, "EPOCHS": epochs, **overrides})
    hardware = nb.choose_compute(CPU, "fp32")
    gan = nb.build_gan(config, hardware)
    if mutate:
        mutate(gan)
    noise = torch.randn(64, config.latent_dim, 1, 1, generator=torch.Generator().manual_seed(0))
    real_variety = nb.variety(faces[:64].permute(0, 3, 1, 2))
    found, steps = [], 0
    for epoch in range(1, epochs + 1):
        history = one_epoch(nb, gan, faces, epoch, config, hardware)
        steps += len(history)
        verdict, advice, measures = nb.check_health(
            history, nb.draw(gan.drawing_generator, noise), real_variety, [], steps
        )
        found.append(verdict)
        assert advice and set(measures) == {"fooled", "certain", "variety"}
    return found


def test_a_normal_run_stays_healthy(nb, default_parameters, faces, tmp_path, one_thread):
    """No crying wolf: the defaults are "warming up" for 200 steps, then healthy."""
    found = verdicts(nb, default_parameters, faces, tmp_path, epochs=8)
    assert found == ["warming up"] * 6 + ["healthy"] * 2, found


def test_a_much_faster_discriminator_wins(nb, default_parameters, faces, tmp_path, one_thread):
    def faster_discriminator(gan):
        for group in gan.opt_d.param_groups:
            group.update(lr=0.05, betas=(0.9, 0.999))

    found = verdicts(nb, default_parameters, faces, tmp_path, epochs=8, mutate=faster_discriminator)
    assert found == ["warming up"] * 6 + ["discriminator wins"] * 2, found


def test_a_generator_that_ignores_its_noise_collapses(nb, default_parameters, faces, tmp_path, one_thread):
    def ignore_noise(gan):
        gan.generator.insert(0, IgnoreNoise())
        gan.ema = None  # sample from this generator itself

    found = verdicts(nb, default_parameters, faces, tmp_path, epochs=7, mutate=ignore_noise)
    assert found == ["warming up"] * 6 + ["generator collapses"], found


def test_far_too_fast_learning_is_unstable(nb, default_parameters, faces, tmp_path, one_thread):
    found = verdicts(nb, default_parameters, faces, tmp_path, epochs=8, LR=0.1)
    assert found[:6] == ["warming up"] * 6 and "unstable" in found[6:], found


def test_rising_fid_is_getting_worse_and_a_wobble_is_not(nb):
    history = torch.tensor([[0.5, 3.0, 0.8, 0.2]] * 8)
    samples = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8)
    real = nb.variety(samples)

    def verdict(fids):
        rows = [{"fid": fid} for fid in fids]
        return nb.check_health(history, samples, real, rows, 1000)[0]

    assert verdict([300, 250, 290]) == "getting worse"  # 290 > 1.1 x 250
    assert verdict([300, 250, 270]) == "healthy"  # within 10 % of the best
    assert verdict([250, 300]) == "healthy"  # a rise, but too few measurements to call a trend


def test_variety_is_zero_for_copies_and_grows_with_difference(nb):
    same = torch.full((6, 3, 8, 8), 100, dtype=torch.uint8)
    assert nb.variety(same) == 0
    two = torch.stack([torch.zeros(3, 8, 8), torch.full((3, 8, 8), 255.0)]).to(torch.uint8)
    assert math.isclose(nb.variety(two), 255, rel_tol=1e-6)  # RMS distance of black to white


def test_the_verdict_reaches_metrics_the_figure_and_the_report(
    nb, default_parameters, tiny_images, tmp_path, capsys
):
    config = tiny_config(nb, default_parameters, tmp_path / "run", EPOCHS=2, PRECISION="fp32")
    hardware = nb.choose_compute(CPU, "fp32")
    paths = nb.make_run_folder(config.run_dir)
    gan = nb.build_gan(config, hardware)
    _, metrics, fixed_noise = nb.start_or_resume(gan, paths, config, nb.choose_compute(CPU, "fp32"))
    shown = []
    view = types.SimpleNamespace(live=False, show=lambda figure, kind, epoch=None: shown.append(figure))
    train_epochs(nb, gan, tiny_images, metrics, fixed_noise, config, hardware, paths, view=view)
    printed = capsys.readouterr().out
    assert [row["epoch"] for row in metrics["health"]] == [1, 2]
    assert all(row["verdict"] == "warming up" for row in metrics["health"])
    assert "Warming up" in shown[-1]._suptitle.get_text()
    for figure in shown:
        nb.plt.close(figure)
    assert "Epoch 2/2 took" in printed and "Healthy" not in printed  # a healthy run prints no verdict
    saved = nb.read_checkpoint(paths.checkpoint)["metrics"]["health"]
    assert saved == metrics["health"]


def test_an_unhealthy_verdict_is_printed_and_red_and_a_healthy_one_stays_quiet(
    nb, default_parameters, tiny_images, tmp_path, capsys, monkeypatch
):
    """The keeper given two verdicts: "discriminator wins" after epoch 1, "healthy" after epoch 2. The first
    one's advice ends epoch 1's line and titles its figure in red; the second titles its figure in green and
    prints nothing. Catches advice never printed, printed for healthy epochs too, or the colours swapped."""
    config = tiny_config(nb, default_parameters, tmp_path / "run", EPOCHS=2, PRECISION="fp32")
    hardware = nb.choose_compute(CPU, "fp32")
    paths = nb.make_run_folder(config.run_dir)
    gan = nb.build_gan(config, hardware)
    _, metrics, fixed_noise = nb.start_or_resume(gan, paths, config, hardware)
    measures = {"fooled": 0.0, "certain": 0.9, "variety": 0.5}
    verdicts = iter(
        [("discriminator wins", "ADVICE: D WINS", measures), ("healthy", "ADVICE: ALL WELL", measures)]
    )
    monkeypatch.setattr(nb, "check_health", lambda *inputs: next(verdicts))
    shown = []
    view = types.SimpleNamespace(live=False, show=lambda figure, kind, epoch=None: shown.append(figure))
    train_epochs(nb, gan, tiny_images, metrics, fixed_noise, config, hardware, paths, view=view)
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("Epoch 1/2 took") and line.endswith("ADVICE: D WINS") for line in lines)
    assert not any("ALL WELL" in line for line in lines)
    titles = [figure._suptitle for figure in shown if figure._suptitle is not None]
    for figure in shown:
        nb.plt.close(figure)
    assert [title.get_text() for title in titles] == ["ADVICE: D WINS", "ADVICE: ALL WELL"]
    assert [matplotlib.colors.same_color(title.get_color(), "tab:red") for title in titles] == [True, False]
    assert matplotlib.colors.same_color(titles[1].get_color(), "tab:green")
    assert [row["verdict"] for row in metrics["health"]] == ["discriminator wins", "healthy"]


def test_a_checkpoint_from_before_the_health_check_resumes(nb, default_parameters, tiny_images, tmp_path):
    """Runs saved by earlier versions have no "health" in their metrics: they resume and get one."""
    _, metrics, paths = run(nb, default_parameters, tiny_images, tmp_path / "run", EPOCHS=1)
    state = nb.read_checkpoint(paths.checkpoint)
    old = copy.deepcopy(state)
    del old["metrics"]["health"]
    nb.atomic_write(paths.checkpoint, lambda tmp: torch.save(old, tmp))
    _, metrics, _ = run(nb, default_parameters, tiny_images, tmp_path / "run", EPOCHS=2)
    assert [row["epoch"] for row in metrics["health"]] == [2]


# ---- how long will it take? -------------------------------------------------------------------------------
class FakeTime:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_first_estimate_comes_from_the_speed_after_warm_up(nb):
    clock_time = FakeTime()
    clock = nb.Clock(epochs=10, steps_per_epoch=100, batch_size=64, now=clock_time)
    clock_time.now = 30.0  # the first 20 steps: slow, warming up
    assert clock.steps_done(20) is None
    clock_time.now = 40.0  # the next 20 steps: 2 steps/s
    message = clock.steps_done(40)
    assert message == "At 128 images/s, training 64,000 images takes about 8 min 20 s."
    clock_time.now = 50.0
    assert clock.steps_done(60) is None  # said once


def test_after_each_epoch_the_time_left_from_the_mean_epoch(nb):
    clock_time = FakeTime()
    clock = nb.Clock(epochs=4, steps_per_epoch=10, batch_size=8, now=clock_time)
    clock_time.now = 100.0
    assert clock.epoch_done(1, 4) == "Epoch 1/4 took 1 min 40 s; about 5 min 0 s left."
    clock_time.now = 300.0  # epoch 2 took 200 s: the mean is 150 s
    assert clock.epoch_done(2, 4) == "Epoch 2/4 took 3 min 20 s; about 5 min 0 s left."
    clock_time.now = 450.0
    clock_time.now = 600.0
    assert clock.epoch_done(3, 4).endswith("left.") and clock.epoch_done(4, 4).endswith("done.")


@pytest.mark.parametrize(("seconds", "words"), [(45, "45 s"), (372, "6 min 12 s"), (8160, "2 h 16 min")])
def test_durations_read_at_a_glance(nb, seconds, words):
    assert nb.duration(seconds) == words
