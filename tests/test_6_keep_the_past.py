"""Section 6, "The training loop", its cell "Keep the past": a checkpoint kept every KEEP_EVERY epochs;
RESUME_FROM_EPOCH going back to one (continuing exactly as the straight run, setting what came after aside in
abandoned/ and deleting nothing, keeping the best generator unless it came later, not going back twice,
saying which epochs were kept, needing RESUME); and the best generator by FID, exported with its epoch
(in-process, and end to end through the notebook's cells with a stand-in torch-fidelity,
conftest.resume_chain)."""

from pathlib import Path

import pytest
import torch
from conftest import CPU, TINY, run, tiny_config


def test_checkpoints_are_kept_every_keep_every_epochs(nb, default_parameters, tiny_images, tmp_path):
    _, _, paths = run(nb, default_parameters, tiny_images, tmp_path / "run", EPOCHS=4, KEEP_EVERY=2)
    names = sorted(path.name for path in paths.checkpoint.parent.iterdir())
    assert names == ["checkpoint.pt", "epoch_002.pt", "epoch_004.pt"]
    assert nb.read_checkpoint(paths.checkpoint.parent / "epoch_002.pt")["epoch"] == 2
    _, _, only_last = run(nb, default_parameters, tiny_images, tmp_path / "last", EPOCHS=2, KEEP_EVERY=0)
    assert sorted(path.name for path in only_last.checkpoint.parent.iterdir()) == ["checkpoint.pt"]


def test_going_back_continues_exactly_as_the_straight_run_and_deletes_nothing(
    nb, default_parameters, tiny_images, tmp_path
):
    straight, straight_metrics, _ = run(
        nb, default_parameters, tiny_images, tmp_path / "a", EPOCHS=3, KEEP_EVERY=1
    )
    run(nb, default_parameters, tiny_images, tmp_path / "b", EPOCHS=4, KEEP_EVERY=1)  # one epoch further
    abandoned_weights = nb.read_checkpoint(tmp_path / "b" / "checkpoints" / "checkpoint.pt")["generator"]
    back, metrics, paths = run(
        nb, default_parameters, tiny_images, tmp_path / "b", EPOCHS=3, KEEP_EVERY=1, RESUME_FROM_EPOCH=1
    )
    for name in ("generator", "discriminator"):
        for mine, theirs in zip(
            getattr(back, name).state_dict().values(), getattr(straight, name).state_dict().values()
        ):
            assert torch.equal(mine, theirs)
    assert [row["loss_d"] for row in metrics["epochs"]] == [
        row["loss_d"] for row in straight_metrics["epochs"]
    ]
    aside = paths.root / "abandoned" / "after_epoch_001"
    kept = sorted(str(path.relative_to(aside)) for path in aside.rglob("*") if path.is_file())
    assert kept == [
        "checkpoints/checkpoint.pt",
        "checkpoints/epoch_002.pt",
        "checkpoints/epoch_003.pt",
        "checkpoints/epoch_004.pt",
        "metrics.json",
        "samples/epoch_002.png",
        "samples/epoch_003.png",
        "samples/epoch_004.png",
    ]
    assert sorted(path.name for path in paths.samples.iterdir()) == [f"epoch_00{n}.png" for n in (1, 2, 3)]
    assert nb.read_checkpoint(paths.checkpoint)["epoch"] == 3  # epochs 2 and 3 trained again from epoch 1
    old = nb.read_checkpoint(aside / "checkpoints" / "checkpoint.pt")
    assert old["epoch"] == 4 and all(
        torch.equal(old["generator"][k], v) for k, v in abandoned_weights.items()
    )


def test_going_back_leaves_a_users_own_files_named_like_epochs_where_they_are(
    nb, default_parameters, tiny_images, tmp_path
):
    """Only names the run writes (epoch_NNN) are set aside: samples/epoch_best.png, the user's own pick, stays
    (it once stopped the notebook: its name was read as an epoch number), and so does checkpoints/epoch_x.pt."""
    _, _, paths = run(nb, default_parameters, tiny_images, tmp_path / "run", EPOCHS=2, KEEP_EVERY=1)
    own = [paths.samples / "epoch_best.png", paths.checkpoint.parent / "epoch_x.pt"]
    for path in own:
        path.write_bytes(b"mine")
    run(nb, default_parameters, tiny_images, tmp_path / "run", EPOCHS=2, KEEP_EVERY=1, RESUME_FROM_EPOCH=1)
    assert all(path.read_bytes() == b"mine" for path in own)
    aside = paths.root / "abandoned" / "after_epoch_001"
    assert (aside / "samples" / "epoch_002.png").exists() and not (
        aside / "samples" / "epoch_best.png"
    ).exists()
    assert [nb.epoch_in_name(Path(name)) for name in ("epoch_012.png", "epoch_012.pt", "epoch_best.png")] == [
        12,
        12,
        None,
    ]


def test_running_again_with_the_same_resume_from_epoch_does_not_go_back_twice(
    nb, default_parameters, tiny_images, tmp_path, capsys
):
    run(nb, default_parameters, tiny_images, tmp_path / "run", EPOCHS=2, KEEP_EVERY=1)
    run(nb, default_parameters, tiny_images, tmp_path / "run", EPOCHS=2, KEEP_EVERY=1, RESUME_FROM_EPOCH=1)
    _, metrics, paths = run(
        nb, default_parameters, tiny_images, tmp_path / "run", EPOCHS=3, KEEP_EVERY=1, RESUME_FROM_EPOCH=1
    )
    assert "already went back to epoch 1" in capsys.readouterr().out
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2, 3]
    assert [path.name for path in (paths.root / "abandoned").iterdir()] == ["after_epoch_001"]


@pytest.mark.parametrize(
    ("best_epoch", "stays"),
    [(2, True), (3, False), (None, False)],
    ids=["best-then", "best-later", "damaged"],
)
def test_going_back_keeps_the_best_generator_unless_it_came_later(
    nb, default_parameters, tiny_images, tmp_path, best_epoch, stays
):
    """ "Getting worse" advises going back to the best epoch: that epoch's best_generator.* stays in the run,
    where the advice and the results zip find it; one from after the epoch gone back to is set aside with the
    rest, as is one whose epoch cannot be read. Catches every best generator moved to abandoned/ whatever its
    epoch, and a damaged best_generator.json stopping the way back."""
    gan, _, paths = run(nb, default_parameters, tiny_images, tmp_path / "run", EPOCHS=3, KEEP_EVERY=1)
    config = tiny_config(nb, default_parameters, tmp_path / "run", EPOCHS=3)
    nb.export_generator(gan.generator, config, paths.root, "best_generator", {"epoch": best_epoch})
    if best_epoch is None:  # a damaged best_generator.json: set aside with the rest, and no crash
        (paths.root / "best_generator.json").write_text("{")
    run(nb, default_parameters, tiny_images, tmp_path / "run", EPOCHS=3, KEEP_EVERY=1, RESUME_FROM_EPOCH=2)
    aside = paths.root / "abandoned" / "after_epoch_002"
    for name in ("best_generator.safetensors", "best_generator.json"):
        assert (paths.root / name).exists() == stays and (aside / name).exists() != stays


def test_going_back_to_an_epoch_that_was_not_kept_says_which_were(
    nb, default_parameters, tiny_images, tmp_path
):
    run(nb, default_parameters, tiny_images, tmp_path / "run", EPOCHS=2, KEEP_EVERY=2)
    config = tiny_config(nb, default_parameters, tmp_path / "run", EPOCHS=2, RESUME_FROM_EPOCH=1)
    gan = nb.build_gan(config, nb.choose_compute(CPU, "fp32"))
    with pytest.raises(nb.ConfigError, match=r"no checkpoint was kept after epoch 1 \(kept: 2\)"):
        nb.start_or_resume(gan, nb.run_paths(config.run_dir), config, nb.choose_compute(CPU, "fp32"))
    assert (tmp_path / "run" / "checkpoints" / "checkpoint.pt").exists()  # nothing moved


def test_resume_from_epoch_without_resume_is_a_clear_error(nb, make_config):
    with pytest.raises(nb.ConfigError, match="RESUME_FROM_EPOCH needs RESUME = True"):
        make_config(RESUME=False, RESUME_FROM_EPOCH=3)


def test_the_best_generator_by_fid_is_exported_with_its_epoch(nb, make_config, tmp_path):
    config = make_config()
    generator = nb.build_generator(TINY["LATENT_DIM"], TINY["G_WIDTH"], TINY["IMAGE_SIZE"])
    metrics = {"fid": []}

    def measured(epoch, fid):
        nb.record_fid(
            metrics, epoch, "ema", {"fid": fid, "kid": fid / 1000, "kid_std": 0.0, "samples": 10, "real": 10}
        )
        return nb.keep_best_generator(generator, metrics, "ema", epoch, config, tmp_path)

    assert measured(1, 300.0) and measured(2, 250.0)
    best = (tmp_path / "best_generator.safetensors").read_bytes()
    epoch_2_weights = {name: tensor.clone() for name, tensor in generator.state_dict().items()}
    with torch.no_grad():
        generator[0].weight.add_(1.0)  # epoch 3's generator differs
    assert not measured(3, 260.0)  # worse: the best stays epoch 2's
    assert (tmp_path / "best_generator.safetensors").read_bytes() == best
    spec = nb.json.loads((tmp_path / "best_generator.json").read_text())
    assert spec["epoch"] == 2 and spec["fid"] == 250.0 and spec["latent_dim"] == TINY["LATENT_DIM"]
    reloaded, _ = nb.load_generator(tmp_path / "best_generator.safetensors", tmp_path / "best_generator.json")
    assert all(torch.equal(reloaded.state_dict()[name], tensor) for name, tensor in epoch_2_weights.items())


def test_e2e_the_best_generator_by_fid_is_exported_zipped_and_health_recorded(resume_chain):
    """A papermill run with FID every epoch (a stand-in torch-fidelity: a deterministic score) exports the
    generator of the lowest FID with its epoch and score, and the zip carries it."""
    import json
    import zipfile

    run = resume_chain.after["straight"]
    metrics = json.loads((run / "metrics.json").read_text())
    rows = [row for row in metrics["fid"] if row["generator"] == "ema"]
    assert len(rows) == 2
    best = min(rows, key=lambda row: row["fid"])
    spec = json.loads((run / "best_generator.json").read_text())
    assert (spec["epoch"], spec["fid"], spec["generator"]) == (best["epoch"], best["fid"], "ema")
    assert (run / "best_generator.safetensors").stat().st_size > 1000
    with zipfile.ZipFile(run / "anime_gan_results.zip") as bundle:
        names = set(bundle.namelist())
    assert {"best_generator.safetensors", "best_generator.json"} <= names
    assert [row["epoch"] for row in metrics["health"]] == [1, 2]
    assert (
        "Epoch 2/2 took" in resume_chain.texts["straight"]
        and "images/s, training" in resume_chain.texts["straight"]
    )
