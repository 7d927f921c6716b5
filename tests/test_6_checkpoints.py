"""Section 6, "The training loop", its checkpoints cell (save, resume, or refuse to touch an earlier run). The
checkpoint and metrics.json are written atomically (a write killed halfway keeps the previous file); a
checkpoint is loaded safely (weights_only: corrupt, foreign or code-running files raise CheckpointError, and
the notebook stops on one and keeps it); it resumes from another precision (fp32, bf16, fp16 with its
gradient scaler), from a CUDA GPU and with or without COMPILE; and a resume that would not fit is refused
with nothing changed: other network shapes, other images, RESUME = False over an earlier run.

All on the CPU, with 32 px images and networks 8 channels wide: fp16 with a gradient scaler runs there too
(torch.amp.GradScaler("cpu")), which is what a T4 does on the GPU."""

import copy
import io
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    CPU,
    cpu_hardware,
    files_below,
    notebook_text,
    run_notebook,
    tiny_config,
    train_epochs,
    train_run,
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


def save_epoch_2(nb, saved_run):
    """Save saved_run's state as its epoch-2 checkpoint, as the notebook does after an epoch."""
    state = (saved_run.gan, 2, saved_run.metrics, saved_run.fixed_noise, saved_run.config, cpu_hardware(nb))
    nb.save_checkpoint(saved_run.paths.checkpoint, *state)


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
        save_epoch_2(nb, saved_run)
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
        save_epoch_2(nb, saved_run)
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


# ---------------------------------------------------------------------------------------------------------
# Shape mismatch, other images and RESUME = False


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
    nb, make_config, tmp_path
):
    """From a laptop's folder to Colab's Drive: another path, but the same images (the same cache key). The
    change it returns is what the resume note lists."""
    (tmp_path / "laptop").mkdir(), (tmp_path / "drive").mkdir()
    saved = {"config": {"data_dir": str(tmp_path / "laptop"), "dataset": ""}, "metrics": {"data_key": "k1"}}
    assert nb.check_same_data(saved, make_config(DATA_DIR=str(tmp_path / "drive")), "k1") == []
    with pytest.raises(nb.CheckpointError, match="laptop"):
        nb.check_same_data(saved, make_config(DATA_DIR=str(tmp_path / "drive")), "k2")
    [change] = nb.check_same_data(saved, make_config(DATA_DIR=str(tmp_path / "laptop")), "k2")  # images added
    assert change.startswith("images (in DATA_DIR") and "laptop" in change


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
# Another precision, another device


PRECISIONS = ("fp32", "bf16", "fp16")


def one_epoch_checkpoint(nb, default_parameters, tiny_images, run_dir, precision):
    """Train one epoch under `precision` and return its checkpoint's state."""
    config = tiny_config(nb, default_parameters, run_dir, PRECISION=precision, EPOCHS=1)
    _, _, paths = train_run(nb, config, cpu_hardware(nb, precision), tiny_images)
    return nb.read_checkpoint(paths.checkpoint)


@pytest.fixture(scope="module")
def checkpoints(nb, default_parameters, tiny_images, tmp_path_factory):
    """One epoch-1 checkpoint per precision."""
    return {
        precision: one_epoch_checkpoint(
            nb, default_parameters, tiny_images, tmp_path_factory.mktemp(precision) / "run", precision
        )
        for precision in PRECISIONS
    }


def test_fp16_checkpoint_really_holds_a_scaler_and_the_others_do_not(checkpoints):
    """The premise of the matrix below: only the fp16 run's checkpoint carries gradient-scaler state."""
    assert checkpoints["fp16"]["scaler"]["scale"] > 0
    assert checkpoints["fp32"]["scaler"] == {} and checkpoints["bf16"]["scaler"] == {}


@pytest.mark.parametrize("resumed", PRECISIONS)
@pytest.mark.parametrize("saved", PRECISIONS)
def test_checkpoint_resumes_under_every_other_precision(
    nb, default_parameters, tiny_images, checkpoints, tmp_path, capsys, saved, resumed
):
    state = copy.deepcopy(checkpoints[saved])
    config = tiny_config(nb, default_parameters, tmp_path / "run", PRECISION=resumed, EPOCHS=2)
    hardware = cpu_hardware(nb, resumed)
    gan = nb.build_gan(config, hardware)
    epoch, metrics, fixed_noise = nb.restore_checkpoint(gan, state, config, hardware)
    printed = capsys.readouterr().out

    assert epoch == 1 and [row["epoch"] for row in metrics["epochs"]] == [1]
    for name in ("generator", "discriminator"):
        for key, tensor in getattr(gan, name).state_dict().items():
            assert torch.equal(tensor, state[name][key]), (name, key)
    assert gan.opt_g.state_dict()["state"][0]["step"] == state["opt_g"]["state"][0]["step"] == 4
    if resumed == "fp16" and saved == "fp16":
        assert gan.scaler.get_scale() == state["scaler"]["scale"]
    elif resumed == "fp16":
        assert "gradient scaler starts fresh" in printed
        assert gan.scaler.get_scale() == torch.amp.GradScaler("cpu").get_scale()
    if saved != resumed:
        assert "PRECISION" in printed  # the note that the run now differs from a straight one

    # and training goes on under the new precision
    paths = nb.make_run_folder(config.run_dir)
    train_epochs(nb, gan, tiny_images, metrics, fixed_noise.to(CPU), config, hardware, paths)
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    assert all(torch.isfinite(torch.tensor(metrics["steps"][key])).all() for key in ("loss_d", "loss_g"))


def test_checkpoint_written_on_a_cuda_gpu_loads_on_the_cpu(nb, checkpoints, tmp_path, monkeypatch):
    """Every tensor of this file is stored as living on cuda:0, as a Colab GPU run writes it. Without
    map_location it cannot even be opened on a machine without CUDA; read_checkpoint loads it to the CPU."""
    import torch.serialization

    path = tmp_path / "from_a_gpu.pt"
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(checkpoints["fp16"], path)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)
    state = nb.read_checkpoint(path)
    assert state["generator"]["0.weight"].device == CPU
    assert torch.equal(state["generator"]["0.weight"], checkpoints["fp16"]["generator"]["0.weight"])


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
