"""The notebook as a document, across its sections: committed without outputs, its sections in order,
lint-clean; the learner's notebook (the story in front: every line that defines and trains the GAN in view,
a short road to the first faces; the machinery folded: helper cells titled and folded in Colab and Jupyter);
and the headless report (text progress bars that refresh rarely, a short report with a few pictures, and
LiveView's live and headless paths). The parameter forms: test_2_parameters.py."""

import json
import subprocess
import sys
import types

import pytest
from conftest import ROOT, code_cells, notebook_json


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


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_is_clean(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "anime_gan.ipynb"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------------------
# The learner's notebook: the story in front, the machinery folded


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


# ---------------------------------------------------------------------------------------------------------
# The headless report, and the live view


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
