"""The notebook as a whole: structure and hygiene, the end-to-end papermill run, resume, and clear errors."""

import json
import re
import subprocess
import sys
import types

import pytest
import torch
from conftest import NOTEBOOK, ROOT, assert_identical, notebook_json, run_notebook, write_faces
from PIL import Image


def test_exactly_one_parameters_cell_with_literals_only():
    cells = [c for c in notebook_json()["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1
    import ast

    for statement in ast.parse("".join(cells[0]["source"])).body:
        assert isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant), ast.dump(
            statement
        )


def test_committed_notebook_has_no_outputs():
    for cell in notebook_json()["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_sections_in_order():
    headings = [
        "".join(c["source"]).splitlines()[0] for c in notebook_json()["cells"] if c["cell_type"] == "markdown"
    ]
    sections = [h for h in headings if h.startswith("## ")]
    expected = [
        "Setup",
        "Parameters",
        "Data",
        "Inspect",
        "models",
        "Training",
        "Results",
        "Generate",
        "Evaluate",
        "What you saw",
    ]
    assert len(sections) == len(expected)
    for heading, word in zip(sections, expected):
        assert word.lower() in heading.lower(), (heading, word)


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


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_is_clean(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "anime_gan.ipynb"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_end_to_end_on_messy_folder(report_run):
    """The shared report run (conftest.report_run): 4 epochs on a folder of mixed formats, modes and sizes."""
    run, out, text = report_run.run, report_run.out, report_run.text
    grids = sorted((run / "samples").glob("epoch_*.png"))
    assert [g.name for g in grids] == [f"epoch_{epoch:03d}.png" for epoch in (1, 2, 3, 4)]
    # SAMPLE_COUNT 16 in rows of 8: 8 columns and 2 rows of 32 px images with 2 px padding
    assert Image.open(grids[0]).size == (8 * 34 + 2, 2 * 34 + 2)
    metrics = json.loads((run / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2, 3, 4]
    for row in metrics["epochs"]:
        for key in ("loss_d", "loss_g", "d_real", "d_fake", "seconds", "images_per_second"):
            assert isinstance(row[key], float) and row[key] == row[key] and abs(row[key]) < 1e6, (key, row)
    assert (run / "checkpoints" / "checkpoint.pt").stat().st_size > 10_000
    for name in (
        "progress.gif",
        "interpolation.png",
        "generated.png",
        "generator.safetensors",
        "generator.json",
        "anime_gan_results.zip",
        "plots/training_curves.png",
        "plots/game_2d.png",  # PLAY_GAME_2D True here (TINY skips it)
    ):
        assert (run / name).stat().st_size > 0, name
    assert re.search(r"\d+% of the fakes lie on a cluster, \d of 8 clusters are drawn", text)
    executed = json.loads(out.read_text())
    images = [o for c in executed["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 5
    # 66 image files: the hidden folder, the hidden image and the "._" companion file are not among them
    assert re.search(r"image files found\s+66\n", text)
    assert re.search(r"skipped \(unreadable or too small\)\s+1\n", text)
    assert "skipped broken.jpg: OSError" in text  # reported by name, with the reason
    assert "Training on cpu (CPU), fp32" in text  # TINY's PRECISION, whatever "auto" picks on this CPU


@pytest.fixture(scope="module")
def chain(resume_chain):
    return resume_chain


def test_resume_continues_instead_of_restarting(chain):
    """conftest.resume_chain: EPOCHS 1, then EPOCHS 2 in the same RUN_DIR."""
    assert "Starting a new run." in chain.texts["first"]
    assert "Resuming after epoch 1 of 2" in chain.texts["resumed"]
    assert "PLAY_GAME_2D is False: the 2-D game is skipped." in chain.texts["first"]  # TINY skips it
    assert not (chain.after["first"] / "plots" / "game_2d.png").exists()
    metrics = json.loads((chain.after["resumed"] / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    first_grid = (chain.after["first"] / "samples" / "epoch_001.png").read_bytes()
    assert (
        chain.after["resumed"] / "samples" / "epoch_001.png"
    ).read_bytes() == first_grid  # not trained again


def comparable_checkpoint(path):
    """A checkpoint's state without what differs between a resumed run and a straight one by design: the
    config (RUN_DIR), the timings, and the FID rows (compared in test_results.py)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    for row in state["metrics"]["epochs"]:
        del row["seconds"], row["images_per_second"]
    del state["metrics"]["fid"]
    state["metrics"]["first_epoch_snapshots"].pop("seconds")  # how long drawing the snapshots took
    return {key: value for key, value in state.items() if key != "config"}


def test_resumed_notebook_run_is_bit_identical_to_a_straight_one(chain):
    """The notebook's own cells, not a copy of their wiring: EPOCHS 1 then a resumed EPOCHS 2 ends with the
    same networks, optimizers, EMA, fixed noise, losses and pictures, bit for bit, as EPOCHS 2 in one go."""
    resumed, straight = chain.after["resumed"], chain.after["straight"]
    samples = [f"samples/epoch_00{epoch}.png" for epoch in (1, 2)]
    # Sanity: training moved the weights, so equal files below mean something.
    assert (straight / samples[0]).read_bytes() != (straight / samples[1]).read_bytes()
    expected = comparable_checkpoint(straight / "checkpoints" / "checkpoint.pt")
    actual = comparable_checkpoint(resumed / "checkpoints" / "checkpoint.pt")
    assert expected["epoch"] == actual["epoch"] == 2
    assert_identical(actual, expected, "checkpoint")
    for name in (*samples, "generated.png", "interpolation.png", "generator.safetensors"):
        assert (resumed / name).read_bytes() == (straight / name).read_bytes(), name


def test_bad_parameters_stop_with_a_clear_message(tmp_path):
    """Papermill's values reach make_config, whose ConfigError stops the notebook with its message. One run
    is enough: every parameter reaches make_config through the same PARAMETERS dict (built from KINDS;
    test_papermill_sees_every_parameter checks the names), and every message is checked in-process in
    test_reliability.py and test_settings.py."""
    import papermill

    with pytest.raises(papermill.PapermillExecutionError) as raised:
        run_notebook(tmp_path, RUN_DIR=str(tmp_path / "run"), IMAGE_SIZE=48)
    assert raised.value.ename == "ConfigError"
    assert "IMAGE_SIZE must be 32, 64 or 128, not 48." in raised.value.evalue


def test_fewer_usable_images_than_batch_size_stop_before_training(tmp_path):
    """12 readable images and 8 broken ones, MAX_IMAGES 16 = BATCH_SIZE: the parameters pass their checks,
    but fewer than a batch of images is usable. The notebook stops with a DataError that says so (and that
    MAX_IMAGES caps them) before a checkpoint is written; without the check an epoch has no step at all."""
    import papermill

    write_faces(tmp_path / "images", 12)
    for index in range(8):
        (tmp_path / "images" / f"broken_{index}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(papermill.PapermillExecutionError) as raised:
        run_notebook(
            tmp_path / "out", DATA_DIR=str(tmp_path / "images"), RUN_DIR=str(tmp_path / "run"), MAX_IMAGES=16
        )
    assert raised.value.ename == "DataError"
    found = re.search(r"Only (\d+) usable images, fewer than BATCH_SIZE", raised.value.evalue)
    assert found and 8 <= int(found.group(1)) <= 12, raised.value.evalue
    assert "lower BATCH_SIZE" in raised.value.evalue and "raise MAX_IMAGES" in raised.value.evalue
    assert not (tmp_path / "run" / "checkpoints" / "checkpoint.pt").exists()


# --------------------------------------------------------------------------------------------------
# The learner's notebook: the story in front, the machinery folded, the parameters as a Colab form


def code_cells():
    return [c for c in notebook_json()["cells"] if c["cell_type"] == "code"]


def is_helper(cell):
    metadata = cell.get("metadata", {})
    return metadata.get("cellView") == "form" or metadata.get("jupyter", {}).get("source_hidden", False)


def nonblank_lines(cell):
    return [line for line in "".join(cell["source"]).splitlines() if line.strip()]


def test_helper_cells_are_folded_everywhere_and_titled():
    helpers = [c for c in code_cells() if is_helper(c)]
    assert len(helpers) >= 10
    for cell in helpers:
        source = "".join(cell["source"])
        assert source.startswith("# @title ") and '{ display-mode: "form" }' in source.splitlines()[0], (
            source[:80]
        )
        assert cell["metadata"]["cellView"] == "form"  # Colab
        assert cell["metadata"]["jupyter"]["source_hidden"] is True  # JupyterLab, Notebook 7, VS Code


def shown_lines(cells):
    """Lines a Colab reader scrolls past: markdown and visible code as they are, a folded cell as its title."""
    return sum(1 if is_helper(c) else len("".join(c["source"]).splitlines()) for c in cells)


def test_the_story_a_learner_reads_is_the_whole_gan_in_view():
    """Every line that defines and trains the GAN is in a visible cell; catches folding any of them away."""
    visible = "\n".join("".join(c["source"]) for c in code_cells() if not is_helper(c))
    for line in (
        "def build_generator(",
        "def build_discriminator(",
        "nn.init.normal_(",  # the DCGAN initialisation
        "F.binary_cross_entropy_with_logits(",
        "torch.optim.Adam(generator.parameters()",
        "torch.optim.Adam(discriminator.parameters()",
        "torch.amp.GradScaler(",
        "def train_step(",
        "gan.opt_d.zero_grad(",
        "gan.scaler.scale(loss_d).backward()",
        "gan.scaler.step(gan.opt_d)",
        "gan.opt_g.zero_grad(",
        "gan.scaler.scale(loss_g).backward()",
        "gan.scaler.step(gan.opt_g)",
        "gan.scaler.update()",
        "for step, real in enumerate(batches):",
        "torch.randn(",
        "update_ema(",
        "for epoch in keeper.epochs_to_train():",
        "draw(gan.drawing_generator, fixed_noise)",
        "def to_model_range(",
    ):
        assert line in visible, line


def test_the_road_to_the_first_faces_is_short():
    """At most 400 lines shown before the cell that starts training; the training loops at most 25 lines each."""
    cells = notebook_json()["cells"]
    training = next(i for i, c in enumerate(cells) if "keeper = RunKeeper(" in "".join(c["source"]))
    assert shown_lines(cells[:training]) <= 400
    visible = [c for c in code_cells() if not is_helper(c)]
    for name in ("train_one_epoch", "train", "train_game_2d"):
        source = next("".join(c["source"]) for c in visible if f"def {name}(" in "".join(c["source"]))
        body = source[source.index(f"def {name}(") :].split("\n\n\n")[0]
        assert len([line for line in body.splitlines() if line.strip()]) <= 25, name


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


def test_text_progress_bars_refresh_rarely_and_live_ones_do_not(nb, monkeypatch):
    """Headless (papermill, a console) every refresh of a text bar is another line of output."""
    import io
    import time

    def lines_written(live):
        monkeypatch.setattr(nb, "LIVE_FRONT_END", live)
        out = io.StringIO()
        for _ in nb.progress(range(100), file=out, desc="x"):
            time.sleep(0.01)  # 1 s in all: a default bar refreshes about every 0.1 s
        return len([line for line in out.getvalue().replace("\r", "\n").splitlines() if line.strip()])

    assert lines_written(live=False) <= 2  # the start and the end
    assert lines_written(live=True) >= 5  # (tqdm's text bar stands in for a widget here)


def test_headless_run_is_a_short_report(report_run):
    """The shared 4-epoch report run: a few text lines per epoch, and the picture of epochs 1, 2, 4 (powers of
    two and the last). Headless whether or not ipywidgets is installed: conftest hides it from the kernel."""
    text = report_run.text
    assert "live progress bars: False" in text  # the premise: text bars, no live display
    lines = text.replace("\r", "\n").splitlines()
    assert len([line for line in lines if line.strip()]) < 150, len(lines)
    executed = json.loads(report_run.out.read_text())
    training = next(c for c in executed["cells"] if "keeper = RunKeeper(" in "".join(c["source"]))
    figures = [o for o in training["outputs"] if "image/png" in o.get("data", {})]
    assert len(figures) == 4  # the first epoch's snapshots, then epochs 1, 2 and 4


class Displays:
    """Stands in for IPython's display(): records what is shown, and each update of a display slot."""

    def __init__(self):
        self.shown, self.updates = [], []

    def display(self, item, display_id=None):
        self.shown.append(item)
        if display_id:
            return types.SimpleNamespace(update=self.updates.append)


@pytest.mark.parametrize(
    ("live", "shown_epochs", "updated_epochs"),
    [(False, [1, 2, 4, 8, 9], []), (True, [1], [2, 3, 4, 5, 6, 7, 8, 9])],
    ids=["headless", "live"],
)
def test_live_view_updates_one_picture_live_and_shows_a_few_headless(
    nb, monkeypatch, live, shown_epochs, updated_epochs
):
    """Both paths of LiveView, without a front end: live (Colab, Jupyter with ipywidgets) one slot that every
    epoch replaces; headless (papermill, CI) a picture for epochs 1, 2, 4, 8 and the last."""
    displays = Displays()
    monkeypatch.setattr(nb, "display", displays.display)
    view = nb.LiveView(live, last_epoch=9)
    figures = {epoch: nb.plt.figure() for epoch in range(1, 10)}
    for epoch, figure in figures.items():
        view.show(figure, "progress", epoch)
    assert displays.shown == [figures[epoch] for epoch in shown_epochs]
    assert displays.updates == [figures[epoch] for epoch in updated_epochs]
    assert not nb.plt.get_fignums()  # every figure closed, shown or not


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


def documented_papermill_lines():
    """Every line of the README, samples/RESULTS.md and the notebook's markdown that runs the notebook."""
    texts = [(ROOT / name).read_text(encoding="utf-8") for name in ("README.md", "samples/RESULTS.md")]
    texts += ["".join(c["source"]) for c in notebook_json()["cells"] if c["cell_type"] == "markdown"]
    return [line for text in texts for line in text.splitlines() if "papermill anime_gan.ipynb " in line]


def test_documented_commands_create_the_folder_papermill_writes_into():
    """papermill saves the executed notebook before the first cell runs and refuses a missing folder, and a
    fresh clone has no runs/: every documented command must create its output folder first."""
    lines = documented_papermill_lines()
    assert len(lines) >= 3, lines  # the README's line for Windows, RESULTS.md's two
    for line in lines:
        before, output = re.search(r"^(.*)papermill anime_gan\.ipynb (\S+)", line).groups()
        folder = output.rpartition("/")[0]
        assert folder in ("", ".") or f"mkdir -p {folder} " in before, line
