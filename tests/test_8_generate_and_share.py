"""Section 8, Generate and share. "Does it copy the training images?": the nearest training images of generated
faces (an exact copy found first across chunks, fewer images than asked for, the RMS pixel distance, the
figure). "A walk through the latent space": slerp and the interpolation noise. "Keep it, share it, draw with
a shared one": the exported generator draws exactly what the EMA generator draws and loads with safetensors
alone; the Hub folder and its model card; the push with HUB_REPO (offline: the upload is replaced inside each
test); loading a shared generator back; the results zip. The end-to-end checks read the shared report run
(conftest.report_run). Each sharing test names the broken code it catches."""

import json
import math
import os
import re
import sys
import types
import zipfile

import numpy as np
import pytest
import torch
import yaml
from conftest import cpu_hardware, notebook_text, state_equal, tiny_gan
from PIL import Image

# ---------------------------------------------------------------------------------------------------------
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


def test_copy_verdict_measures_real_faces_against_their_nearest_other_image_sharp_and_blurred(nb):
    """The two yardsticks are the median distance of the first faces, and of the same blurred, to their nearest
    training image other than their own original; a new face far under them is a suspected copy. Catches a
    yardstick that counts a face's distance to itself (0), or one taken from the wrong set of faces."""
    images = np.random.default_rng(3).integers(0, 256, size=(40, 16, 16, 3), dtype=np.uint8)
    first = torch.from_numpy(images[:8]).permute(0, 3, 1, 2)

    def nearest_other(faces):
        distances = nb.pixel_distances(faces, images)
        distances[torch.arange(len(faces)), torch.arange(len(faces))] = math.inf  # not its own original
        return distances.min(dim=1).values.median().item()

    sharp, soft = nearest_other(first), nearest_other(nb.blurred(first, 1.0))
    far = torch.tensor([sharp, sharp * 1.1])  # new faces as far from the data as real faces are
    verdict = nb.copy_verdict(far, first, images, 1.0)
    assert f"real faces {sharp:.1f} from their nearest other one, blurred real faces {soft:.1f}" in verdict
    assert "no sign of copying" in verdict and sharp > 0 and soft > 0
    copied = nb.copy_verdict(torch.tensor([0.0, sharp]), first, images, 1.0)  # one an exact copy
    assert "1 of 2 new faces lie under half that" in copied


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


# ---------------------------------------------------------------------------------------------------------
# Latent interpolation


# The e2e runs below use TINY's 32 px images; a grid cell is the image plus 2 px padding.
CELL = 32 + 2


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


# ---------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------
# Keep it, share it: the Hub folder, its model card, the push, a shared generator loaded back


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
    grid = nb.image_grid(torch.zeros(4, 3, 32, 32, dtype=torch.uint8))
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
    """Catches: a card that states fixed or wrong figures (images seen, epochs, time, FID and its protocol), or
    the FID of another generator or epoch than the one whose weights it shares."""
    config, _, metrics, folder = shared
    card = (folder / "README.md").read_text()
    assert f"{8 * config.batch_size:,}, batches of {config.batch_size}" in card  # 2 epochs of 4 steps
    assert "| Epochs | 2 |" in card and "| Training time | 1 min 0 s |" in card
    assert "FID 123.5, KID 0.1234 ± 0.0012 after epoch 2" in card and "50 generated faces against 60" in card
    assert "cpu (CPU), fp32" in card
    no_fid = nb.model_card(config, cpu_hardware(nb), {**metrics, "fid": []}, 64, "ema")
    assert "FID and KID were not measured" in no_fid
    # As section 9 records them: the EMA generator's rows, then the raw one's; the card is the EMA weights'
    ema_row = metrics["fid"][0]
    rows = [{**ema_row, "epoch": 1, "fid": 200.0}, ema_row, {**ema_row, "generator": "raw", "fid": 150.0}]
    mixed = nb.model_card(config, cpu_hardware(nb), {**metrics, "fid": rows}, 64, "ema")
    assert "FID 123.5" in mixed and "FID 150.0" not in mixed and "FID 200.0" not in mixed


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


@pytest.mark.parametrize("notebook_host", ["colab", "kaggle"])
def test_push_reads_the_token_from_a_colab_or_kaggle_secret(shared, nb, fake_hub, monkeypatch, notebook_host):
    """A secret named HF_TOKEN (stand-ins for google.colab.userdata and kaggle_secrets), no HF_TOKEN in the
    environment and no login: the push uses the secret. Catches the secret of either host ignored."""
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    secrets = {"HF_TOKEN": "secret-" + FAKE_TOKEN}
    if notebook_host == "colab":
        userdata = types.ModuleType("google.colab.userdata")
        userdata.get = secrets.__getitem__
        monkeypatch.setitem(sys.modules, "google.colab.userdata", userdata)
    else:
        kaggle_secrets = types.ModuleType("kaggle_secrets")
        kaggle_secrets.UserSecretsClient = lambda: types.SimpleNamespace(get_secret=secrets.__getitem__)
        monkeypatch.setitem(sys.modules, "kaggle_secrets", kaggle_secrets)
    assert nb.push_to_hub(shared[3], "someone/anime-dcgan", private=True)
    (_, _, create), (_, _, upload) = fake_hub.calls
    assert create["token"] == upload["token"] == secrets["HF_TOKEN"]


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
    """End to end: the headless run wrote hub/ with its card and the EMA generator's weights (as
    generator.safetensors too), loaded it back, and zipped it. Catches the raw generator exported instead."""
    import zipfile

    from safetensors.torch import load_file

    hub = report_run.run / "hub"
    assert {path.name for path in hub.iterdir()} == HUB_FILES
    # The weights shared are the EMA generator's (which drew the samples), not the raw generator's
    checkpoint = torch.load(report_run.run / "checkpoints" / "checkpoint.pt", weights_only=True)
    for path in (hub / "model.safetensors", report_run.run / "generator.safetensors"):
        shared = load_file(path)
        assert all(
            torch.equal(tensor, checkpoint["ema"][f"module.{name}"]) for name, tensor in shared.items()
        )
        assert not all(torch.equal(tensor, checkpoint["generator"][name]) for name, tensor in shared.items())
    metrics = json.loads((report_run.run / "metrics.json").read_text())
    seen = sum(row["steps"] for row in metrics["epochs"]) * 2  # BATCH_SIZE 2
    assert f"| Images seen | {seen:,}, batches of 2 |" in (hub / "README.md").read_text()
    names = zipfile.ZipFile(report_run.run / "anime_gan_results.zip").namelist()
    assert {f"hub/{name}" for name in HUB_FILES} <= set(names)


# ---------------------------------------------------------------------------------------------------------
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
