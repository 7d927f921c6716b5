"""Reliability: exact resume, interruption, atomic writes, the NaN guard, safe checkpoint loading, secrets,
the download path, and a matrix of bad inputs (images, folders and parameters).

Everything runs on the CPU with 32 px images and networks 8 channels wide; two tests start papermill (about 6 s
each), one reads the shared report run (conftest.report_run)."""

import copy
import io
import json
import os
import shutil
import signal
import sys
import types
import zipfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    FAKE_KEY,
    FAKE_USER,
    assert_identical,
    cpu_hardware,
    notebook_text,
    run_notebook,
    tiny_config,
    train_epochs,
    train_run,
    write_faces,
)
from PIL import Image

CPU = torch.device("cpu")
PRECISIONS = ("fp32", "bf16")  # the CPU precisions (conftest.cpu_hardware pairs bf16 with channels-last)
STEPS_PER_EPOCH = 4  # 64 images, BATCH_SIZE 16


# ---------------------------------------------------------------------------------------------------------
# Helpers


def training_state(gan):
    """Everything training changes, as (deep-copied) state dicts."""
    return copy.deepcopy(
        {
            "generator": gan.generator.state_dict(),
            "discriminator": gan.discriminator.state_dict(),
            "opt_g": gan.opt_g.state_dict(),
            "opt_d": gan.opt_d.state_dict(),
            "ema": gan.ema.state_dict(),
            "scaler": gan.scaler.state_dict(),
        }
    )


def loss_fields(metrics):
    """The metrics without their wall-time fields (which differ from run to run)."""
    epochs = [
        {k: v for k, v in row.items() if k not in ("seconds", "images_per_second")}
        for row in metrics["epochs"]
    ]
    return {"epochs": epochs, "steps": metrics["steps"], "fid": metrics["fid"]}


def files_below(folder):
    """Every file below folder, hidden ones included, relative and sorted."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


@contextmanager
def deadline(seconds):
    """Turn a hang into a test failure: raise TimeoutError in the main thread after `seconds`."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def leftover_temp_files(folder):
    return [p for p in Path(folder).rglob("*") if p.name.startswith(".tmp.")]


def prepare(nb, folder, tmp_path, image_size=32, max_images=0):
    """nb.prepare_dataset with a cache folder inside tmp_path."""
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    return nb.prepare_dataset(Path(folder), image_size, max_images, 0, cache)


def solid(path, color, size=(40, 40), mode="RGB", **save_options):
    """Save a one-colour image and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, **save_options)
    return path


# ---------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module", params=list(PRECISIONS))
def straight_run(request, nb, default_parameters, tiny_images, tmp_path_factory):
    """Two epochs in one go, the reference every resumed run must match bit for bit."""
    precision = request.param
    config = tiny_config(
        nb, default_parameters, tmp_path_factory.mktemp("straight") / "run", PRECISION=precision
    )
    assert config.epochs == 2
    gan, metrics, paths = train_run(nb, config, cpu_hardware(nb, precision), tiny_images)
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    assert metrics["epochs"][0]["steps"] == STEPS_PER_EPOCH
    return types.SimpleNamespace(
        precision=precision, state=training_state(gan), metrics=copy.deepcopy(metrics), paths=paths
    )


@pytest.fixture
def saved_run(nb, make_config):
    """A run folder (RUN_DIR of make_config) holding an epoch-1 checkpoint and metrics.json, without training."""
    config = make_config()
    hardware = cpu_hardware(nb)
    paths = nb.make_run_folder(config.run_dir)
    torch.manual_seed(0)
    gan = nb.build_gan(config, hardware)
    _, metrics, fixed_noise = nb.start_or_resume(gan, paths, config, nb.choose_compute(CPU, "fp32"))
    losses = {"loss_d": 1.25, "loss_g": 0.75, "d_real": 0.5, "d_fake": 0.25}
    metrics["epochs"].append({"epoch": 1, **losses, "steps": 1, "seconds": 1.0, "images_per_second": 16.0})
    nb.write_json(paths.metrics, metrics)
    nb.save_checkpoint(paths.checkpoint, gan, 1, metrics, fixed_noise, config, cpu_hardware(nb))
    return types.SimpleNamespace(
        config=config, gan=gan, paths=paths, metrics=metrics, fixed_noise=fixed_noise
    )


# ---------------------------------------------------------------------------------------------------------
# Exact resume and interruption


def test_resume_from_checkpoint_is_bit_identical_to_a_straight_run(
    nb, default_parameters, tiny_images, straight_run, tmp_path
):
    """1 epoch, then a fresh Gan (other random weights) resumed from the checkpoint to epoch 2 == 2 epochs straight."""
    precision = straight_run.precision
    hardware = cpu_hardware(nb, precision)
    config = tiny_config(nb, default_parameters, tmp_path / "run", PRECISION=precision, EPOCHS=1)
    first_gan, _, paths = train_run(nb, config, hardware, tiny_images)
    assert nb.read_checkpoint(paths.checkpoint)["epoch"] == 1
    # Sanity: after one epoch the weights differ from the final ones, so the comparison below means something.
    assert not torch.equal(first_gan.generator[0].weight, straight_run.state["generator"]["0.weight"])

    gan, metrics, _ = train_run(nb, replace(config, epochs=2), hardware, tiny_images, init_seed=12345)

    assert_identical(training_state(gan), straight_run.state)
    assert loss_fields(metrics) == loss_fields(straight_run.metrics)
    assert loss_fields(json.loads(paths.metrics.read_text())) == loss_fields(straight_run.metrics)
    assert_identical(
        nb.read_checkpoint(paths.checkpoint)["generator"], straight_run.state["generator"], "checkpoint"
    )
    sample = "samples/epoch_002.png"
    assert (paths.root / sample).read_bytes() == (straight_run.paths.root / sample).read_bytes()


def test_keyboard_interrupt_mid_epoch_keeps_last_checkpoint_and_resume_matches(
    nb, default_parameters, tiny_images, straight_run, tmp_path, monkeypatch
):
    """Stop (KeyboardInterrupt) in the middle of epoch 2: epoch 1's checkpoint survives, and resuming finishes
    with exactly the straight run's state."""
    precision = straight_run.precision
    hardware = cpu_hardware(nb, precision)
    config = tiny_config(nb, default_parameters, tmp_path / "run", PRECISION=precision)
    real_step, calls = nb.train_step, []

    def interrupted_step(*args):
        calls.append(1)
        if len(calls) == STEPS_PER_EPOCH + 3:  # the third step of epoch 2
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(nb, "train_step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        train_run(nb, config, hardware, tiny_images)
    monkeypatch.setattr(nb, "train_step", real_step)

    paths = nb.run_paths(config.run_dir)
    state = nb.read_checkpoint(paths.checkpoint)
    assert state["epoch"] == 1
    assert [row["epoch"] for row in state["metrics"]["epochs"]] == [1]
    assert [row["epoch"] for row in json.loads(paths.metrics.read_text())["epochs"]] == [1]
    assert files_below(paths.samples) == ["epoch_001.png"]
    assert leftover_temp_files(paths.root) == []

    gan, metrics, _ = train_run(nb, config, hardware, tiny_images, init_seed=999)
    assert_identical(training_state(gan), straight_run.state)
    assert loss_fields(metrics) == loss_fields(straight_run.metrics)


# ---------------------------------------------------------------------------------------------------------
# Atomic writes


def dying_atomic_write(real_atomic_write, failure):
    """An atomic_write whose write callback writes its file, cuts it in half, then dies with `failure`."""

    def atomic_write(path, write):
        def half_then_die(tmp):
            write(tmp)
            data = Path(tmp).read_bytes()
            Path(tmp).write_bytes(data[: len(data) // 2])
            raise failure

        real_atomic_write(path, half_then_die)

    return atomic_write


FAILURES = [OSError(28, "No space left on device"), KeyboardInterrupt()]


@pytest.mark.parametrize("failure", FAILURES, ids=["disk-full", "interrupt"])
def test_checkpoint_write_killed_halfway_keeps_previous_checkpoint(nb, saved_run, monkeypatch, failure):
    """torch.save dies after writing half the file: the epoch-1 checkpoint is untouched and no temp file remains."""
    paths = saved_run.paths
    before = paths.checkpoint.read_bytes()
    real_save, targets = torch.save, []

    def half_save(obj, target, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        Path(target).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        targets.append(Path(target))
        raise failure

    monkeypatch.setattr(nb.torch, "save", half_save)  # nb.torch is torch itself; monkeypatch puts it back
    with pytest.raises(type(failure)):
        nb.save_checkpoint(
            paths.checkpoint,
            saved_run.gan,
            2,
            saved_run.metrics,
            saved_run.fixed_noise,
            saved_run.config,
            cpu_hardware(nb),
        )
    monkeypatch.undo()

    assert targets and targets[0] != paths.checkpoint  # the half file went to a temporary name
    assert paths.checkpoint.read_bytes() == before
    assert nb.read_checkpoint(paths.checkpoint)["epoch"] == 1
    assert files_below(paths.checkpoint.parent) == ["checkpoint.pt"]


@pytest.mark.parametrize("failure", FAILURES, ids=["disk-full", "interrupt"])
def test_checkpoint_write_callback_killed_halfway_keeps_previous_checkpoint(
    nb, saved_run, monkeypatch, failure
):
    paths = saved_run.paths
    before = paths.checkpoint.read_bytes()
    monkeypatch.setattr(nb, "atomic_write", dying_atomic_write(nb.atomic_write, failure))
    with pytest.raises(type(failure)):
        nb.save_checkpoint(
            paths.checkpoint,
            saved_run.gan,
            2,
            saved_run.metrics,
            saved_run.fixed_noise,
            saved_run.config,
            cpu_hardware(nb),
        )
    assert paths.checkpoint.read_bytes() == before
    assert nb.read_checkpoint(paths.checkpoint)["epoch"] == 1
    assert files_below(paths.checkpoint.parent) == ["checkpoint.pt"]


@pytest.mark.parametrize("failure", FAILURES, ids=["disk-full", "interrupt"])
def test_metrics_write_killed_halfway_keeps_previous_metrics(nb, saved_run, monkeypatch, failure):
    paths = saved_run.paths
    before = paths.metrics.read_bytes()
    files_before = files_below(paths.root)
    newer = copy.deepcopy(saved_run.metrics)
    newer["epochs"].append({**newer["epochs"][0], "epoch": 2})
    monkeypatch.setattr(nb, "atomic_write", dying_atomic_write(nb.atomic_write, failure))
    with pytest.raises(type(failure)):
        nb.write_json(paths.metrics, newer)
    assert paths.metrics.read_bytes() == before
    assert [row["epoch"] for row in json.loads(paths.metrics.read_text())["epochs"]] == [1]
    assert files_below(paths.root) == files_before  # no temp file left behind


def test_atomic_write_replaces_the_file_in_one_step(nb, tmp_path):
    """The happy path of the same helper: the new content arrives whole and the temp file is gone."""
    target = tmp_path / "metrics.json"
    target.write_text("old")
    nb.write_json(target, {"epochs": [1, 2]})
    assert json.loads(target.read_text()) == {"epochs": [1, 2]}
    assert files_below(tmp_path) == ["metrics.json"]


# ---------------------------------------------------------------------------------------------------------
# The NaN guard


def test_nan_loss_stops_training_with_advice_and_keeps_epoch_1(
    nb, default_parameters, tiny_images, tmp_path, monkeypatch
):
    """Losses turn NaN in epoch 2: NonFiniteLossError suggests a lower LR and fp32; nothing of epoch 2 is saved."""
    config = tiny_config(nb, default_parameters, tmp_path / "run", EPOCHS=3)
    real_step, calls, checkpoints = nb.train_step, [], []

    def diverging_step(*args):
        calls.append(1)
        scores = real_step(*args)
        return scores if len(calls) <= STEPS_PER_EPOCH else scores * float("nan")

    real_save_checkpoint = nb.save_checkpoint

    def recording_save_checkpoint(path, *args):
        real_save_checkpoint(path, *args)
        checkpoints.append(Path(path).read_bytes())

    monkeypatch.setattr(nb, "train_step", diverging_step)
    monkeypatch.setattr(nb, "save_checkpoint", recording_save_checkpoint)
    with pytest.raises(nb.NonFiniteLossError) as raised:
        train_run(nb, config, cpu_hardware(nb), tiny_images)

    message = str(raised.value)
    assert "epoch 2" in message
    assert "Lower LR" in message
    assert "PRECISION = 'fp32'" in message
    paths = nb.run_paths(config.run_dir)
    assert len(checkpoints) == 2  # the starting point (epoch 0) and epoch 1, nothing of epoch 2
    assert paths.checkpoint.read_bytes() == checkpoints[-1]  # epoch 1's, untouched
    assert nb.read_checkpoint(paths.checkpoint)["epoch"] == 1
    assert files_below(paths.samples) == ["epoch_001.png"]
    assert not (paths.samples / "epoch_002.png").exists()
    assert [row["epoch"] for row in json.loads(paths.metrics.read_text())["epochs"]] == [1]


def test_nan_pixels_from_the_generator_are_refused(nb, tmp_path):
    """The second guard: a generator with NaN weights must not produce a sample grid."""
    generator = nb.build_generator(16, 8, 32)
    with torch.no_grad():
        generator[0].weight.fill_(float("nan"))
    with pytest.raises(nb.NonFiniteLossError, match="PRECISION = 'fp32'"):
        nb.draw(generator, torch.randn(4, 16, 1, 1))


# ---------------------------------------------------------------------------------------------------------
# Safe checkpoint loading


class NotOurs:
    """A custom class: a checkpoint holding one must be refused by weights_only loading."""

    __module__ = "reliability_custom_classes"  # pickle needs an importable home: see the test below

    def __init__(self):
        self.value = 42


class RunsCode:
    """Unpickling this object calls Path.touch(marker): proof that code ran while loading."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


CORRUPT = "cannot be read as a checkpoint"
FOREIGN = "is not an anime_gan checkpoint"


def write_random_bytes(path, real):
    path.write_bytes(np.random.default_rng(0).bytes(4096))


def write_empty_file(path, real):
    path.write_bytes(b"")


def write_half_checkpoint(path, real):
    data = real.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_checkpoint_without_its_end(path, real):
    path.write_bytes(real.read_bytes()[:-10])


def write_custom_class(path, real):
    torch.save({"format": "anime_gan-checkpoint-1", "epoch": 1, "payload": NotOurs()}, path)


def write_foreign_dict(path, real):
    torch.save({"a": torch.zeros(3)}, path)


def write_foreign_list(path, real):
    torch.save([torch.zeros(3), 1, "x"], path)


@pytest.mark.parametrize(
    ("make_file", "message"),
    [
        pytest.param(write_random_bytes, CORRUPT, id="random_bytes"),
        pytest.param(write_empty_file, CORRUPT, id="empty_file"),
        pytest.param(write_half_checkpoint, CORRUPT, id="half_checkpoint"),
        pytest.param(write_checkpoint_without_its_end, CORRUPT, id="checkpoint_without_its_end"),
        pytest.param(write_custom_class, CORRUPT, id="custom_class"),
        pytest.param(write_foreign_dict, FOREIGN, id="foreign_dict"),
        pytest.param(write_foreign_list, FOREIGN, id="foreign_list"),
    ],
)
def test_bad_checkpoint_files_raise_checkpoint_error(
    nb, saved_run, tmp_path, monkeypatch, make_file, message
):
    # NotOurs gets an importable home, as it would have in the program that wrote such a file: then only
    # weights_only loading, not a failed import, stands between the file and its custom class.
    home = types.ModuleType(NotOurs.__module__)
    home.NotOurs = NotOurs
    monkeypatch.setitem(sys.modules, home.__name__, home)
    path = tmp_path / "checkpoint.pt"
    make_file(path, saved_run.paths.checkpoint)
    with pytest.raises(nb.CheckpointError) as raised:  # any other exception type fails this test
        nb.read_checkpoint(path)
    text = str(raised.value)
    assert message in text
    assert str(path) in text and "RUN_DIR" in text  # names the file and says what to do


def test_checkpoint_that_would_run_code_is_refused_without_running_it(nb, tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "anime_gan-checkpoint-1", "epoch": 1, "payload": RunsCode(marker)}, path)
    with pytest.raises(nb.CheckpointError, match=CORRUPT):
        nb.read_checkpoint(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # proof the payload is live: unsafe loading does run it
    assert marker.exists()


def test_missing_checkpoint_file_raises_checkpoint_error(nb, tmp_path):
    with pytest.raises(nb.CheckpointError, match=CORRUPT):
        nb.read_checkpoint(tmp_path / "nothing_here.pt")


def drop_config(state):
    return {key: value for key, value in state.items() if key != "config"}


def foreign_generator(state):
    return {**state, "generator": {"some.other.weight": torch.zeros(2)}}


@pytest.mark.parametrize("damage", [drop_config, foreign_generator])
def test_tagged_but_broken_checkpoint_raises_checkpoint_error_on_resume(nb, saved_run, damage):
    """A file with our format tag but missing or alien contents (e.g. another notebook version) must still end in
    a CheckpointError, not a KeyError or a load_state_dict RuntimeError."""
    paths = saved_run.paths
    state = torch.load(paths.checkpoint, weights_only=True)
    torch.save(damage(state), paths.checkpoint)
    torch.manual_seed(1)
    gan = nb.build_gan(saved_run.config, cpu_hardware(nb))
    with pytest.raises(nb.CheckpointError):
        nb.start_or_resume(gan, paths, saved_run.config, nb.choose_compute(CPU, "fp32"))


# ---------------------------------------------------------------------------------------------------------
# Shape mismatch and RESUME = False


@pytest.mark.parametrize(
    ("name", "new_value"), [("IMAGE_SIZE", 64), ("LATENT_DIM", 32), ("G_WIDTH", 16), ("D_WIDTH", 16)]
)
def test_resume_with_different_network_shape_names_the_parameter(nb, saved_run, make_config, name, new_value):
    before = saved_run.paths.checkpoint.read_bytes()
    old_value = getattr(saved_run.config, name.lower())
    config = make_config(**{name: new_value})
    assert config.run_dir == saved_run.config.run_dir
    gan = nb.build_gan(config, cpu_hardware(nb))
    with pytest.raises(nb.CheckpointError) as raised:
        nb.start_or_resume(gan, nb.make_run_folder(config.run_dir), config, nb.choose_compute(CPU, "fp32"))
    text = str(raised.value)
    assert f"{name} = {old_value}" in text and f"{name} is now {new_value}" in text
    assert saved_run.paths.checkpoint.read_bytes() == before


def test_resume_on_images_from_elsewhere_is_refused(nb, saved_run, make_config, tmp_path):
    """A run trained on the Kaggle faces must not go on training (or be re-evaluated) on a user's own
    DATA_DIR just because RUN_DIR was left at its default: stop, change nothing, say what to do."""
    before = saved_run.paths.checkpoint.read_bytes(), saved_run.paths.metrics.read_bytes()
    (tmp_path / "my_photos").mkdir()
    config = make_config(DATA_DIR=str(tmp_path / "my_photos"))
    gan = nb.build_gan(config, cpu_hardware(nb))
    with pytest.raises(nb.CheckpointError) as raised:
        nb.start_or_resume(gan, nb.make_run_folder(config.run_dir), config, nb.choose_compute(CPU, "fp32"))
    text = str(raised.value)
    assert "the Kaggle data set 'splcher/animefacedataset'" in text and "my_photos" in text
    assert "Nothing was changed" in text and "new RUN_DIR" in text
    assert (saved_run.paths.checkpoint.read_bytes(), saved_run.paths.metrics.read_bytes()) == before


def test_same_data_folder_spelled_another_way_still_resumes(nb, make_config, tmp_path, monkeypatch):
    (tmp_path / "faces").mkdir()
    monkeypatch.chdir(tmp_path)
    saved = {
        "config": {"data_dir": str(tmp_path / "faces"), "dataset": "splcher/animefacedataset"},
        "metrics": {},
    }
    nb.check_same_data(saved, make_config(DATA_DIR="faces"), None)  # relative now, absolute then: one folder
    nb.check_same_data(saved, make_config(DATA_DIR="faces/", DATASET="someone/else"), None)  # DATASET unused
    kaggle = {"config": {"data_dir": "", "dataset": "splcher/animefacedataset"}, "metrics": {}}
    with pytest.raises(nb.CheckpointError, match="'someone/else'"):
        nb.check_same_data(kaggle, make_config(DATASET="someone/else"), None)


def test_the_same_images_moved_elsewhere_resume_and_changed_ones_in_place_get_a_note(
    nb, make_config, tmp_path, capsys
):
    """From a laptop's folder to Colab's Drive: another path, but the same images (the same cache key)."""
    (tmp_path / "laptop").mkdir(), (tmp_path / "drive").mkdir()
    saved = {"config": {"data_dir": str(tmp_path / "laptop"), "dataset": ""}, "metrics": {"data_key": "k1"}}
    nb.check_same_data(saved, make_config(DATA_DIR=str(tmp_path / "drive")), "k1")
    assert capsys.readouterr().out == ""
    with pytest.raises(nb.CheckpointError, match="laptop"):
        nb.check_same_data(saved, make_config(DATA_DIR=str(tmp_path / "drive")), "k2")
    nb.check_same_data(saved, make_config(DATA_DIR=str(tmp_path / "laptop")), "k2")  # images added in place
    assert "changed since the checkpoint" in capsys.readouterr().out


def test_a_fresh_run_records_its_images_key(nb, make_config):
    config = make_config()
    paths = nb.make_run_folder(config.run_dir)
    compute = cpu_hardware(nb)
    _, metrics, _ = nb.start_or_resume(nb.build_gan(config, compute), paths, config, compute, "key123")
    assert metrics["data_key"] == "key123"


def test_resume_false_with_existing_run_overwrites_nothing(nb, saved_run, make_config):
    paths = saved_run.paths
    checkpoint, metrics = paths.checkpoint.read_bytes(), paths.metrics.read_bytes()
    config = make_config(RESUME=False)
    gan = nb.build_gan(config, cpu_hardware(nb))
    with pytest.raises(nb.ConfigError) as raised:
        nb.start_or_resume(gan, nb.make_run_folder(config.run_dir), config, nb.choose_compute(CPU, "fp32"))
    text = str(raised.value)
    assert "Nothing was overwritten" in text and "RESUME = True" in text
    assert paths.checkpoint.read_bytes() == checkpoint and paths.metrics.read_bytes() == metrics


def test_resume_false_refuses_a_run_without_checkpoint_too(nb, make_config):
    """Samples from an earlier run (its checkpoint deleted) are not silently overwritten either."""
    config = make_config(RESUME=False)
    paths = nb.make_run_folder(config.run_dir)
    (paths.samples / "epoch_001.png").write_bytes(b"earlier")
    with pytest.raises(nb.ConfigError, match="Nothing was overwritten"):
        nb.start_or_resume(nb.build_gan(config, cpu_hardware(nb)), paths, config, CPU)
    assert (paths.samples / "epoch_001.png").read_bytes() == b"earlier"


# ---------------------------------------------------------------------------------------------------------
# Secrets


def test_kaggle_credentials_never_reach_outputs(report_run):
    """The download path, end to end (conftest.report_run): DATA_DIR is empty, so the notebook asks kagglehub
    (a stand-in on the kernel's path) for the data set while KAGGLE_USERNAME / KAGGLE_KEY are set. No file
    the run writes (the executed notebook, metrics, checkpoint, cache, the results zip and its members)
    contains them."""
    folder, images = report_run.folder, report_run.images
    assert (folder / "download.log").read_text() == "splcher/animefacedataset"  # the download path ran
    assert f"from {images}" in report_run.text
    run = report_run.run
    assert (run / "anime_gan_results.zip").exists() and (run / "checkpoints" / "checkpoint.pt").exists()
    searched = [p for p in folder.rglob("*") if p.is_file() and images not in p.parents]
    searched = [p for p in searched if "fake_packages" not in p.parts]
    assert len(searched) > 10 and any(p.suffix == ".npy" for p in searched)  # the cache is searched too
    for path in searched:
        blobs = [path.read_bytes()]
        if zipfile.is_zipfile(path):  # the results zip is deflated: look inside its members too
            with zipfile.ZipFile(path) as archive:
                blobs += [archive.read(name) for name in archive.namelist()]
        for blob in blobs:
            for secret in (FAKE_USER, FAKE_KEY):
                assert secret.encode() not in blob, f"{secret} found in {path}"


# ---------------------------------------------------------------------------------------------------------
# The download path (kagglehub is monkeypatched: the network is never touched)


def test_download_failure_says_to_set_data_dir(nb, monkeypatch):
    import kagglehub

    def offline(handle, *args, **kwargs):
        raise ConnectionError(f"401 Unauthorized for {FAKE_USER}:{FAKE_KEY}")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    with pytest.raises(nb.DataError) as raised:
        nb.locate_image_folder("", "splcher/animefacedataset")
    text = str(raised.value)
    assert "DATA_DIR" in text and "splcher/animefacedataset" in text
    assert FAKE_KEY not in text  # the library's own message, which may hold credentials, is not echoed


def test_downloaded_folder_is_used(nb, monkeypatch, tmp_path):
    import kagglehub

    folder = tmp_path / "kaggle" / "images"
    write_faces(folder, 4)
    requested = []

    def fake_download(handle, *args, **kwargs):
        requested.append(handle)
        return str(folder)

    monkeypatch.setattr(kagglehub, "dataset_download", fake_download)
    located = nb.locate_image_folder("", "splcher/animefacedataset")
    assert requested == ["splcher/animefacedataset"]
    assert Path(located) == folder
    assert len(prepare(nb, located, tmp_path).images) == 4


def test_data_dir_skips_the_download(nb, monkeypatch, tmp_path):
    import kagglehub

    def must_not_download(*args, **kwargs):
        raise AssertionError("kagglehub was called although DATA_DIR is set")

    monkeypatch.setattr(kagglehub, "dataset_download", must_not_download)
    assert nb.locate_image_folder(str(tmp_path), "splcher/animefacedataset") == tmp_path


# ---------------------------------------------------------------------------------------------------------
# Bad inputs: folders and files


def test_empty_folder_is_a_data_error(nb, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(nb.DataError, match="No image files"):
        prepare(nb, tmp_path / "empty", tmp_path)


def test_folder_without_image_files_is_a_data_error(nb, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    (folder / "table.csv").write_text("a,b\n1,2\n")
    (folder / "archive.gif").write_bytes(b"GIF89a")  # not one of the extensions used
    with pytest.raises(nb.DataError, match="No image files .* DATA_DIR"):
        prepare(nb, folder, tmp_path)


def test_folder_of_unreadable_images_is_a_data_error(nb, tmp_path):
    folder = tmp_path / "fake_images"
    folder.mkdir()
    for name in ("a.jpg", "b.png", "c.webp"):
        (folder / name).write_text("not an image at all")
    with pytest.raises(nb.DataError) as raised:
        prepare(nb, folder, tmp_path)
    assert "None of the 3 image files" in str(raised.value)


def test_zero_byte_and_truncated_jpegs_are_skipped_with_reasons(nb, tmp_path):
    folder = tmp_path / "images"
    write_faces(folder, 4, fmt="jpg")
    (folder / "zero.jpg").write_bytes(b"")
    good = (folder / "face_0000.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    data = prepare(nb, folder, tmp_path)
    assert data.found == 6 and len(data.images) == 4
    reasons = {Path(path).name: reason for path, reason in data.skipped}
    assert set(reasons) == {"zero.jpg", "truncated.jpg"}
    assert all(reason.strip() for reason in reasons.values())


def pixel(data, index=0, y=16, x=16):
    return data.images[index, y, x].astype(int)


def test_png_with_alpha_is_flattened_onto_white(nb, tmp_path):
    rgba = np.zeros((60, 60, 4), np.uint8)
    rgba[:, :20] = (255, 0, 0, 255)  # opaque red
    rgba[:, 20:40] = (0, 0, 0, 128)  # half-transparent black: grey on white
    rgba[:, 40:] = (0, 0, 255, 0)  # fully transparent (blue underneath must not show)
    (tmp_path / "images").mkdir()
    Image.fromarray(rgba, "RGBA").save(tmp_path / "images" / "alpha.png")
    data = prepare(nb, tmp_path / "images", tmp_path)
    assert np.abs(pixel(data, x=4) - (255, 0, 0)).max() <= 3
    assert np.abs(pixel(data, x=16) - (127, 127, 127)).max() <= 3
    assert np.abs(pixel(data, x=28) - (255, 255, 255)).max() <= 3


@pytest.mark.parametrize("transparent", [False, True], ids=["opaque", "with-transparency"])
def test_palette_png(nb, tmp_path, transparent):
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[:, :20], rgb[:, 20:] = (200, 30, 30), (30, 200, 30)
    image = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    folder = tmp_path / "images"
    folder.mkdir()
    options = {"transparency": image.getpixel((30, 5))} if transparent else {}
    image.save(folder / "palette.png", **options)
    assert Image.open(folder / "palette.png").mode == "P"
    data = prepare(nb, folder, tmp_path)
    assert np.abs(pixel(data, x=5) - (200, 30, 30)).max() <= 3
    assert np.abs(pixel(data, x=27) - ((255, 255, 255) if transparent else (30, 200, 30))).max() <= 3


def gray16(path, values):
    Image.fromarray(np.asarray(values, dtype=np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I;16")  # really a 16-bit file
    return path


def test_16_bit_grayscale_png_is_scaled_not_clipped(nb, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    gray16(folder / "mid_gray.png", np.full((40, 40), 32768))
    gray16(folder / "ramp.png", np.tile(np.linspace(0, 65535, 40), (40, 1)))
    data = prepare(nb, folder, tmp_path)
    assert data.skipped == [] and len(data.images) == 2
    mid, ramp = data.images  # in file-name order
    assert np.abs(mid.astype(int) - 128).max() <= 1  # mid-gray stays mid-gray (clipping would give 255)
    assert ramp.min() <= 10 and ramp.max() >= 245 and len(np.unique(ramp)) > 20  # a ramp, not a white wall


def test_dark_16_bit_grayscale_png_stays_dark(nb, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    gray16(folder / "dark.png", np.full((40, 40), 200))  # 200 / 65535 of full brightness: black
    data = prepare(nb, folder, tmp_path)
    assert data.images.max() <= 1


def test_cmyk_jpeg_is_converted_to_rgb(nb, tmp_path):
    red_in_cmyk = (0, 255, 255, 0)
    path = solid(tmp_path / "images" / "cmyk.jpg", red_in_cmyk, mode="CMYK", quality=95)
    assert Image.open(path).mode == "CMYK"
    data = prepare(nb, path.parent, tmp_path)
    red, green, blue = pixel(data)
    assert red > 220 and green < 40 and blue < 40


@pytest.mark.parametrize(("extension", "options"), [("webp", {"lossless": True}), ("bmp", {})])
def test_webp_and_bmp_are_read(nb, tmp_path, extension, options):
    solid(tmp_path / "images" / f"face.{extension}", (30, 140, 220), **options)
    data = prepare(nb, tmp_path / "images", tmp_path)
    assert np.abs(pixel(data) - (30, 140, 220)).max() <= 2


def test_tiny_image_is_skipped_as_too_small(nb, tmp_path):
    folder = tmp_path / "images"
    write_faces(folder, 3)
    solid(folder / "dot.png", (255, 0, 0), size=(1, 1))
    data = prepare(nb, folder, tmp_path)
    assert len(data.images) == 3
    [(path, reason)] = data.skipped
    assert Path(path).name == "dot.png" and "too small" in reason


def test_huge_image_is_used_and_centre_cropped(nb, tmp_path):
    """6000×4000: the outer 1000 px on each side (red) are cropped away, the centre square (blue) remains."""
    image = Image.new("RGB", (6000, 4000), (255, 0, 0))
    image.paste((0, 0, 255), (1000, 0, 5000, 4000))
    (tmp_path / "images").mkdir()
    image.save(tmp_path / "images" / "huge.jpg", quality=90)
    data = prepare(nb, tmp_path / "images", tmp_path)
    assert data.original_sizes == [(6000, 4000)] and data.skipped == []
    blue, red = data.images[0, :, :, 2].astype(int), data.images[0, :, :, 0].astype(int)
    assert (blue > red).all()  # a squeezed (uncropped) image would have red columns at both sides
    assert np.abs(data.images[0, :, 4:-4].astype(int) - (0, 0, 255)).max() <= 12


def test_upper_case_extensions_and_nested_folders_are_found(nb, tmp_path):
    folder = tmp_path / "images"
    solid(folder / "TOP.JPG", (200, 10, 10))
    solid(folder / "a" / "MIDDLE.PNG", (10, 200, 10))
    solid(folder / "a" / "b" / "c" / "deep.JpEg", (10, 10, 200))
    solid(folder / "a" / "b" / "Other.BMP", (200, 200, 10))
    solid(folder / "x" / "y" / "z.WEBP", (10, 200, 200), lossless=True)
    data = prepare(nb, folder, tmp_path)
    assert data.found == 5 and len(data.images) == 5 and data.skipped == []


def test_symlink_loop_terminates_and_counts_each_file_once(nb, tmp_path):
    folder = tmp_path / "images"
    write_faces(folder / "sub", 3)
    write_faces(folder, 2, seed=5)
    os.symlink(folder, folder / "sub" / "back_to_top")  # a directory loop
    os.symlink(folder / "sub", folder / "alias_of_sub")  # the same folder twice
    with deadline(30):  # without loop protection the walk never ends (2 links: 2**depth paths)
        files = nb.find_image_files(folder)
    assert len(files) == 5
    assert len({os.path.realpath(path) for path in files}) == 5
    assert len(prepare(nb, folder, tmp_path).images) == 5


def test_broken_and_looping_file_symlinks_are_skipped(nb, tmp_path):
    folder = tmp_path / "images"
    write_faces(folder, 3)
    os.symlink(folder / "loop.png", folder / "loop.png")  # a file symlink pointing at itself
    os.symlink(tmp_path / "deleted.png", folder / "dangling.png")
    data = prepare(nb, folder, tmp_path)
    assert len(data.images) == 3


def test_names_with_spaces_and_non_ascii_characters(nb, tmp_path):
    folder = tmp_path / "mes images d'été"
    solid(folder / "visage numéro 1.png", (200, 10, 10))
    solid(folder / "アニメ 顔.jpg", (10, 200, 10))
    solid(folder / "ğüşöç ✓.bmp", (10, 10, 200))
    (folder / "cassé é.jpg").write_bytes(b"broken")
    data = prepare(nb, folder, tmp_path)
    assert len(data.images) == 3
    assert [Path(path).name for path, _ in data.skipped] == ["cassé é.jpg"]
    again = prepare(nb, folder, tmp_path)  # the cache's JSON keeps the names intact
    assert [Path(path).name for path, _ in again.skipped] == ["cassé é.jpg"]


def test_exact_duplicates_are_dropped_and_counted(nb, tmp_path):
    folder = tmp_path / "images"
    originals = write_faces(folder, 4)
    shutil.copy(originals[0], folder / "copy_a1.png")
    shutil.copy(originals[0], folder / "copy_a2.png")
    (folder / "sub").mkdir()
    shutil.copy(originals[1], folder / "sub" / "copy_b.png")
    data = prepare(nb, folder, tmp_path)
    assert data.found == 7 and len(data.images) == 4 and data.duplicates == 3
    assert len(data.original_sizes) == 4
    assert len({image.tobytes() for image in data.images}) == 4


def test_second_call_loads_from_cache_without_decoding(nb, tmp_path, monkeypatch):
    folder = tmp_path / "images"
    write_faces(folder, 6)
    (folder / "broken.jpg").write_bytes(b"broken")
    shutil.copy(folder / "face_0000.png", folder / "twin.png")
    first = prepare(nb, folder, tmp_path)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decode_images was called although the cache holds these images")

    monkeypatch.setattr(nb, "decode_images", no_decoding)
    second = prepare(nb, folder, tmp_path)
    assert second.key == first.key
    assert np.array_equal(second.images, first.images)
    assert (second.found, second.duplicates) == (first.found, first.duplicates) == (8, 1)
    assert [tuple(row) for row in second.skipped] == [tuple(row) for row in first.skipped]
    assert [tuple(size) for size in second.original_sizes] == [tuple(size) for size in first.original_sizes]


# ---------------------------------------------------------------------------------------------------------
# Bad inputs: parameters, folders and devices


def test_data_dir_that_is_a_file(nb, make_config, tmp_path):
    path = tmp_path / "faces.zip"
    path.write_bytes(b"PK")
    with pytest.raises(nb.ConfigError, match="DATA_DIR .* is a file"):
        make_config(DATA_DIR=str(path))


def test_run_dir_below_a_regular_file_cannot_be_written(nb, tmp_path):
    (tmp_path / "somefile").write_text("I am a file")
    with pytest.raises(nb.ConfigError) as raised:
        nb.make_run_folder(str(tmp_path / "somefile" / "run"))
    text = str(raised.value)
    assert "RUN_DIR" in text and "cannot be written" in text and "somefile" in text


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("EPOCHS", "5", 5),
        ("EPOCHS", " 7 ", 7),
        ("BATCH_SIZE", "32", 32),
        ("RESUME", "True", True),
        ("RESUME", "false", False),
        ("LR", "0.001", 0.001),
        ("EMA_DECAY", "0", 0.0),
        ("IMAGE_SIZE", "64", 64),
    ],
)
def test_papermill_text_values_are_converted(make_config, name, text, value):
    config = make_config(**{name: text})
    converted = getattr(config, name.lower())
    assert converted == value and type(converted) is type(value)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("EPOCHS", "abc", "EPOCHS must be a whole number, but it is 'abc'."),
        ("EPOCHS", 2.5, "EPOCHS must be a whole number, but it is 2.5."),
        ("EPOCHS", True, "EPOCHS must be a whole number, but it is True."),
        ("EPOCHS", "", "EPOCHS must be a whole number"),
        ("EPOCHS", None, "EPOCHS must be a whole number"),
        ("EPOCHS", float("nan"), "EPOCHS must be a whole number"),
        ("EPOCHS", -3, "EPOCHS must be 1 or more, not -3."),
        ("EPOCHS", 0, "EPOCHS must be 1 or more, not 0."),
        ("BATCH_SIZE", 1, "BATCH_SIZE must be 2 or more (batch norm needs a batch), not 1."),
        ("BATCH_SIZE", "16.5", "BATCH_SIZE must be a whole number"),
        ("RESUME", "yes", "RESUME must be True or False"),
        ("RANDOM_FLIP", 1, "RANDOM_FLIP must be True or False"),
        ("LR", "fast", "LR must be a number"),
        ("LR", 0, "LR must be a positive number"),
        ("LR", "nan", "LR must be a positive number"),
        ("BETA1", 1.0, "BETA1 must be at least 0 and below 1"),
        ("EMA_DECAY", 1, "EMA_DECAY must be 0 (off) or below 1"),
        ("PRECISION", "fp8", "PRECISION must be 'auto', 'fp32', 'bf16' or 'fp16'"),
        ("DATA_DIR", 5, "DATA_DIR must be text in quotes"),
        ("IMAGE_SIZE", 48, "IMAGE_SIZE must be 32, 64 or 128, not 48."),
        ("MAX_IMAGES", 10, "MAX_IMAGES (10) is below BATCH_SIZE (16): raise it, or use 0 for all."),
        ("RUN_DIR", " ", "RUN_DIR is empty"),
    ],
)
def test_invalid_parameter_values_name_the_parameter(nb, make_config, name, value, message):
    with pytest.raises(nb.ConfigError) as raised:
        make_config(**{name: value})
    assert message in str(raised.value)


@pytest.mark.parametrize("value", ["inf", float("inf")], ids=["text", "float"])
def test_infinite_learning_rate_is_refused(nb, make_config, value):
    with pytest.raises(nb.ConfigError, match="LR"):
        make_config(LR=value)


@pytest.mark.parametrize("seed", [-1, 10**15], ids=["negative", "microsecond-timestamp"])
def test_seed_is_refused_or_works_everywhere(nb, make_config, seed):
    """A SEED the notebook cannot use must stop in make_config with a ConfigError naming SEED, not later."""
    try:
        config = make_config(SEED=seed)
    except nb.ConfigError as error:
        assert "SEED" in str(error)
        return
    nb.choose_files([Path(f"{index}.png") for index in range(5)], 2, config.seed)
    nb.epoch_random_sources(config.seed, 1, 8, CPU)
    nb.real_images_for_fid(np.zeros((4, 32, 32, 3), np.uint8), 2, config.seed)


def test_fp16_on_cpu_is_a_clear_error(nb):
    with pytest.raises(nb.ConfigError) as raised:
        nb.pick_precision("fp16", CPU)
    assert "PRECISION 'fp16' needs a CUDA GPU" in str(raised.value) and "'fp32'" in str(raised.value)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_precisions_are_accepted(nb, precision):
    assert nb.pick_precision(precision, CPU) == precision


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


# ---------------------------------------------------------------------------------------------------------
# The same errors, end to end: the notebook stops with its own message


def test_notebook_stops_on_empty_data_dir(tmp_path):
    import papermill

    (tmp_path / "empty").mkdir()
    with pytest.raises(papermill.PapermillExecutionError) as raised:
        run_notebook(tmp_path / "out", DATA_DIR=str(tmp_path / "empty"), RUN_DIR=str(tmp_path / "run"))
    assert raised.value.ename == "DataError"
    assert "No image files" in raised.value.evalue and "DATA_DIR" in raised.value.evalue
    assert not (tmp_path / "run" / "checkpoints" / "checkpoint.pt").exists()


def test_notebook_stops_on_corrupted_checkpoint_and_keeps_it(tmp_path, faces_dir):
    import papermill

    checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True)
    garbage = np.random.default_rng(1).bytes(5000)
    checkpoint.write_bytes(garbage)
    with pytest.raises(papermill.PapermillExecutionError) as raised:
        run_notebook(tmp_path / "out", DATA_DIR=str(faces_dir), RUN_DIR=str(tmp_path / "run"))
    assert raised.value.ename == "CheckpointError"
    assert CORRUPT in raised.value.evalue
    assert checkpoint.read_bytes() == garbage  # the user's file is left for them to inspect
    assert files_below(tmp_path / "run" / "samples") == []
    executed = next((tmp_path / "out").glob("executed_*.ipynb"))
    assert CORRUPT in notebook_text(executed)


def test_running_the_training_cell_twice_never_repeats_an_epoch(
    nb, default_parameters, tiny_images, tmp_path
):
    """train() starts after the last epoch in metrics, so re-running the cell cannot retrain or overwrite epochs."""
    hardware = cpu_hardware(nb, "fp32")
    config = tiny_config(nb, default_parameters, tmp_path / "run", PRECISION="fp32", EPOCHS=2)
    gan, metrics, paths = train_run(nb, config, hardware, tiny_images)
    checkpoint = paths.checkpoint.read_bytes()
    fixed_noise = nb.read_checkpoint(paths.checkpoint)["fixed_noise"]
    train_epochs(nb, gan, tiny_images, metrics, fixed_noise, config, hardware, paths)
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    assert paths.checkpoint.read_bytes() == checkpoint
    train_epochs(nb, gan, tiny_images, metrics, fixed_noise, replace(config, epochs=3), hardware, paths)
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2, 3]


def test_save_to_drive_outside_colab_is_a_clear_error(nb):
    with pytest.raises(nb.ConfigError, match="SAVE_TO_DRIVE works only in Google Colab"):
        nb.drive_folder(in_colab=False)


def test_save_to_drive_in_colab_mounts_drive_and_puts_the_run_there(nb, monkeypatch):
    """A stand-in for google.colab.drive records the mount; the run folder lands under MyDrive."""
    mounted = []
    drive = types.SimpleNamespace(mount=mounted.append)
    colab = types.ModuleType("google.colab")
    colab.drive = drive
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert nb.drive_folder(in_colab=True) == Path("/content/drive/MyDrive")
    assert mounted == ["/content/drive"]


@pytest.mark.parametrize("save_to_drive", [True, False])
def test_relative_run_and_cache_folders_go_to_drive_and_absolute_ones_stay(
    nb, make_config, tmp_path, monkeypatch, save_to_drive
):
    drive = tmp_path / "MyDrive"
    monkeypatch.setattr(nb, "drive_folder", lambda in_colab: drive)
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")  # without Drive, a relative RUN_DIR lands in the working folder
    config = make_config(
        RUN_DIR="runs/anime_gan", CACHE_DIR=str(tmp_path / "cache"), SAVE_TO_DRIVE=save_to_drive
    )
    paths, cache_dir = nb.output_folders(config, in_colab=True)
    base = drive if save_to_drive else Path()
    assert paths.root == base / "runs" / "anime_gan" and paths.samples.is_dir()
    assert cache_dir == tmp_path / "cache" and cache_dir.is_dir()  # an absolute CACHE_DIR stays where it is


def test_fid_weights_path_may_start_with_the_home_folder(make_config, tmp_path, monkeypatch):
    """'~/...' works for FID_WEIGHTS as it does for DATA_DIR, RUN_DIR and CACHE_DIR."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "inception.pth").write_bytes(b"weights")
    assert make_config(FID_WEIGHTS="~/inception.pth").fid_weights == str(tmp_path / "inception.pth")
