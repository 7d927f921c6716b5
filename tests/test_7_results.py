"""Section 7, Results: the progress GIF, one frame per epoch, each labelled with its epoch above the unchanged
grid, the last one lingering; in-process, and in the shared report run (conftest.report_run)."""

import numpy as np
import pytest
import torch
from conftest import notebook_text
from PIL import Image, ImageSequence


def gif_frames(path):
    """Every frame of a GIF as an (H, W, 3) uint8 array, and each frame's duration in ms."""
    with Image.open(path) as gif:
        frames = [
            (np.asarray(frame.convert("RGB")), frame.info.get("duration"))
            for frame in ImageSequence.Iterator(gif)
        ]
    return [pixels for pixels, _ in frames], [duration for _, duration in frames]


@pytest.fixture
def epoch_grids(nb, tmp_path):
    """Three identical per-epoch sample grids, saved as the training loop saves them. Their few colours
    (each channel 0, 127 or 254) fit in a GIF palette, so the frames keep the grid's pixels exactly."""
    images = torch.from_numpy(127 * np.random.default_rng(0).integers(0, 3, (8, 3, 32, 32), dtype=np.uint8))
    grid = nb.image_grid(images, columns=4)
    (tmp_path / "samples").mkdir()
    paths = [tmp_path / "samples" / f"epoch_{epoch:03d}.png" for epoch in (1, 2, 3)]
    for path in paths:
        nb.save_grid(grid, path)
    return paths


def test_progress_gif_has_one_frame_per_epoch(nb, epoch_grids, tmp_path):
    gif_path = tmp_path / "progress.gif"
    assert nb.make_progress_gif(epoch_grids, gif_path) == 3
    with Image.open(gif_path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 3
    _, durations = gif_frames(gif_path)
    assert durations[-1] > durations[0]  # the last frame lingers


def test_progress_gif_frames_are_labelled(nb, epoch_grids, tmp_path):
    gif_path = tmp_path / "progress.gif"
    nb.make_progress_gif(epoch_grids, gif_path)
    frames, _ = gif_frames(gif_path)
    grid = np.asarray(Image.open(epoch_grids[0]).convert("RGB")).astype(int)
    banner = frames[0].shape[0] - grid.shape[0]
    assert banner > 0 and frames[0].shape[1] == grid.shape[1]  # a banner is added on top, the width is kept
    # Below the banner every frame is the grid ...
    for frame in frames:
        assert np.array_equal(frame[banner:], grid)
    # ... and the banner is not the grid's top rows: it holds a light label on a dark background.
    top = frames[0][:banner].astype(int)
    assert np.abs(top - grid[:banner]).mean() > 30
    assert (top.min(axis=2) > 200).sum() >= 10 and (top.max(axis=2) < 50).mean() > 0.5
    # The grids are identical, so only the labels (epoch 1, 2, 3) tell the frames apart.
    assert not np.array_equal(frames[0][:banner], frames[1][:banner])
    assert not np.array_equal(frames[1][:banner], frames[2][:banner])


def test_e2e_progress_gif_has_a_frame_per_epoch(e2e_run):
    run, out = e2e_run
    with Image.open(run / "progress.gif") as gif:
        assert gif.n_frames == 4
    assert "progress.gif: 4 frames" in notebook_text(out)
