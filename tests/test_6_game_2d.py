"""The 2-D game learns: the notebook's own section "Before the faces: the game in two dimensions"
(build_game_2d, train_game_2d and its helpers), which trains two small MLPs with the notebook's train_step,
discriminator_loss and generator_loss, ends with most generated points on the ring of 8 clusters and every
cluster drawn, where the untrained generator (same seed, same noise) puts none on any cluster.

Measured on the 1,000 points the notebook draws from fixed noise, with the notebook's cluster_coverage:
  - near share: the share of points within NEAR_CLUSTER (4 standard deviations) of a cluster's centre,
  - clusters covered: how many of the 8 hold at least a quarter of their fair share of the points,
  - D(x) and D(G(z)): the discriminator's mean probability of "real" for real and generated points; a game
    that is being played ends near 0.5 for both (the map fades to white where the points overlap).

What it catches: wrong BCE targets in discriminator_loss or generator_loss, the variants of
tests/sabotage_check.py: D's targets swapped while G's stays 1 (a: G runs from the data, D(x) 0.00 and
D(G(z)) 1.00), real points labelled 0 like the fakes (b: D calls everything fake, 0.00 and 0.00), G's target
0 (c: G helps D, 1.00 and 0.00). In each the generator ends with no point on any cluster. Swapping all three
targets together is the same game with the logit's sign flipped, and passes (d). `python
tests/sabotage_check.py` runs this file against those edited copies too (ANIME_GAN_NOTEBOOK points at a copy).

Thresholds, calibrated on the real code with GAME_SEED 0-11 (GAME_STEPS 1,000): near share 0.667-0.752, all 8
clusters covered, D(x) 0.51-0.56, D(G(z)) 0.44-0.48. All three targets swapped (d), seeds 0-3: near share
0.705-0.758, 8 clusters, D(x) 0.45-0.46, D(G(z)) 0.53-0.55. Untrained generator, every seed: near share 0,
no cluster. Broken targets (a, b, c), seeds 0-3: near share 0, no cluster, D(x) and D(G(z)) 0.00 or 1.00.

Deterministic (every random draw is seeded); about 5 s on 2 CPU cores."""

import os

import pytest
import torch
from conftest import NOTEBOOK
from notebook_module import load_notebook

MIN_NEAR_SHARE = 0.5  # real code: 0.67 or more; untrained and broken: 0
MIN_CLUSTERS_COVERED = 6  # of 8: room for a run that under-draws a cluster or two; broken code covers none
UNDECIDED = (0.35, 0.65)  # D(x) and D(G(z)) at the end: real code 0.44-0.56; broken 0.00 or 1.00


@pytest.fixture(scope="module")
def notebook():
    """The notebook under test, its definitions loaded as a module: the repository's notebook, or the copy
    named by ANIME_GAN_NOTEBOOK (tests/sabotage_check.py points it at edited copies)."""
    return load_notebook(os.environ.get("ANIME_GAN_NOTEBOOK", str(NOTEBOOK)))


@pytest.fixture(scope="module")
def played(notebook):
    """The notebook's 2-D game with its own settings: (ring centres, the snapshot at step 0, the last one,
    torch's CPU thread count before and after)."""
    nb = notebook
    threads_before = torch.get_num_threads()
    centres = nb.ring_centres(nb.RING_CLUSTERS, nb.RING_RADIUS)
    game = nb.build_game_2d(nb.GAME_LATENT_DIM, nb.GAME_WIDTH, nb.GAME_LR, nb.GAME_SEED)
    snapshots = nb.train_game_2d(
        game,
        centres,
        nb.GAME_STEPS,
        nb.GAME_BATCH_SIZE,
        nb.GAME_LATENT_DIM,
        (nb.GAME_STEPS,),
        nb.GAME_SEED + 1,
    )
    return centres, snapshots[0], snapshots[-1], (threads_before, torch.get_num_threads())


def test_the_yardstick_separates_real_points_from_an_untrained_generator(notebook, played):
    centres, untrained, _, _ = played
    real = notebook.ring_points(1000, centres, torch.Generator().manual_seed(7))
    assert notebook.cluster_coverage(real, centres) == (1.0, len(centres))
    assert notebook.cluster_coverage(untrained.fakes, centres) == (0.0, 0)


def test_the_game_runs_on_the_notebook_step_and_leaves_torch_as_it_was(notebook, played):
    """It trained for GAME_STEPS, stayed finite, and gave back torch's thread count (it trains on one thread)."""
    _, untrained, trained, (threads_before, threads_after) = played
    assert (untrained.step, trained.step) == (0, notebook.GAME_STEPS)
    assert torch.isfinite(trained.fakes).all() and torch.isfinite(trained.belief).all()
    assert threads_after == threads_before


def test_the_generated_points_land_on_the_clusters(notebook, played):
    """Most fakes on a cluster, and far more than the untrained generator's."""
    centres, untrained, trained, _ = played
    near_before, _ = notebook.cluster_coverage(untrained.fakes, centres)
    near_after, _ = notebook.cluster_coverage(trained.fakes, centres)
    assert near_after >= MIN_NEAR_SHARE, (near_before, near_after)
    assert near_after >= near_before + 0.4, (near_before, near_after)


def test_the_generator_covers_most_clusters(notebook, played):
    """No collapse onto one or two clusters."""
    centres, _, trained, _ = played
    _, covered = notebook.cluster_coverage(trained.fakes, centres)
    assert covered >= MIN_CLUSTERS_COVERED, covered


def test_the_discriminator_ends_undecided(played):
    """Where the fakes sit on the real points, D cannot tell them apart: both scores near 0.5."""
    _, _, trained, _ = played
    low, high = UNDECIDED
    assert low < trained.real_score < high and low < trained.fake_score < high, trained
