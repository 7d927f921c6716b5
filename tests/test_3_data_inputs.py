"""Section 3, Data: the download and the images a user brings. The download path (kagglehub is stood in
for: the network is never touched): a failure says to set DATA_DIR, a set DATA_DIR skips it, and Kaggle
credentials never reach any file a run writes. A matrix of bad and unusual inputs: empty folders, folders
without images or with unreadable ones, truncated, transparent, palette, 16-bit, CMYK, WebP and BMP, tiny and
huge images, symlink loops, odd names, duplicates, and what the cache keeps of them. End to end: the whole
notebook on a messy folder (conftest.report_run: formats, modes, sizes, a broken JPEG, hidden files; with
section 4's data table), and the notebook stopping with its own message on an empty DATA_DIR and on fewer
usable images than BATCH_SIZE."""

import json
import os
import re
import shutil
import signal
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import FAKE_KEY, FAKE_USER, run_notebook, write_faces
from PIL import Image


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
    assert data.found == 3 and data.skipped == []  # left out when found, not counted as unreadable files


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
# End to end: a messy folder, and the notebook stopping with its own message


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


def test_notebook_stops_on_empty_data_dir(tmp_path):
    import papermill

    (tmp_path / "empty").mkdir()
    with pytest.raises(papermill.PapermillExecutionError) as raised:
        run_notebook(tmp_path / "out", DATA_DIR=str(tmp_path / "empty"), RUN_DIR=str(tmp_path / "run"))
    assert raised.value.ename == "DataError"
    assert "No image files" in raised.value.evalue and "DATA_DIR" in raised.value.evalue
    assert not (tmp_path / "run" / "checkpoints" / "checkpoint.pt").exists()


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
