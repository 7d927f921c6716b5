"""The notebook as a whole: structure and hygiene, the end-to-end papermill run, resume, and clear errors."""

import json
import re
import subprocess
import sys

import pytest
from conftest import NOTEBOOK, ROOT, SHARED_FACES, notebook_json, notebook_text, run_notebook, write_faces
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
    ]
    assert len(sections) == len(expected)
    for heading, word in zip(sections, expected):
        assert word.lower() in heading.lower(), (heading, word)


def test_papermill_sees_every_parameter(default_parameters):
    import papermill

    inferred = papermill.inspect_notebook(str(NOTEBOOK))
    assert set(inferred) == set(default_parameters)
    assert all(parameter["help"] for parameter in inferred.values())  # every knob has its one-line comment


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_is_clean(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "anime_gan.ipynb"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def make_messy_folder(folder):
    """Mixed sizes, modes and formats, a nested folder, an upper-case extension and one corrupt JPEG."""
    write_faces(folder, 40, size=40, fmt="png")
    write_faces(folder / "nested" / "deeper", 12, size=70, seed=1, fmt="jpg")
    for index, path in enumerate(write_faces(folder / "modes", 12, size=36, seed=2)):
        image = Image.open(path)
        [image.convert("L"), image.convert("P"), image.convert("RGBA")][index % 3].save(path)
    Image.open(path).convert("RGB").save(folder / "SHOUTING.JPG")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")


def test_end_to_end_on_messy_folder(tmp_path):
    make_messy_folder(tmp_path / "images")
    out = run_notebook(tmp_path, DATA_DIR=str(tmp_path / "images"), RUN_DIR=str(tmp_path / "run"))
    run = tmp_path / "run"
    grids = sorted((run / "samples").glob("epoch_*.png"))
    assert [g.name for g in grids] == ["epoch_001.png", "epoch_002.png"]
    # SAMPLE_COUNT 16 in rows of 8: 8 columns and 2 rows of 32 px images with 2 px padding
    assert Image.open(grids[0]).size == (8 * 34 + 2, 2 * 34 + 2)
    metrics = json.loads((run / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
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
    ):
        assert (run / name).stat().st_size > 0, name
    executed = json.loads(out.read_text())
    images = [o for c in executed["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 5
    text = notebook_text(out)
    assert re.search(r"image files found\s+66\n", text)
    assert re.search(r"skipped \(unreadable or too small\)\s+1\n", text)
    assert "skipped broken.jpg: OSError" in text  # reported by name, with the reason


def test_resume_continues_instead_of_restarting(tmp_path, faces_dir):
    run = tmp_path / "run"
    run_notebook(tmp_path, DATA_DIR=str(faces_dir), RUN_DIR=str(run), EPOCHS=1)
    first_grid = (run / "samples" / "epoch_001.png").read_bytes()
    out = run_notebook(tmp_path, DATA_DIR=str(faces_dir), RUN_DIR=str(run), EPOCHS=2)
    assert "Resuming after epoch 1 of 2" in notebook_text(out)
    metrics = json.loads((run / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    assert (run / "samples" / "epoch_001.png").read_bytes() == first_grid  # epoch 1 was not trained again
    assert "decoding" not in notebook_text(out)  # the images came from the cache


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"IMAGE_SIZE": 48}, "IMAGE_SIZE must be 32, 64 or 128, not 48."),
        ({"EPOCHS": 0}, "EPOCHS must be 1 or more, not 0."),
        ({"BATCH_SIZE": 1}, "BATCH_SIZE must be 2 or more"),
        ({"DATA_DIR": "/no/such/folder"}, "DATA_DIR '/no/such/folder' does not exist"),
    ],
)
def test_bad_parameters_stop_with_a_clear_message(tmp_path, parameters, message):
    import papermill

    with pytest.raises(papermill.PapermillExecutionError) as raised:
        run_notebook(tmp_path, RUN_DIR=str(tmp_path / "run"), **parameters)
    assert raised.value.ename == "ConfigError"
    assert message in raised.value.evalue


def test_real_faces_one_epoch(tmp_path):
    if not SHARED_FACES.is_dir():
        pytest.skip(
            f"{SHARED_FACES} is absent (it lives beside the project only on developer and CI machines)"
        )
    out = run_notebook(
        tmp_path,
        DATA_DIR=str(SHARED_FACES),
        RUN_DIR=str(tmp_path / "run"),
        MAX_IMAGES=320,
        IMAGE_SIZE=64,
        EPOCHS=1,
        BATCH_SIZE=32,
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs"][0]["steps"] == 10
    assert "320" in notebook_text(out)
    assert Image.open(tmp_path / "run" / "samples" / "epoch_001.png").size == (8 * 66 + 2, 2 * 66 + 2)
