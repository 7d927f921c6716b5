"""Section 9, Evaluate: FID and KID. The plumbing without ../shared, torch-fidelity's part (fid_kid) stood in for
and everything around it the notebook's own code: generate_images across its 500-image batches, the success
path of measure_fid, record_fid, FID_EVERY inside train(), save_metrics, the table; failures told apart
(only a failed download of the Inception weights asks for FID_WEIGHTS). End to end through the notebook's
cells: every epoch and at the end with a stand-in torch-fidelity, kept by a longer resumed run
(conftest.resume_chain), and skipped with a clear message offline without weights (conftest.report_run).
With ../shared's real faces and Inception weights: scores that separate real faces from noise, the real
statistics cached, and a 1-epoch run on real faces with both generators measured."""

import json
import math
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
    run_notebook,
    tiny_config,
    train_epochs,
)
from PIL import Image

CPU = torch.device("cpu")
SCORES = {"fid": 123.5, "kid": 0.0125, "kid_std": 0.002}


def tiny_generator(nb, seed=0):
    """A 32 px generator whose images differ visibly with the noise (DCGAN's initial weights, N(0, 0.02), draw
    one flat colour in eval mode: every image the same after rounding to uint8)."""
    torch.manual_seed(seed)
    generator = nb.build_generator(16, 8, 32)
    with torch.no_grad():
        for parameter in generator.parameters():
            parameter.normal_(0.0, 0.5)
    return generator


def test_generate_images_across_its_500_image_batches(nb):
    """1,001 images (the default FID draws 2,000): batches of 500, 500 and 1, each from fresh noise of one
    seeded stream. Catches a dropped remainder, a batch drawn twice (the stream re-seeded per batch) and
    images that are not repeatable."""
    generator = tiny_generator(nb)
    images = nb.generate_images(generator, 1001, 16, seed=5, device=CPU)
    assert images.shape == (1001, 3, 32, 32) and images.dtype == torch.uint8
    assert len({image.numpy().tobytes() for image in images}) == 1001  # no image drawn twice
    assert torch.equal(images[:500], nb.generate_images(generator, 500, 16, seed=5, device=CPU))
    assert torch.equal(images, nb.generate_images(generator, 1001, 16, seed=5, device=CPU))
    assert not torch.equal(images[:10], nb.generate_images(generator, 10, 16, seed=6, device=CPU))
    assert generator.training  # draw() puts the generator back in training mode


@pytest.fixture
def stand_in_fid(nb, monkeypatch):
    """nb.fid_kid replaced: records its arguments and returns SCORES."""
    calls = []

    def fid_kid(fake_images, real_images, real_cache_name, cache_dir, weights_path, device):
        calls.append(dict(fakes=fake_images, real=real_images, name=real_cache_name, weights=weights_path))
        return dict(SCORES)

    monkeypatch.setattr(nb, "fid_kid", fid_kid)
    return calls


def test_measure_fid_success_path(nb, make_config, stand_in_fid, capsys, tmp_path):
    """FID_SAMPLES 1001: the generated images (seed SEED + 1, across three batches) and the real ones reach
    torch-fidelity's part; the scores come back with the counts; nothing says "skipped"."""
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"weights")
    config = make_config(FID_SAMPLES=1001, FID_REAL=10, FID_WEIGHTS=str(weights), SEED=3)
    real = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    generator = tiny_generator(nb)
    scores = nb.measure_fid(generator, real, "real_abc", config, CPU, tmp_path)
    assert scores == {"samples": 1001, "real": 10, **SCORES}
    [call] = stand_in_fid
    assert torch.equal(call["fakes"], nb.generate_images(generator, 1001, config.latent_dim, 4, CPU))
    assert call["real"] is real and call["name"] == "real_abc" and call["weights"] == str(weights)
    assert "skipped" not in capsys.readouterr().out


def test_record_fid_replaces_the_row_of_the_same_epoch_and_generator(nb):
    """Measuring epoch 4's EMA generator again (a resumed evaluation) replaces its row; other epochs and the
    raw generator's row of the same epoch stay. Catches rows appended twice."""
    metrics = {"fid": []}
    nb.record_fid(metrics, 4, "ema", {"fid": 10.0})
    nb.record_fid(metrics, 4, "raw", {"fid": 11.0})
    nb.record_fid(metrics, 2, "ema", {"fid": 20.0})
    nb.record_fid(metrics, 4, "ema", {"fid": 9.0})
    rows = sorted((row["epoch"], row["generator"], row["fid"]) for row in metrics["fid"])
    assert rows == [(2, "ema", 20.0), (4, "ema", 9.0), (4, "raw", 11.0)]


@pytest.mark.parametrize(("ema_decay", "generator_name"), [(0.999, "ema"), (0, "raw")])
def test_fid_every_inside_train(nb, default_parameters, tiny_images, tmp_path, ema_decay, generator_name):
    """EPOCHS 5, FID_EVERY 2: train() measures after epochs 2 and 4, not after 5 (the evaluation in section 9
    measures the last), with the generator that draws the samples, and saves each row in metrics.json and
    the checkpoint of its epoch. A probe that fails (None) adds no row. Catches a probe called every epoch,
    at the last one, or with the raw generator while the EMA one draws."""
    config = tiny_config(nb, default_parameters, tmp_path / "run", EPOCHS=5, FID_EVERY=2, EMA_DECAY=ema_decay)
    hardware = cpu_hardware(nb)
    paths = nb.make_run_folder(config.run_dir)
    gan = nb.build_gan(config, hardware)
    _, metrics, fixed_noise = nb.start_or_resume(gan, paths, config, nb.choose_compute(CPU, "fp32"))
    probed, saved_rows = [], []
    real_save_checkpoint = nb.save_checkpoint

    def probe(generator):
        probed.append((len(metrics["epochs"]), generator is gan.drawing_generator))
        return None if len(probed) == 2 else {"samples": 10, "real": 10, **SCORES}  # the second one fails

    def recording_save_checkpoint(path, gan_, epoch, metrics_, *args):
        saved_rows.append((epoch, [(row["epoch"], row["generator"]) for row in metrics_["fid"]]))
        real_save_checkpoint(path, gan_, epoch, metrics_, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nb, "save_checkpoint", recording_save_checkpoint)
        train_epochs(nb, gan, tiny_images, metrics, fixed_noise, config, hardware, paths, fid_probe=probe)
    assert probed == [(2, True), (4, True)]
    assert [(row["epoch"], row["generator"]) for row in metrics["fid"]] == [(2, generator_name)]
    assert saved_rows[2:4] == [(2, [(2, generator_name)]), (3, [(2, generator_name)])]  # epoch 0 is first
    assert json.loads(paths.metrics.read_text())["fid"] == metrics["fid"]
    assert nb.read_checkpoint(paths.checkpoint)["metrics"]["fid"] == metrics["fid"]


def test_save_metrics_writes_the_json_and_the_checkpoint(nb, default_parameters, tiny_images, tmp_path):
    """The evaluation's rows arrive after the last checkpoint: save_metrics puts them in metrics.json and in
    the checkpoint (everything else in it unchanged), so a longer run resumed from it keeps them. Without a
    checkpoint it writes metrics.json only."""
    config = tiny_config(nb, default_parameters, tmp_path / "run", EPOCHS=1)
    hardware = cpu_hardware(nb)
    paths = nb.make_run_folder(config.run_dir)
    gan = nb.build_gan(config, hardware)
    _, metrics, fixed_noise = nb.start_or_resume(gan, paths, config, nb.choose_compute(CPU, "fp32"))
    train_epochs(nb, gan, tiny_images, metrics, fixed_noise, config, hardware, paths)
    before = nb.read_checkpoint(paths.checkpoint)
    nb.record_fid(metrics, 1, "ema", {"samples": 10, "real": 10, **SCORES})
    nb.save_metrics(paths, metrics)
    after = nb.read_checkpoint(paths.checkpoint)
    assert json.loads(paths.metrics.read_text())["fid"] == after["metrics"]["fid"] == metrics["fid"]
    assert after["metrics"]["fid"][0]["fid"] == SCORES["fid"] and before["metrics"]["fid"] == []
    assert after["epoch"] == before["epoch"] == 1
    for name in ("generator", "discriminator", "ema"):
        assert all(torch.equal(after[name][key], before[name][key]) for key in before[name]), name

    other = nb.run_paths(tmp_path / "no_checkpoint")
    other.root.mkdir()
    nb.save_metrics(other, {"fid": [], "epochs": []})
    assert json.loads(other.metrics.read_text()) == {"fid": [], "epochs": []}
    assert not other.checkpoint.exists()


def test_fid_rows_print_as_a_table(nb):
    rows = [{"epoch": 2, "generator": "ema", "samples": 10, "real": 10, **SCORES}]
    header, line = nb.fid_table(rows).splitlines()
    assert header.split() == ["epoch", "generator", "FID", "KID", "±", "std", "fake", "real"]
    assert line.split() == ["2", "ema", "123.50", "0.0125", "0.0020", "10", "10"]
    assert math.isclose(float(line.split()[2]), SCORES["fid"])


# ---------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------
# FID in the notebook, end to end


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


# ---------------------------------------------------------------------------------------------------------
# With ../shared: a run on real faces, evaluated with the real torch-fidelity and Inception weights


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


# ---------------------------------------------------------------------------------------------------------
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
