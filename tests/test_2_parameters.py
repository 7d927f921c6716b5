"""Section 2, Parameters: the forms, the checks, QUICK and the run folder. The `parameters` cell that papermill
reads holds literals only, and every knob of both forms (it and the Advanced settings) is a one-line Colab
field with help; make_config converts papermill's text values and refuses every bad value with a message that
names it (each lower bound where its message says, SEED, DATA_DIR, an infinite LR), and one papermill run shows
the notebook stop on one; QUICK's settings and its own run folder; `~` in FID_WEIGHTS; the run folder (a
RUN_DIR that cannot be written, SAVE_TO_DRIVE in and outside Colab). The device and number format, chosen in
the same cell: test_2_device_and_precision.py."""

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import CPU, NOTEBOOK, code_cells, notebook_json, run_notebook

# ---------------------------------------------------------------------------------------------------------
# The forms


def test_exactly_one_parameters_cell_with_literals_only():
    cells = [c for c in notebook_json()["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1
    import ast

    for statement in ast.parse("".join(cells[0]["source"])).body:
        assert isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant), ast.dump(
            statement
        )


def test_papermill_sees_the_main_form_and_every_knob_has_help(default_parameters):
    """papermill lists the main form's knobs (the 12 a learner turns); -p sets the advanced ones too. Every knob
    of both forms carries its one-line help after the Colab annotation."""
    import papermill

    inferred = papermill.inspect_notebook(str(NOTEBOOK))
    assert 8 <= len(inferred) <= 12 and set(inferred) < set(default_parameters)
    assert all(parameter["help"] for parameter in inferred.values())
    form_lines = [
        line for cell in code_cells() for line in "".join(cell["source"]).splitlines() if "# @param" in line
    ]
    assert len(form_lines) == len(default_parameters)
    for line in form_lines:
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]* = \S.* # @param (\{.*?\}|\[.*?\]( \{.*?\})?) \S.*", line), line
        assert len(line) <= 110, line  # longer, ruff format would wrap it and Colab would lose the field


def test_every_parameter_is_a_one_line_colab_form_field_with_help():
    import papermill

    cell = next(c for c in code_cells() if "parameters" in c["metadata"].get("tags", []))
    lines = "".join(cell["source"]).splitlines()
    for line in lines:
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]* = \S.* # @param (\{.*?\}|\[.*?\]( \{.*?\})?) \S.*", line), line
        assert len(line) <= 110, (
            line
        )  # longer, ruff format would wrap it in parentheses and Colab loses the field
    inferred = papermill.inspect_notebook(str(NOTEBOOK))
    assert len(inferred) == len(lines)
    for name, parameter in inferred.items():
        help_text = parameter["help"].split("}", 1)[-1] if "{" in parameter["help"] else parameter["help"]
        assert "@param" in parameter["help"] and len(help_text.split("]")[-1].strip()) > 10, (name, parameter)


# ---------------------------------------------------------------------------------------------------------
# make_config: every value checked, a bad one named


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
        ("DATA_DIR", "/no/such/folder", "DATA_DIR must be '' (Kaggle) or a folder of images, not '/no/such"),
        ("FID_WEIGHTS", "/no/such.pth", "FID_WEIGHTS must be '' (download them) or a file of the weights"),
    ],
)
def test_invalid_parameter_values_name_the_parameter(nb, make_config, name, value, message):
    with pytest.raises(nb.ConfigError) as raised:
        make_config(**{name: value})
    assert message in str(raised.value)


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


def test_data_dir_that_is_a_file(nb, make_config, tmp_path):
    path = tmp_path / "faces.zip"
    path.write_bytes(b"PK")
    with pytest.raises(nb.ConfigError, match="DATA_DIR .* is a file"):
        make_config(DATA_DIR=str(path))


def test_fid_weights_path_may_start_with_the_home_folder(make_config, tmp_path, monkeypatch):
    """'~/...' works for FID_WEIGHTS as it does for DATA_DIR, RUN_DIR and CACHE_DIR."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "inception.pth").write_bytes(b"weights")
    assert make_config(FID_WEIGHTS="~/inception.pth").fid_weights == str(tmp_path / "inception.pth")


def test_bad_parameters_stop_with_a_clear_message(tmp_path):
    """Papermill's values reach make_config, whose ConfigError stops the notebook with its message. One run
    is enough: every parameter reaches make_config through the same PARAMETERS dict (built from KINDS;
    test_papermill_sees_the_main_form_and_every_knob_has_help checks the names), and every message is checked
    in-process in this file."""
    import papermill

    with pytest.raises(papermill.PapermillExecutionError) as raised:
        run_notebook(tmp_path, RUN_DIR=str(tmp_path / "run"), IMAGE_SIZE=48)
    assert raised.value.ename == "ConfigError"
    assert "IMAGE_SIZE must be 32, 64 or 128, not 48." in raised.value.evalue


# ---------------------------------------------------------------------------------------------------------
# QUICK


@pytest.mark.parametrize(("max_images", "expected"), [(0, 20_000), (500, 500), (50_000, 20_000)])
def test_quick_is_a_cpu_run_that_draws_faces(make_config, max_images, expected):
    """QUICK's settings, as measured to draw faces on a 2-core CPU (README, samples/RESULTS.md)."""
    config = make_config(
        QUICK=True, IMAGE_SIZE=128, BATCH_SIZE=256, EPOCHS=25, MAX_IMAGES=max_images, FID_SAMPLES=2000
    )
    assert (config.image_size, config.batch_size, config.epochs) == (32, 64, 2)
    assert config.max_images == expected and config.fid_samples == 0 and config.fid_every == 0
    assert make_config(QUICK=True, EPOCHS=1).epochs == 1  # a cap, not a floor


def test_quick_runs_in_its_own_folder(make_config, tmp_path):
    """A QUICK run's 32 px checkpoint must not sit in the full run's RUN_DIR: the full run that a learner
    starts next (same RUN_DIR, RESUME on) would stop with a checkpoint-size mismatch."""
    assert make_config(QUICK=True, RUN_DIR="runs/anime_gan").run_dir == "runs/anime_gan_quick"
    assert make_config(QUICK=True, RUN_DIR="runs/anime_gan/").run_dir == "runs/anime_gan_quick"
    assert make_config(QUICK=True, RUN_DIR="runs/mine_quick").run_dir == "runs/mine_quick"  # not _quick_quick
    assert make_config(QUICK=False, RUN_DIR="runs/anime_gan").run_dir == "runs/anime_gan"


# ---------------------------------------------------------------------------------------------------------
# The run folder, on Google Drive if asked


def test_run_dir_below_a_regular_file_cannot_be_written(nb, tmp_path):
    (tmp_path / "somefile").write_text("I am a file")
    with pytest.raises(nb.ConfigError) as raised:
        nb.make_run_folder(str(tmp_path / "somefile" / "run"))
    text = str(raised.value)
    assert "RUN_DIR" in text and "cannot be written" in text and "somefile" in text


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
