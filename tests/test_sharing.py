"""Section 8, "Keep it, share it": the Hub folder and its model card, the push with HUB_REPO (offline: the
upload is replaced inside each test), and loading a shared generator back. Each test names the broken code it
catches."""

import json
import re

import pytest
import torch
import yaml
from conftest import cpu_hardware

HUB_FILES = {"README.md", "config.json", "model.safetensors", "samples.png"}
FAKE_TOKEN = "hf_fakeTokenForTests_9f8e7d6c5b4a"


def front_matter(card):
    """The card's YAML metadata, parsed as the Hub parses it."""
    match = re.match(r"---\n(.*?)\n---\n", card, re.S)
    assert match, "a model card starts with YAML front matter between --- lines"
    return yaml.safe_load(match.group(1))


@pytest.fixture
def shared(nb, make_config, tmp_path):
    """A tiny trained-looking run: a Gan on the CPU, its metrics with one FID row, and its Hub folder written."""
    config = make_config(EPOCHS=2, DATA_DIR="")
    compute = cpu_hardware(nb)
    gan = nb.build_gan(config, compute)
    metrics = {
        "epochs": [
            {"epoch": 1, "steps": 4, "seconds": 30.5, "images_per_second": 2.1},
            {"epoch": 2, "steps": 4, "seconds": 29.5, "images_per_second": 2.2},
        ],
        "fid": [
            {
                "epoch": 2,
                "generator": "ema",
                "fid": 123.456,
                "kid": 0.1234,
                "kid_std": 0.0012,
                "samples": 50,
                "real": 60,
            }
        ],
    }
    grid = tmp_path / "grid.png"
    nb.save_grid(nb.image_grid(torch.zeros(4, 3, 32, 32, dtype=torch.uint8)), grid)
    card = nb.model_card(config, compute, metrics, 64, nb.drawing_name(gan))
    folder = nb.write_hub_folder(tmp_path / "hub", gan.drawing_generator, config, grid, card)
    return config, gan, metrics, folder


def test_hub_folder_holds_what_the_hub_expects(shared):
    """Catches: a file missing or misnamed (config.json, model.safetensors), a card without valid metadata."""
    _, _, _, folder = shared
    assert {path.name for path in folder.iterdir()} == HUB_FILES
    meta = front_matter((folder / "README.md").read_text())
    assert meta["library_name"] == "pytorch" and meta["pipeline_tag"] == "unconditional-image-generation"
    assert {"gan", "dcgan", "anime", "pytorch"} <= set(meta["tags"])
    assert "datasets" not in meta  # the Hub reads it as a Hub data set id, which the Kaggle one is not
    # the Kaggle images are the artists' work, shared for educational use: never a permissive license
    assert (
        meta["license"] == "other" and meta["license_name"] == "educational-use-only" and meta["license_link"]
    )
    config = json.loads((folder / "config.json").read_text())
    assert {key: config[key] for key in ("latent_dim", "width", "image_size")} == {
        "latent_dim": 16,
        "width": 8,
        "image_size": 32,
    }


def test_card_figures_are_the_runs_own(shared, nb):
    """Catches: a card that states fixed or wrong figures (images seen, epochs, time, FID and its protocol)."""
    config, _, metrics, folder = shared
    card = (folder / "README.md").read_text()
    assert f"{8 * config.batch_size:,}, batches of {config.batch_size}" in card  # 2 epochs of 4 steps
    assert "| Epochs | 2 |" in card and "| Training time | 1 min 0 s |" in card
    assert "FID 123.5, KID 0.1234 ± 0.0012 after epoch 2" in card and "50 generated faces against 60" in card
    assert "cpu (CPU), fp32" in card
    no_fid = nb.model_card(config, cpu_hardware(nb), {**metrics, "fid": []}, 64, "ema")
    assert "FID and KID were not measured" in no_fid


def test_card_for_your_own_images_claims_no_license(nb, make_config, faces_dir):
    """Catches: the Kaggle set's terms (or any license) claimed for images the card knows nothing about, or the
    user's full local path published in the card."""
    config = make_config(DATA_DIR=str(faces_dir))
    card = nb.model_card(config, cpu_hardware(nb), {"epochs": [], "fid": []}, 64, "raw")
    meta = front_matter(card)
    assert meta["license"] == "unknown" and "datasets" not in meta
    assert str(faces_dir.parent) not in card and "`faces`" in card


def test_loaded_back_generator_draws_the_same_faces(shared, nb):
    """Catches: weights saved from the wrong generator (raw instead of EMA), sizes that rebuild another network."""
    _, gan, _, folder = shared
    loaded, config = nb.load_shared_generator(folder)
    noise = torch.randn(6, config["latent_dim"], 1, 1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(nb.draw(loaded, noise), nb.draw(gan.drawing_generator, noise))


def test_card_snippet_runs_on_its_own(shared, nb, monkeypatch):
    """Catches: a snippet that needs the notebook (a name it never defines) or reads other files."""
    _, gan, _, folder = shared
    snippet = re.search(r"```python\n(.*?)```", (folder / "README.md").read_text(), re.S).group(1)
    monkeypatch.chdir(folder)  # the snippet reads config.json and model.safetensors from "."
    namespace = {}
    exec(compile(snippet, "card snippet", "exec"), namespace)
    assert namespace["faces"].shape == (16, 3, 32, 32) and namespace["faces"].dtype == torch.uint8
    noise = torch.randn(16, 16, 1, 1, generator=torch.Generator().manual_seed(0))  # the snippet's noise
    assert torch.equal(nb.draw(gan.drawing_generator, noise), namespace["faces"])  # the same faces


class FakeHub:
    """HfApi with create_repo and upload_folder recorded instead of sent; `fail` makes the upload raise it."""

    calls = []
    fail = None

    def create_repo(self, repo_id, **options):
        FakeHub.calls.append(("create_repo", repo_id, options))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **options):
        FakeHub.calls.append(("upload_folder", options["repo_id"], options))
        if FakeHub.fail:
            raise FakeHub.fail


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub

    FakeHub.calls, FakeHub.fail = [], None
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    return FakeHub


def files_text(folder):
    return "".join(path.read_bytes().decode("latin-1") for path in folder.rglob("*") if path.is_file())


def test_push_sends_the_folder_privately_with_the_token(shared, nb, fake_hub, capsys):
    """Catches: a public repository by default, another folder sent, the token not passed, or printed or saved."""
    _, _, _, folder = shared
    url = nb.push_to_hub(folder, "someone/anime-dcgan", private=True)
    (_, repo, create), (_, _, upload) = fake_hub.calls
    assert url == "https://huggingface.co/someone/anime-dcgan" and repo == "someone/anime-dcgan"
    assert create["private"] is True and create["token"] == FAKE_TOKEN
    assert upload["folder_path"] == str(folder) and upload["token"] == FAKE_TOKEN
    output = capsys.readouterr()
    assert FAKE_TOKEN not in output.out + output.err and FAKE_TOKEN not in files_text(folder)
    assert "private" in output.out


def test_failed_push_keeps_the_folder_and_says_what_to_do(shared, nb, fake_hub, capsys):
    """Catches: an exception out of the push (the notebook would stop), a folder touched, a vague message."""
    from huggingface_hub.errors import HfHubHTTPError

    _, _, _, folder = shared
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    response = type("Response", (), {"status_code": 409, "headers": {}, "request": None})()
    fake_hub.fail = HfHubHTTPError("409 Conflict", response=response)
    assert nb.push_to_hub(folder, "someone/taken", private=True) is None
    out = capsys.readouterr().out
    assert "that name is taken: choose another HUB_REPO" in out and f"the folder {folder} is kept" in out
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before


def test_push_without_a_token_says_how_to_get_one(shared, nb, fake_hub, monkeypatch, capsys):
    """Catches: a push attempted anonymously (the Hub refuses it with a less helpful error)."""
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert nb.push_to_hub(shared[3], "someone/anime-dcgan", private=True) is None
    assert "no Hugging Face token" in capsys.readouterr().out and fake_hub.calls == []


def test_push_without_huggingface_hub_names_the_install(shared, nb, monkeypatch, capsys):
    """Catches: an ImportError out of the push when the optional package is missing."""
    find_spec = nb.importlib.util.find_spec
    monkeypatch.setattr(
        nb.importlib.util, "find_spec", lambda name: None if name == "huggingface_hub" else find_spec(name)
    )
    assert nb.push_to_hub(shared[3], "someone/anime-dcgan", private=True) is None
    assert "pip install huggingface_hub" in capsys.readouterr().out


def test_hub_repo_names_are_checked_with_the_parameters(make_config, nb):
    """Catches: a HUB_REPO typo found only after a whole training run, at push time."""
    with pytest.raises(nb.ConfigError, match="HUB_REPO must be"):
        make_config(HUB_REPO="no-slash-here")
    assert make_config(HUB_REPO="someone/anime-dcgan").hub_repo == "someone/anime-dcgan"


def test_every_run_writes_the_hub_folder_and_zips_it(report_run):
    """End to end: the headless run wrote hub/ with its card, loaded it back, and zipped it."""
    import zipfile

    hub = report_run.run / "hub"
    assert {path.name for path in hub.iterdir()} == HUB_FILES
    metrics = json.loads((report_run.run / "metrics.json").read_text())
    seen = sum(row["steps"] for row in metrics["epochs"]) * 2  # BATCH_SIZE 2
    assert f"| Images seen | {seen:,}, batches of 2 |" in (hub / "README.md").read_text()
    names = zipfile.ZipFile(report_run.run / "anime_gan_results.zip").namelist()
    assert {f"hub/{name}" for name in HUB_FILES} <= set(names)
