"""FID's plumbing without ../shared: torch-fidelity's part (fid_kid) is stood in for, everything around it is
the notebook's own code. generate_images across its 500-image batches, the success path of measure_fid,
record_fid, FID_EVERY inside train() and save_metrics. (The end-to-end version, through the notebook's
cells with a stand-in torch-fidelity, is in test_results.py; real Inception weights are used there too,
when ../shared is present.)"""

import json
import math

import pytest
import torch
from conftest import cpu_hardware, tiny_config, train_epochs

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
