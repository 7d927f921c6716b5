"""The results a run leaves behind: progress GIF, latent walk, exported generator, EMA, FID/KID and the zip.

In-process tests call the notebook's own functions (the `nb` fixture); end-to-end tests share a few
papermill runs on tiny data (module-scoped fixtures), so the whole file stays fast on 2 CPU cores."""

import json
import math
import os
import re
import socket
import urllib.error
import zipfile

import numpy as np
import pytest
import torch
from conftest import (
    SHARED_FACES,
    SHARED_FID_WEIGHTS,
    cpu_hardware,
    needs_shared,
    notebook_text,
    one_epoch,
    run_notebook,
)
from PIL import Image, ImageSequence

# The e2e runs below use TINY's 32 px images; a grid cell is the image plus 2 px padding.
CELL = 32 + 2
CPU = torch.device("cpu")
CPU_FP32 = dict(device=torch.device("cpu"), precision="fp32", channels_last=False)
NO_METRICS = {"epochs": [], "steps": {"loss_d": [], "loss_g": [], "d_real": [], "d_fake": []}, "fid": []}


def gif_frames(path):
    """Every frame of a GIF as an (H, W, 3) uint8 array, and each frame's duration in ms."""
    with Image.open(path) as gif:
        frames = [
            (np.asarray(frame.convert("RGB")), frame.info.get("duration"))
            for frame in ImageSequence.Iterator(gif)
        ]
    return [pixels for pixels, _ in frames], [duration for _, duration in frames]


def state_equal(a, b):
    """True when two state dicts have the same keys and bit-identical tensors."""
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


# --------------------------------------------------------------------------------------------------
# End-to-end runs, shared by several tests


@pytest.fixture(scope="module")
def e2e_run(report_run):
    """The shared 4-epoch report run (conftest.report_run): (run folder, executed notebook)."""
    return report_run.run, report_run.out


# FID/KID of 10 generated vs 10 real images, from the shared offline Inception weights
REAL_FID = dict(FID_WEIGHTS=str(SHARED_FID_WEIGHTS), FID_SAMPLES=10, FID_REAL=10)
# 320 of the real faces at 64 px: 10 steps of 32 an epoch
REAL_FACES = dict(DATA_DIR=str(SHARED_FACES), MAX_IMAGES=320, IMAGE_SIZE=64, BATCH_SIZE=32)


@pytest.fixture(scope="module")
def fid_run(tmp_path_factory):
    """A 1-epoch papermill run on real faces, evaluated with the real torch-fidelity and the shared offline
    Inception weights. (FID_EVERY, the table, the plot, the zip and resuming with FID rows run through the
    same cells in conftest.resume_chain, with a stand-in torch-fidelity, so without ../shared.) Returns (run
    folder, executed notebook)."""
    needs_shared(SHARED_FID_WEIGHTS)
    needs_shared(SHARED_FACES)
    folder = tmp_path_factory.mktemp("fid_e2e")
    out = run_notebook(folder, RUN_DIR=str(folder / "run"), EPOCHS=1, **REAL_FACES, **REAL_FID)
    return folder / "run", out


def test_real_faces_one_epoch(fid_run):
    run, out = fid_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"][0]["steps"] == 10
    assert "320 faces of 64×64 pixels" in notebook_text(out)
    assert Image.open(run / "samples" / "epoch_001.png").size == (8 * 66 + 2, 2 * 66 + 2)


# --------------------------------------------------------------------------------------------------
# Progress GIF


@pytest.fixture
def epoch_grids(nb, tmp_path):
    """Three identical per-epoch sample grids, saved as the training loop saves them. Their few colours
    (each channel 0, 127 or 254) fit in a GIF palette, so the frames keep the grid's pixels exactly."""
    images = torch.from_numpy(127 * np.random.default_rng(0).integers(0, 3, (8, 3, 32, 32), dtype=np.uint8))
    grid = nb.image_grid(images, columns=4)
    (tmp_path / "samples").mkdir()
    paths = [tmp_path / "samples" / f"epoch_{epoch:03d}.png" for epoch in (1, 2, 3)]
    for path in paths:
        nb.save_grid(grid, path)
    return paths


def test_progress_gif_has_one_frame_per_epoch(nb, epoch_grids, tmp_path):
    gif_path = tmp_path / "progress.gif"
    assert nb.make_progress_gif(epoch_grids, gif_path) == 3
    with Image.open(gif_path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 3
    _, durations = gif_frames(gif_path)
    assert durations[-1] > durations[0]  # the last frame lingers


def test_progress_gif_frames_are_labelled(nb, epoch_grids, tmp_path):
    gif_path = tmp_path / "progress.gif"
    nb.make_progress_gif(epoch_grids, gif_path)
    frames, _ = gif_frames(gif_path)
    grid = np.asarray(Image.open(epoch_grids[0]).convert("RGB")).astype(int)
    banner = frames[0].shape[0] - grid.shape[0]
    assert banner > 0 and frames[0].shape[1] == grid.shape[1]  # a banner is added on top, the width is kept
    # Below the banner every frame is the grid ...
    for frame in frames:
        assert np.array_equal(frame[banner:], grid)
    # ... and the banner is not the grid's top rows: it holds a light label on a dark background.
    top = frames[0][:banner].astype(int)
    assert np.abs(top - grid[:banner]).mean() > 30
    assert (top.min(axis=2) > 200).sum() >= 10 and (top.max(axis=2) < 50).mean() > 0.5
    # The grids are identical, so only the labels (epoch 1, 2, 3) tell the frames apart.
    assert not np.array_equal(frames[0][:banner], frames[1][:banner])
    assert not np.array_equal(frames[1][:banner], frames[2][:banner])


def test_e2e_progress_gif_has_a_frame_per_epoch(e2e_run):
    run, out = e2e_run
    with Image.open(run / "progress.gif") as gif:
        assert gif.n_frames == 4
    assert "progress.gif: 4 frames" in notebook_text(out)


# --------------------------------------------------------------------------------------------------
# Latent interpolation


def random_latents(rows, dim, seed=0):
    return torch.randn(2, rows, dim, generator=torch.Generator().manual_seed(seed))


def test_slerp_endpoints_are_the_inputs(nb):
    start, end = random_latents(4, 100)
    torch.testing.assert_close(nb.slerp(start, end, 0.0), start)
    torch.testing.assert_close(nb.slerp(start, end, 1.0), end)


def test_slerp_keeps_the_norm_where_lerp_does_not(nb):
    start, end = random_latents(4, 100)
    start, end = 10 * start / start.norm(dim=1, keepdim=True), 10 * end / end.norm(dim=1, keepdim=True)
    for fraction in (0.1, 0.25, 0.5, 0.75, 0.9):
        norms = nb.slerp(start, end, fraction).norm(dim=1)
        torch.testing.assert_close(norms, torch.full_like(norms, 10.0), rtol=1e-4, atol=1e-4)
    # the straight line cuts through the middle of the sphere: about 10 / sqrt(2) for near-orthogonal ends
    assert torch.lerp(start, end, 0.5).norm(dim=1).max() < 8


def test_slerp_of_one_parallel_pair_is_finite(nb):
    start = random_latents(1, 16)[0]
    for end in (start.clone(), 2.5 * start):
        for fraction in (0.0, 0.5, 1.0):
            walked = nb.slerp(start, end, fraction)
            assert torch.isfinite(walked).all()
            torch.testing.assert_close(walked, torch.lerp(start, end, fraction))


@pytest.mark.parametrize("case", ["identical rows", "scaled rows", "one parallel row among ordinary ones"])
def test_slerp_of_parallel_rows_in_a_batch_is_finite(nb, case):
    start, end = random_latents(3, 16)
    parallel = {
        "identical rows": [0, 1, 2],
        "scaled rows": [0, 1, 2],
        "one parallel row among ordinary ones": [0],
    }[case]
    end[parallel] = (2.5 if case == "scaled rows" else 1.0) * start[parallel]
    for fraction in (0.0, 0.5, 1.0):
        walked = nb.slerp(start, end, fraction)
        assert torch.isfinite(walked).all(), fraction
        torch.testing.assert_close(walked[parallel], torch.lerp(start[parallel], end[parallel], fraction))


def test_interpolation_noise_shape_and_rows(nb):
    noise = nb.interpolation_noise(pairs=3, steps=7, latent_dim=16, seed=5)
    assert noise.shape == (3 * 7, 16, 1, 1)
    assert torch.isfinite(noise).all()
    assert torch.equal(noise, nb.interpolation_noise(pairs=3, steps=7, latent_dim=16, seed=5))  # repeatable
    assert not torch.equal(noise, nb.interpolation_noise(pairs=3, steps=7, latent_dim=16, seed=6))
    rows = noise.reshape(3, 7, 16)
    for row in rows:  # each row walks between two different latents, one small step at a time
        steps = (row[1:] - row[:-1]).norm(dim=1)
        assert (row[0] - row[-1]).norm() > 1 and steps.max() < 0.5 * (row[0] - row[-1]).norm()


def test_e2e_interpolation_png_has_ten_columns(e2e_run):
    run, _ = e2e_run
    with Image.open(run / "interpolation.png") as image:  # 4 walks of 10 steps, 32 px images, 2 px padding
        assert image.size == (10 * CELL + 2, 4 * CELL + 2)


# --------------------------------------------------------------------------------------------------
# Training-side helpers: a tiny GAN trained for one epoch in-process


def tiny_gan(nb, make_config, faces_dir, hardware=None, **overrides):
    """A tiny GAN (fp32 on the CPU unless hardware says otherwise) trained for one epoch of 4 steps on
    faces_dir. Returns (gan, config, hardware)."""
    config = make_config(DATA_DIR=str(faces_dir), **overrides)
    hardware = hardware or nb.Compute(**CPU_FP32)
    torch.manual_seed(0)
    gan = nb.build_gan(config, hardware)
    images = torch.from_numpy(
        np.stack([nb.load_image(path, config.image_size)[0] for path in sorted(faces_dir.iterdir())])
    )
    one_epoch(nb, gan, images, 1, config, hardware)
    return gan, config, hardware


# --------------------------------------------------------------------------------------------------
# Export round trip


# fp32 with the usual layout, and bf16 training with channels-last weights (what "auto" picks on CUDA and on
# CPUs with native bf16): either way the exported copy holds exactly the EMA generator's weights and draws
# what it draws. The export is contiguous: against a channels-last model, convolutions run other kernels,
# whose float sums may differ in the last bits on other CPUs or oneDNN versions, so those pictures are
# compared with a tolerance (the weights stay exact).
@pytest.mark.parametrize(("precision", "channels_last"), [("fp32", False), ("bf16", True)])
def test_exported_generator_draws_the_same_images(
    nb, make_config, faces_dir, tmp_path, precision, channels_last
):
    hardware = nb.Compute(torch.device("cpu"), precision, channels_last)
    gan, config, _ = tiny_gan(nb, make_config, faces_dir, hardware)
    weights, spec_path = nb.export_generator(gan.drawing_generator, config, tmp_path)
    reloaded, spec = nb.load_generator(weights, spec_path)
    assert not reloaded.training
    assert state_equal(reloaded.state_dict(), gan.ema.module.state_dict())  # the EMA copy, not the raw one
    assert not state_equal(reloaded.state_dict(), gan.generator.state_dict())

    noise = torch.randn(12, config.latent_dim, 1, 1, generator=torch.Generator().manual_seed(3))
    drawn = nb.draw(reloaded, noise)
    assert drawn.shape == (12, 3, config.image_size, config.image_size) and drawn.dtype == torch.uint8
    assert drawn.float().std() > 1  # real pictures, not one flat colour that any generator would match
    original = nb.draw(gan.drawing_generator, noise)
    with torch.no_grad():  # and before rounding to uint8 too
        pixels, original_pixels = reloaded(noise), gan.drawing_generator.eval()(noise)
    if channels_last:  # another memory layout: equal up to float rounding
        torch.testing.assert_close(pixels, original_pixels, rtol=0, atol=1e-5)
        differences = (drawn.int() - original.int()).abs()
        assert differences.max() <= 1 and (differences > 0).float().mean() < 0.001
    else:  # the same layout, the same kernels: bit for bit
        assert torch.equal(pixels, original_pixels) and torch.equal(drawn, original)

    assert spec == json.loads(spec_path.read_text())
    sizes = {"latent_dim": config.latent_dim, "width": config.g_width, "image_size": config.image_size}
    assert {name: spec.get(name) for name in sizes} == sizes


def test_exported_weights_load_with_safetensors_alone(nb, make_config, tmp_path):
    from safetensors.numpy import load_file

    config = make_config()
    generator = nb.build_generator(config.latent_dim, config.g_width, config.image_size)
    weights, _ = nb.export_generator(generator, config, tmp_path)
    arrays = load_file(str(weights))  # numpy only: no torch needed to read the file
    expected = generator.state_dict()
    assert arrays.keys() == expected.keys()
    for name, array in arrays.items():
        assert isinstance(array, np.ndarray)
        np.testing.assert_array_equal(array, expected[name].numpy(), err_msg=name)


# --------------------------------------------------------------------------------------------------
# EMA


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


# --------------------------------------------------------------------------------------------------
# FID / KID with the shared offline Inception weights (in-process)

# 32 real faces vs 32 other real faces, then 16 noise images vs the cached 32: 80 images through Inception.
# Measured on these faces: real vs real FID 123-131 and |KID| below 0.002, noise vs real FID 489-491 and
# KID 0.65 (with 64 and 32 images: 102-143 and 479-483); the thresholds below hold for either.
FID_REAL_COUNT, FID_NOISE_COUNT = 32, 16


def shared_faces_uint8(start, count):
    """count shared 64 px faces from position start (sorted by name), as (count, 3, 64, 64) uint8."""
    files = sorted(SHARED_FACES.iterdir())[start : start + count]
    return torch.from_numpy(
        np.stack([np.asarray(Image.open(path).convert("RGB")) for path in files])
    ).permute(0, 3, 1, 2)


@pytest.fixture(scope="module")
def fid_scores(nb, tmp_path_factory):
    """FID/KID of real faces vs other real faces, then of uniform noise vs the same real faces (cached)."""
    needs_shared(SHARED_FID_WEIGHTS)
    needs_shared(SHARED_FACES)
    cpu, weights, cache_dir = torch.device("cpu"), str(SHARED_FID_WEIGHTS), tmp_path_factory.mktemp("fid")
    real = shared_faces_uint8(0, FID_REAL_COUNT)
    other_real = shared_faces_uint8(FID_REAL_COUNT, FID_REAL_COUNT)
    noise_shape = (FID_NOISE_COUNT, *real.shape[1:])
    noise = torch.from_numpy(np.random.default_rng(0).integers(0, 256, noise_shape, dtype=np.uint8))
    real_vs_real = nb.fid_kid(other_real, real, "real_faces", cache_dir, weights, cpu)
    cached = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in (cache_dir / "fid").iterdir()}
    # Second call, same cache name: the real side is a decoy (the noise itself). If the cache were not used,
    # two identical sets would give FID 0; with it, the noise is compared with the cached real faces.
    noise_vs_real = nb.fid_kid(noise, noise, "real_faces", cache_dir, weights, cpu)
    after = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in (cache_dir / "fid").iterdir()}
    return dict(real_vs_real=real_vs_real, noise_vs_real=noise_vs_real, cached=cached, after=after)


def test_fid_separates_real_faces_from_noise(fid_scores):
    real, noise = fid_scores["real_vs_real"], fid_scores["noise_vs_real"]
    for scores in (real, noise):
        assert all(math.isfinite(scores[key]) for key in ("fid", "kid", "kid_std")), scores
    # README calibration at 500 vs 500: ~36 vs ~464; small sets bias FID upwards, not past the noise.
    assert 0 < real["fid"] < 200 and noise["fid"] > 350 and noise["fid"] > 3 * real["fid"], (real, noise)


def test_kid_of_real_vs_real_is_near_zero(fid_scores):
    real, noise = fid_scores["real_vs_real"], fid_scores["noise_vs_real"]
    assert abs(real["kid"]) < 0.01 and noise["kid"] > 0.1, (real, noise)


def test_real_statistics_are_cached_and_reused(fid_scores):
    cached = fid_scores["cached"]
    assert cached and all(path.stat().st_size > 0 for path in cached)
    assert all("real_faces" in path.name for path in cached)
    assert fid_scores["after"] == cached  # the second call read the cache and rewrote nothing
    assert fid_scores["noise_vs_real"]["fid"] > 350  # the decoy real set (= the fakes, FID 0) was not used


# --------------------------------------------------------------------------------------------------
# FID in the notebook, end to end


def test_e2e_fid_rows_of_both_generators_with_real_weights(fid_run):
    run, out = fid_run
    rows = json.loads((run / "metrics.json").read_text())["fid"]
    assert sorted((row["epoch"], row["generator"]) for row in rows) == [(1, "ema"), (1, "raw")]
    for row in rows:
        assert all(
            isinstance(row[key], float) and math.isfinite(row[key]) for key in ("fid", "kid", "kid_std")
        ), row
        assert row["fid"] > 0 and row["samples"] == 10 and row["real"] == 10, row
    assert rows[0]["fid"] != rows[1]["fid"]
    assert any((run.parent / "runs" / "cache" / "fid").iterdir())  # real statistics cached in CACHE_DIR
    assert "FID/KID skipped" not in notebook_text(out)


def fid_rows(run):
    """The FID rows of a run folder's metrics.json, by (epoch, generator)."""
    rows = json.loads((run / "metrics.json").read_text())["fid"]
    return {(row["epoch"], row["generator"]): row for row in rows}


def test_e2e_fid_every_epoch_and_at_the_end_without_shared(resume_chain):
    """The notebook's FID cells with the stand-in torch-fidelity (conftest.resume_chain, FID_EVERY 1): the
    straight 2-epoch run measures the EMA generator after epoch 1 inside train() and both generators at the
    end, 10 generated vs 10 real images each; the table, the plot and the zip follow."""
    straight = resume_chain.after["straight"]
    rows = fid_rows(straight)
    assert sorted(rows) == [(1, "ema"), (2, "ema"), (2, "raw")]
    for row in rows.values():
        assert row["samples"] == 10 and row["real"] == 10 and math.isfinite(row["fid"]) and row["fid"] > 0
    assert rows[(2, "ema")]["fid"] != rows[(2, "raw")]["fid"]  # two generators, really measured apart
    assert resume_chain.fid_calls["straight"] == [{"fakes": [10, 3, 32, 32], "real": [10, 3, 32, 32]}] * 3
    text = resume_chain.texts["straight"]
    assert "FID/KID skipped" not in text and "FID: 10 generated images against 10 real ones, every 1" in text
    assert re.search(r"\s+2\s+raw\s+\d+\.\d\d\s", text)  # the table printed in section 9
    assert (straight / "plots" / "fid.png").stat().st_size > 0
    with zipfile.ZipFile(straight / "anime_gan_results.zip") as bundle:
        assert "plots/fid.png" in bundle.namelist()
        assert json.loads(bundle.read("metrics.json")) == json.loads((straight / "metrics.json").read_text())


def test_e2e_longer_resumed_run_keeps_the_earlier_evaluation(resume_chain):
    """Extending a finished run (EPOCHS 1 -> 2 -> 3 -> 4, RESUME on) keeps the FID/KID each evaluation measured
    after its last checkpoint: save_metrics writes them into the checkpoint the next run resumes from. The
    EMA generator's epoch-1 FID, measured at the end of the 1-epoch run, equals the one the straight run
    measured inside train(): the same generator, the same images."""
    resumed, straight = fid_rows(resume_chain.after["resumed"]), fid_rows(resume_chain.after["straight"])
    assert sorted(resumed) == [(1, "ema"), (1, "raw"), (2, "ema"), (2, "raw")]
    assert all(resumed[key] == straight[key] for key in straight)
    checkpoint = resume_chain.after["resumed"] / "checkpoints" / "checkpoint.pt"
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)["metrics"]["fid"]
    assert {(row["epoch"], row["generator"]): row for row in saved} == resumed
    final = fid_rows(resume_chain.final)
    assert sorted(final) == [(epoch, name) for epoch in (1, 2, 3, 4) for name in ("ema", "raw")]


def test_fid_unavailable_is_skipped_with_a_clear_message(report_run):
    """The report run asks for FID without FID_WEIGHTS and without internet: every download goes to a closed
    local port, and torch's download cache is an empty folder, so no earlier copy of the weights helps."""
    run, text = report_run.run, report_run.text
    skipped = [line for line in text.splitlines() if "FID/KID skipped" in line]
    assert len(skipped) == 1 and "could not be downloaded" in skipped[0], text[-2000:]
    assert "set FID_WEIGHTS to a local copy" in text
    assert json.loads((run / "metrics.json").read_text())["fid"] == []
    assert not (run / "plots" / "fid.png").exists()
    assert (run / "anime_gan_results.zip").exists()  # the run went on to the end


# --------------------------------------------------------------------------------------------------
# The results zip


def test_e2e_results_zip_holds_what_a_user_keeps(e2e_run):
    run, _ = e2e_run
    with zipfile.ZipFile(run / "anime_gan_results.zip") as bundle:
        assert bundle.testzip() is None
        names = set(bundle.namelist())
        expected = {
            "metrics.json",
            "progress.gif",
            "interpolation.png",
            "generated.png",
            "generator.safetensors",
            "generator.json",
            "plots/training_curves.png",
            "plots/game_2d.png",
            *(f"samples/epoch_{e:03d}.png" for e in (1, 2, 3, 4)),
        }
        assert expected <= names, expected - names
        assert not any(
            name.startswith(("checkpoints/", "cache/")) or name.endswith(".pt") for name in names
        ), names
        assert not any(os.path.basename(name).startswith(".") for name in names), names  # no temp files
        for name in names:
            assert bundle.read(name) == (run / name).read_bytes(), name


# --------------------------------------------------------------------------------------------------
# FID errors told apart: only a failed download of the Inception weights asks for FID_WEIGHTS


def fid_settings(make_config, **overrides):
    return make_config(FID_SAMPLES=10, FID_REAL=10, **overrides)


def measure_with_failing_fid(nb, config, monkeypatch, error):
    """measure_fid of a tiny generator, where torch-fidelity's part raises error."""

    def fid_kid(*args, **kwargs):
        raise error

    monkeypatch.setattr(nb, "fid_kid", fid_kid)
    real = torch.zeros(10, 3, 32, 32, dtype=torch.uint8)
    return nb.measure_fid(nb.build_generator(16, 8, 32), real, "x", config, CPU, ".")


@pytest.mark.parametrize(
    "error",
    [
        urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
        ConnectionResetError(104, "Connection reset by peer"),
        socket.gaierror(-3, "Temporary failure in name resolution"),
    ],
    ids=["url-error", "connection-reset", "dns"],
)
def test_failed_weights_download_asks_for_fid_weights(nb, make_config, monkeypatch, capsys, error):
    scores = measure_with_failing_fid(nb, fid_settings(make_config), monkeypatch, error)
    printed = capsys.readouterr().out
    assert scores is None
    assert "Inception weights could not be downloaded" in printed and "set FID_WEIGHTS" in printed


def test_download_failure_wrapped_in_another_error_is_still_recognised(nb, make_config, monkeypatch, capsys):
    try:
        try:
            raise urllib.error.URLError("no route to host")
        except urllib.error.URLError as cause:
            raise RuntimeError("could not load the feature extractor") from cause
    except RuntimeError as wrapped:
        error = wrapped
    measure_with_failing_fid(nb, fid_settings(make_config), monkeypatch, error)
    assert "set FID_WEIGHTS" in capsys.readouterr().out


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        ValueError("Expected 4D input (got 3D input)"),
        MemoryError(),
    ],
    ids=["out-of-memory", "a-bug", "host-memory"],
)
def test_other_fid_errors_name_themselves_and_do_not_blame_the_network(
    nb, make_config, monkeypatch, capsys, error
):
    scores = measure_with_failing_fid(nb, fid_settings(make_config), monkeypatch, error)
    printed = capsys.readouterr().out
    assert scores is None
    assert f"FID/KID skipped because of an error: {type(error).__name__}" in printed
    assert str(error) in printed
    assert "FID_WEIGHTS" not in printed and "download" not in printed


def test_network_error_with_local_weights_is_not_blamed_on_a_download(
    nb, make_config, monkeypatch, capsys, tmp_path
):
    """With FID_WEIGHTS set nothing is downloaded, so a connection error there is reported as itself."""
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"x")
    config = fid_settings(make_config, FID_WEIGHTS=str(weights))
    measure_with_failing_fid(nb, config, monkeypatch, ConnectionResetError(104, "reset"))
    printed = capsys.readouterr().out
    assert "because of an error: ConnectionResetError" in printed and "set FID_WEIGHTS" not in printed


# --------------------------------------------------------------------------------------------------
# Does it copy? Nearest training images of generated faces


def test_nearest_images_finds_an_exact_copy_first_across_chunks(nb):
    generator = np.random.default_rng(0)
    images = generator.integers(0, 256, size=(50, 8, 8, 3), dtype=np.uint8)
    wanted = [3, 31, 49]  # in the first, second and last chunk of 16
    queries = torch.from_numpy(images[wanted]).permute(0, 3, 1, 2)
    distances = nb.pixel_distances(queries, images, chunk=16)
    assert distances.shape == (3, 50)
    indices, nearest = nb.nearest_images(queries, images, k=3)
    assert indices[:, 0].tolist() == wanted
    assert nearest[:, 0].tolist() == [0.0, 0.0, 0.0]
    assert (nearest[:, 1:] > 10).all() and (nearest.diff(dim=1) >= 0).all()  # random images are far apart


def test_nearest_images_of_a_data_set_smaller_than_k_returns_them_all(nb):
    """BATCH_SIZE 2 allows a 2- or 3-image data set; "Does it copy?" asks for 4 neighbours and must not crash."""
    images = np.random.default_rng(2).integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    queries = torch.from_numpy(images[[2]]).permute(0, 3, 1, 2)
    indices, distances = nb.nearest_images(queries, images, k=4)
    assert indices.shape == distances.shape == (1, 3) and indices[0, 0] == 2 and distances[0, 0] == 0


def test_pixel_distance_is_the_rms_difference_on_the_0_255_scale(nb):
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    images[1] = 10  # every channel of every pixel 10 away from the query
    query = torch.full((1, 3, 4, 4), 0, dtype=torch.uint8)
    query[0, 0, 0, 0] = 40  # one of 48 values 40 away from image 0: RMS = sqrt(1600 / 48)
    distances = nb.pixel_distances(query, images)
    assert distances[0].tolist() == pytest.approx([math.sqrt(1600 / 48), math.sqrt((47 * 100 + 900) / 48)])


def test_nearest_neighbours_figure_has_a_row_per_query_and_titles(nb):
    images = np.random.default_rng(1).integers(0, 256, size=(20, 8, 8, 3), dtype=np.uint8)
    queries = torch.from_numpy(images[:2]).permute(0, 3, 1, 2)
    indices, distances = nb.nearest_images(queries, images, k=3)
    figure = nb.neighbours_figure(queries, images, indices, distances)
    titles = [axis.get_title() for axis in figure.axes]
    assert len(figure.axes) == 2 * 4
    assert titles[0] == "generated" and titles[1] == "0.0" and titles[4] == "generated"
    np.testing.assert_array_equal(figure.axes[1].images[0].get_array(), images[indices[0, 0]])


def test_e2e_nearest_neighbours_are_shown_and_saved(e2e_run):
    run, out = e2e_run
    figure = Image.open(run / "plots" / "nearest_neighbours.png")
    assert figure.size[1] > figure.size[0] > 300  # 6 rows of 5 pictures
    text = notebook_text(out)
    found = re.search(
        r"New faces lie (\d+\.\d) .*; real faces (\d+\.\d) .*, blurred real faces (\d+\.\d)\.", text
    )
    assert found and all(0 < float(value) < 256 for value in found.groups())
    assert "no sign of copying" in text or "may be copies" in text  # a verdict, not just numbers
    with zipfile.ZipFile(run / "anime_gan_results.zip") as bundle:
        assert "plots/nearest_neighbours.png" in bundle.namelist()
