"""Section 3, Data: finding, decoding and caching the images. The decoding cache is keyed on what the images
are (so a fresh download, a copied folder or touched files still hit it, and a changed image misses it),
shared by runs and kept outside the run folder; MAX_IMAGES picks a repeatable subset; phone photos with an
EXIF rotation decode upright, and 128 px images decode to 128 px; run folders, hidden files and hidden
folders inside DATA_DIR are never read as data; decoding keeps one copy of the images in memory and stops at
once when asked. The download and the matrix of unusual and broken inputs:
test_3_data_inputs.py."""

import os
import shutil
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import write_faces
from PIL import Image

# ---------------------------------------------------------------------------------------------------------
# The decoding cache


@pytest.fixture
def folder(tmp_path):
    """24 small images in a nested layout, as a downloaded data set has."""
    write_faces(tmp_path / "data" / "images", 16, size=40)
    write_faces(tmp_path / "data" / "images" / "more", 8, size=40, seed=3, fmt="jpg")
    return tmp_path / "data" / "images"


@pytest.fixture
def decode_counter(nb, monkeypatch):
    """Counts how often the notebook decodes images (a cache hit decodes nothing)."""
    calls = []
    real = nb.decode_images

    def counting(files, *args):
        calls.append(len(files))
        return real(files, *args)

    monkeypatch.setattr(nb, "decode_images", counting)
    return calls


def prepare(nb, folder, cache, image_size=32, max_images=0):
    return nb.prepare_dataset(folder, image_size, max_images, 0, cache)


def test_second_run_hits_the_cache(nb, folder, tmp_path, decode_counter):
    first = prepare(nb, folder, tmp_path / "cache")
    second = prepare(nb, folder, tmp_path / "cache")
    assert decode_counter == [24]
    assert first.key == second.key and np.array_equal(first.images, second.images)


def test_touching_every_file_still_hits_the_cache(nb, folder, tmp_path, decode_counter):
    first = prepare(nb, folder, tmp_path / "cache")
    for path in folder.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))  # a fresh unzip gives new modification times
    second = prepare(nb, folder, tmp_path / "cache")
    assert decode_counter == [24] and second.key == first.key


def test_a_copy_of_the_folder_elsewhere_hits_the_cache(nb, folder, tmp_path, decode_counter):
    """A fresh Colab machine downloads the data set again, to a new place: same images, same key."""
    first = prepare(nb, folder, tmp_path / "cache")
    copy = tmp_path / "elsewhere" / "download" / "images"
    shutil.copytree(folder, copy)  # copytree keeps no modification times of its own: copy2 would
    for path in copy.rglob("*"):
        os.utime(path, None)
    second = prepare(nb, copy, tmp_path / "cache")
    assert decode_counter == [24] and second.key == first.key
    assert np.array_equal(first.images, second.images)


def test_changing_one_images_bytes_misses_the_cache(nb, folder, tmp_path, decode_counter):
    """One pixel of a BMP changed (the same size on disk) under the old modification time: a miss. Catches a
    key of names, sizes and times that never reads the bytes."""
    png = sorted(folder.rglob("*.png"))[5]
    victim = png.with_suffix(".bmp")
    Image.open(png).save(victim)
    png.unlink()
    first = prepare(nb, folder, tmp_path / "cache")
    stat = victim.stat()
    pixels = np.asarray(Image.open(victim)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(victim)
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert victim.stat().st_size == stat.st_size  # only the content differs
    second = prepare(nb, folder, tmp_path / "cache")
    assert decode_counter == [24, 24] and second.key != first.key


def test_a_renamed_image_misses_the_cache(nb, folder, tmp_path, decode_counter):
    first = prepare(nb, folder, tmp_path / "cache")
    victim = sorted(folder.rglob("*.png"))[0]
    victim.rename(victim.with_name("renamed.png"))
    assert prepare(nb, folder, tmp_path / "cache").key != first.key
    assert decode_counter == [24, 24]


@pytest.mark.parametrize(("image_size", "max_images"), [(64, 0), (32, 10)])
def test_image_size_and_max_images_are_part_of_the_key(nb, folder, tmp_path, image_size, max_images):
    first = prepare(nb, folder, tmp_path / "cache")
    other = prepare(nb, folder, tmp_path / "cache", image_size=image_size, max_images=max_images)
    assert other.key != first.key and other.images.shape[1] == image_size


def test_decoder_version_is_part_of_the_key(nb, folder, tmp_path, monkeypatch, decode_counter):
    first = prepare(nb, folder, tmp_path / "cache")
    monkeypatch.setattr(nb, "DECODER_VERSION", nb.DECODER_VERSION + 1)
    assert prepare(nb, folder, tmp_path / "cache").key != first.key
    assert decode_counter == [24, 24]


def test_cache_is_shared_by_runs_and_not_copied_into_run_folders(resume_chain):
    """conftest.resume_chain: the first run decodes into CACHE_DIR; the resumed run and a run in another
    RUN_DIR load that array, and neither writes it again nor copies it into its run folder."""
    texts, files = resume_chain.texts, resume_chain.cache_files
    assert "decoding" in texts["first"]  # the positive control: a decoding pass shows its progress bar ...
    assert "decoding" not in texts["resumed"] and "decoding" not in texts["straight"]  # ... a cache hit none
    assert len([name for name in files["first"] if name.endswith(".npy")]) == 1
    assert files["resumed"] == files["straight"] == files["first"]  # the same files, never rewritten
    for run in resume_chain.after.values():
        assert not list(run.rglob("*.npy")), list(run.rglob("*.npy"))


# ---------------------------------------------------------------------------------------------------------
# MAX_IMAGES and IMAGE_SIZE


def test_max_images_caps_the_data_with_a_repeatable_choice(nb, tmp_path):
    """MAX_IMAGES 10 of 24 files: 10 images, chosen by SEED (the same ones again, other ones for another
    seed). Catches prepare_dataset decoding every file whatever MAX_IMAGES says."""
    write_faces(tmp_path / "images", 24, seed=7)
    whole = nb.prepare_dataset(tmp_path / "images", 32, 0, 0, tmp_path / "cache")
    capped = nb.prepare_dataset(tmp_path / "images", 32, 10, 0, tmp_path / "cache")
    again = nb.prepare_dataset(tmp_path / "images", 32, 10, 0, tmp_path / "cache_2")
    other = nb.prepare_dataset(tmp_path / "images", 32, 10, 1, tmp_path / "cache_3")
    assert len(whole.images) == 24 and len(capped.images) == len(other.images) == 10
    assert whole.found == capped.found == 24  # all files are counted, 10 are used
    rows = {image.tobytes() for image in whole.images}
    assert {image.tobytes() for image in capped.images} <= rows  # a subset of the data, not something else
    assert (again.images == capped.images).all() and not (other.images == capped.images).all()


def test_128_px_images_decode_to_128_px(nb, tmp_path):
    write_faces(tmp_path / "images", 3, size=150)
    faces = nb.prepare_dataset(tmp_path / "images", 128, 0, 0, tmp_path / "cache")
    assert faces.images.shape == (3, 128, 128, 3)


# ---------------------------------------------------------------------------------------------------------
# Decoding: memory, and stopping


def slow_fake_decoder(calls):
    """A stand-in for load_image: after 2 ms, a distinct image_size² image per file (seeded by its number)."""

    def load(path, image_size):
        calls.append(path)
        time.sleep(0.002)
        random_source = np.random.default_rng(int(Path(path).stem.split("_")[-1]))
        return random_source.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8), (90, 90)

    return load


def test_decoding_keeps_one_copy_of_the_images(nb, tmp_path, monkeypatch):
    """While decoding, each image lives in the data set's array and is let go of elsewhere: the peak memory
    stays well under twice the array (63,000 faces at 128 px are 3 GB). Catches the list of pending results
    keeping every decoded image alive until the last file is read."""
    calls = []
    monkeypatch.setattr(nb, "load_image", slow_fake_decoder(calls))
    monkeypatch.setattr(nb.os, "cpu_count", lambda: 2)  # two decoding threads, whatever the machine has
    files = [tmp_path / f"face_{index:03d}.png" for index in range(400)]
    tracemalloc.start()
    try:
        images, _, _ = nb.decode_images(files, 64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(images) == len(calls) == 400
    assert peak < 1.5 * images.nbytes, f"peak {peak:,} bytes for {images.nbytes:,} bytes of images"


def test_stopping_while_decoding_drops_the_files_still_queued(nb, tmp_path, monkeypatch):
    """Stop (a KeyboardInterrupt in the progress loop) after 5 of 400 files: decoding ends at once, with the
    queued files never read. Catches a thread pool that finishes every queued file before the stop takes
    effect (minutes for 63,000 faces)."""
    calls = []
    monkeypatch.setattr(nb, "load_image", slow_fake_decoder(calls))

    def stopped_after_five(iterable, **options):
        for count, item in enumerate(iterable):
            if count == 5:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(nb, "progress", stopped_after_five)
    monkeypatch.setattr(nb.os, "cpu_count", lambda: 2)  # two decoding threads, whatever the machine has
    files = [tmp_path / f"face_{index:03d}.png" for index in range(400)]
    with pytest.raises(KeyboardInterrupt):
        nb.decode_images(files, 32)
    assert len(calls) < 100, f"{len(calls)} of 400 files were decoded after the stop"


# ---------------------------------------------------------------------------------------------------------
# EXIF orientation


def upright_test_image():
    """A 60×40 (wide) image: red left half, blue right half, a green band along the top."""
    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    pixels[:, :30] = (220, 30, 30)
    pixels[:, 30:] = (30, 30, 220)
    pixels[:8] = (30, 200, 30)
    return Image.fromarray(pixels)


@pytest.mark.parametrize(
    ("orientation", "stored_as"),
    [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)],
    ids=["upside-down", "rotated-cw", "rotated-ccw"],
)
def test_exif_rotated_jpeg_decodes_upright(nb, tmp_path, orientation, stored_as):
    """A camera stores the pixels as the sensor saw them and the way to turn them upright in EXIF tag 274.
    Decoding must apply it: the result equals the upright picture, not the stored one."""
    upright = upright_test_image()
    stored = upright.transpose(stored_as)  # what the sensor recorded ...
    exif = Image.Exif()
    exif[274] = orientation  # ... and how to turn it back upright
    path = tmp_path / "photo.jpg"
    stored.save(path, exif=exif, quality=95)

    decoded, original_size = nb.load_image(path, 32)
    expected = np.asarray(nb.ImageOps.fit(upright, (32, 32), Image.Resampling.LANCZOS)).astype(int)
    wrong = np.asarray(nb.ImageOps.fit(stored, (32, 32), Image.Resampling.LANCZOS)).astype(int)
    error, error_if_ignored = np.abs(decoded - expected).mean(), np.abs(decoded - wrong).mean()
    assert error < 8 < error_if_ignored, (error, error_if_ignored)
    assert sorted(original_size) == [40, 60]


def test_exif_rotation_reaches_the_training_array(nb, tmp_path):
    """Through prepare_dataset too: the decoded face has its green band at the top."""
    upright = upright_test_image().transpose(Image.Transpose.ROTATE_90)  # stored sideways ...
    exif = Image.Exif()
    exif[274] = 6  # ... to be turned 90° clockwise
    write_faces(tmp_path / "photos", 3, size=40)
    upright.save(tmp_path / "photos" / "phone.jpg", exif=exif, quality=95)
    faces = nb.prepare_dataset(tmp_path / "photos", 32, 0, 0, tmp_path)
    green_rows = [np.argmax(face[:, :, 1].mean(axis=1)) for face in faces.images]
    assert any(row < 8 and face[row, :, 1].mean() > 150 for row, face in zip(green_rows, faces.images))


# ---------------------------------------------------------------------------------------------------------
# What is never read as data


def test_run_folder_inside_data_dir_is_never_read_as_data(nb, tmp_path):
    """RUN_DIR may lie inside DATA_DIR: the sample grids of earlier runs are never read as training data."""
    write_faces(tmp_path / "images", 4)
    run = tmp_path / "images" / "runs" / "anime_gan"
    write_faces(run / "samples", 3)  # grids of an earlier run, with image extensions
    files = nb.find_image_files(tmp_path / "images", skip=run)
    assert len(files) == 4 and not any(Path(run) in path.parents for path in files)


def test_other_run_folders_inside_data_dir_are_never_read_as_data(nb, tmp_path):
    """An earlier run beside the current one (DATA_DIR=faces, RUN_DIR=faces/run2 after faces/run1): run1's grids,
    plots and generated faces are not faces either. A plain sub-folder called samples/ is still read."""
    write_faces(tmp_path / "faces", 4)
    earlier = tmp_path / "faces" / "run1"
    for part in ("samples", "plots", "checkpoints"):
        write_faces(earlier / part, 2)
    write_faces(earlier, 1)  # generated.png and the like, at the run folder's top
    write_faces(tmp_path / "faces" / "more" / "samples", 3)  # a user's own folder that happens to be named so
    files = nb.find_image_files(tmp_path / "faces", skip=tmp_path / "faces" / "run2")
    assert len(files) == 7 and not any(earlier in path.parents for path in files)


def test_hidden_files_and_folders_are_never_read(nb, tmp_path):
    """Thumbnail caches (.thumbnails/), macOS's "._" companions of every copied file (not images at all),
    and hidden images: none is found, so none is decoded, skipped as broken, or counted. Catches either of
    find_image_files's two filters removed (hidden folders, hidden files)."""
    folder = tmp_path / "images"
    write_faces(folder, 3)
    write_faces(folder / ".thumbnails", 2, seed=1)
    write_faces(folder / "sub" / ".git" / "objects", 1, seed=2)
    write_faces(folder / "sub", 2, seed=3)[0].rename(folder / "sub" / ".hidden.png")
    (folder / "._face_0000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble metadata")
    files = nb.find_image_files(folder)
    assert [path.relative_to(folder).as_posix() for path in files] == [
        "face_0000.png",
        "face_0001.png",
        "face_0002.png",
        "sub/face_0001.png",
    ]
    data = nb.prepare_dataset(folder, 32, 0, 0, tmp_path / "cache")
    assert data.found == 4 and data.skipped == [] and len(data.images) == 4


def test_data_dir_that_is_itself_shaped_like_a_run_folder_is_read(nb, tmp_path):
    """Only run folders *below* DATA_DIR are skipped: pointing DATA_DIR at one on purpose finds its images."""
    for part in ("samples", "plots", "checkpoints"):
        write_faces(tmp_path / "folder" / part, 2)
    assert len(nb.find_image_files(tmp_path / "folder")) == 6
