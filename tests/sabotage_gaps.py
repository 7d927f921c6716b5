"""Check that the tests written for issue 20's gaps can fail: for each variant, break the code a test guards
in a copy of the project (notebook, README, setup_and_run.sh, .ci/run or the tests' own set-up), run that
test on the copy, and expect it to fail. A control row first runs every listed test on an unbroken copy,
where all must pass. A variant is OK only when every test it names fails (a parametrized one: in at least
one of its cases).

Each replacement is exact and must occur exactly once (in the notebook: in one cell's source, code or
markdown), so an edited project stops this script loudly instead of testing the wrong thing. The copy holds
the working tree's files (tracked and untracked, not ignored) with ../shared linked beside it, as on a
developer machine.

    python tests/sabotage_gaps.py              # every variant (the end-to-end ones run papermill)
    python tests/sabotage_gaps.py adam hidden  # some of them; --list names them all

tests/sabotage_check.py does the same for the learning test and the BCE targets. Not collected by pytest."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NB = "anime_gan.ipynb"
SETUP, PARAMETERS = "tests/test_1_setup.py", "tests/test_2_parameters.py"
PRECISION = "tests/test_2_device_and_precision.py"
DATA, DATA_INPUTS = "tests/test_3_data.py", "tests/test_3_data_inputs.py"
STEP, EPOCH = "tests/test_6_training_step.py", "tests/test_6_epoch.py"
RESUME, CHECKPOINTS = "tests/test_6_resume.py", "tests/test_6_checkpoints.py"
INTERRUPTIONS, KEEP = "tests/test_6_interruptions.py", "tests/test_6_keep_the_past.py"
HEALTH = "tests/test_6_health.py"
SHARE, EVALUATE = "tests/test_8_generate_and_share.py", "tests/test_9_evaluate.py"
LAYOUT = "tests/test_notebook_layout.py"
# -rf: a FAILED line per failed test, to check that each named test failed
PYTEST_OPTIONS = ["-q", "-rf", "-p", "no:importnb", "-p", "no:cacheprovider"]

# name: (the broken code, file, [(old, new)], tests that must fail)
VARIANTS = {
    "adam": (
        "both optimizers built without LR and BETA1 (Adam's defaults 0.001, 0.9)",
        NB,
        [
            (
                'adam = dict(lr=config.lr, betas=(config.beta1, 0.999), fused=compute.device.type == "cuda")',
                'adam = dict(fused=compute.device.type == "cuda")',
            )
        ],
        [
            f"{STEP}::test_both_optimizers_use_lr_and_beta1",
            f"{STEP}::test_the_first_step_moves_each_weight_by_lr",
        ],
    ),
    "real-target-0": (
        "D's real target 0 (sabotage_check.py's variant b)",
        NB,
        [("torch.ones_like(real_logits)", "torch.zeros_like(real_logits)")],
        [f"{STEP}::test_loss_targets_are_real_1_fake_0_and_generator_1"],
    ),
    "g-target-0": (
        "G's target 0 (variant c)",
        NB,
        [
            (
                "return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))",
                "return F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))",
            )
        ],
        [f"{STEP}::test_loss_targets_are_real_1_fake_0_and_generator_1"],
    ),
    "at-least-one": (
        "LOG_EVERY and SAMPLE_COUNT dropped from AT_LEAST_ONE (0 accepted)",
        NB,
        [('"d_width", "log_every", "sample_count", "generate_count")', '"d_width", "generate_count")')],
        [f"{PARAMETERS}::test_counts_and_sizes_must_be_at_least_one"],
    ),
    "hidden-folders": (
        "hidden folders walked into",
        NB,
        [('dirs[:] = [name for name in dirs if not name.startswith(".")]', "dirs[:] = list(dirs)")],
        [f"{DATA}::test_hidden_files_and_folders_are_never_read"],
    ),
    "hidden-files": (
        "hidden files (and macOS's ._ companions) read",
        NB,
        [('for name in files if not name.startswith(".")]', "for name in files]")],
        [f"{DATA}::test_hidden_files_and_folders_are_never_read"],
    ),
    "broken-links": (
        "broken and looping file links found (then skipped as unreadable) instead of left out",
        NB,
        [(" and path.is_file()]", "]")],
        [f"{DATA_INPUTS}::test_broken_and_looping_file_symlinks_are_skipped"],
    ),
    "decode-holds-all": (
        "every decoded image kept alive by the list of pending results until the last file is read",
        NB,
        [("decoded, decoding[index] = decoding[index], None", "decoded = decoding[index]")],
        [f"{DATA}::test_decoding_keeps_one_copy_of_the_images"],
    ),
    "decode-ignores-stop": (
        "a stop while decoding waits for every queued file",
        NB,
        [("pool.shutdown(cancel_futures=True)", "pool.shutdown()")],
        [f"{DATA}::test_stopping_while_decoding_drops_the_files_still_queued"],
    ),
    "scaler-kept": (
        "the rewind keeps a gradient scaler stopped between its step() and update()",
        NB,
        [("    gan.scaler = torch.amp.GradScaler(device_type, enabled=gan.scaler.is_enabled())\n", "")],
        [
            f"{INTERRUPTIONS}::test_a_stop_between_the_fp16_scalers_step_and_update_leaves_the_next_run_working"
        ],
    ),
    "draw-left-in-eval": (
        "a stop while drawing leaves the generator in eval mode",
        NB,
        [
            (
                "    try:\n        images = generator.eval().forward(noise)\n    finally:",
                "    images = generator.eval().forward(noise)\n    if True:",
            )
        ],
        [f"{INTERRUPTIONS}::test_a_stop_while_drawing_leaves_the_generator_training"],
    ),
    "best-always-aside": (
        "going back sets every best generator aside, even the one of the epoch gone back to",
        NB,
        [("if best_epoch > epoch else []", "if True else []")],
        [f"{KEEP}::test_going_back_keeps_the_best_generator_unless_it_came_later"],
    ),
    "go-back-to-latest": (
        "going back writes the latest checkpoint back instead of the kept one",
        NB,
        [("    state = read_checkpoint(kept)\n", "    state = read_checkpoint(paths.checkpoint)\n")],
        [f"{KEEP}::test_going_back_continues_exactly_as_the_straight_run_and_deletes_nothing"],
    ),
    "best-every-epoch": (
        "the generator exported as the best one after every FID, better or not",
        NB,
        [
            (
                '    if best["epoch"] == epoch:\n        export_generator',
                "    if True:\n        export_generator",
            )
        ],
        [f"{KEEP}::test_the_best_generator_by_fid_is_exported_with_its_epoch"],
    ),
    "share-raw": (
        "the raw generator exported and shared instead of the EMA one that drew the samples (end to end)",
        NB,
        [
            (
                "export_generator(gan.drawing_generator, config, paths.root)",
                "export_generator(gan.generator, config, paths.root)",
            ),
            (
                'write_hub_folder(paths.root / "hub", gan.drawing_generator,',
                'write_hub_folder(paths.root / "hub", gan.generator,',
            ),
        ],
        [f"{SHARE}::test_every_run_writes_the_hub_folder_and_zips_it"],
    ),
    "card-any-fid": (
        "the model card states the last FID row of any generator",
        NB,
        [
            (
                'if scores := [row for row in metrics["fid"] if row["generator"] == generator_name]:',
                'if scores := metrics["fid"]:',
            )
        ],
        [f"{SHARE}::test_card_figures_are_the_runs_own"],
    ),
    "advice-unprinted": (
        "an unhealthy verdict's advice never printed after its epoch",
        NB,
        [('+ ("" if verdict in CALM else f" {advice}"))', ")")],
        [f"{HEALTH}::test_an_unhealthy_verdict_is_printed_and_red_and_a_healthy_one_stays_quiet"],
    ),
    "advice-colours": (
        "the verdict's colours swapped: healthy in red, unhealthy in green",
        NB,
        [
            (
                'color="tab:green" if verdict in CALM else "tab:red"',
                'color="tab:red" if verdict in CALM else "tab:green"',
            )
        ],
        [f"{HEALTH}::test_an_unhealthy_verdict_is_printed_and_red_and_a_healthy_one_stays_quiet"],
    ),
    "fid-trend-of-two": (
        "getting worse called on two FID measurements",
        NB,
        [('"getting worse": len(fids) >= 3 and ', '"getting worse": len(fids) >= 2 and ')],
        [f"{HEALTH}::test_rising_fid_is_getting_worse_and_a_wobble_is_not"],
    ),
    "cache-key-no-bytes": (
        "the cache key of names and sizes only, never the images' bytes",
        NB,
        [('{path.stat().st_size}|".encode() + content)', '{path.stat().st_size}|".encode())')],
        [f"{DATA}::test_changing_one_images_bytes_misses_the_cache"],
    ),
    "no-autocast": (
        "train_step's first forward passes without autocast (bf16 silently trains in fp32 there)",
        NB,
        [
            (
                "    with compute.autocast():\n        fake = gan.generator(noise)",
                "    with nullcontext():\n        fake = gan.generator(noise)",
            )
        ],
        [f"{STEP}::test_the_step_computes_in_the_chosen_number_format"],
    ),
    "precision-vs-asked": (
        "a resume compares what ran with the PRECISION asked for (every 'auto' resume claims a change)",
        NB,
        [('if ran["precision"] != compute.precision:', 'if ran["precision"] != config.precision:')],
        [f"{PRECISION}::test_a_resumed_run_says_its_precision_changed"],
    ),
    "stale-networks": (
        "the training cell takes networks built for other parameters",
        NB,
        [("    check_networks_fit(gan, config)\n    if config.resume", "    if config.resume")],
        [f"{INTERRUPTIONS}::test_networks_older_than_the_parameters_stop_the_training_cell"],
    ),
    "stale-images": (
        "the keeper takes images decoded at another IMAGE_SIZE",
        NB,
        [("            images.shape[1] == config.image_size,\n", "            True,\n")],
        [f"{INTERRUPTIONS}::test_images_older_than_the_parameters_stop_the_training_cell"],
    ),
    "no-train-longer-hint": (
        "a finished run run again says nothing about how to train longer",
        NB,
        [('print(f"All {config.epochs} epochs are trained.', 'print(f"All {config.epochs} epochs are done.')],
        [f"{INTERRUPTIONS}::test_running_the_training_cell_twice_never_repeats_an_epoch"],
    ),
    "kaggle-secret-ignored": (
        "a Kaggle secret HF_TOKEN ignored",
        NB,
        [
            (
                'importlib.import_module("kaggle_secrets").UserSecretsClient()',
                'importlib.import_module("kaggle_secretz").UserSecretsClient()',
            )
        ],
        [f"{SHARE}::test_push_reads_the_token_from_a_colab_or_kaggle_secret"],
    ),
    "resume-restarts": (
        "a resumed run trains every epoch again from the first (end to end)",
        NB,
        [
            (
                'self.first_epoch = metrics["epochs"][-1]["epoch"] + 1 if metrics["epochs"] else 1',
                "self.first_epoch = 1",
            )
        ],
        [f"{RESUME}::test_resume_continues_instead_of_restarting"],
    ),
    "yardstick-counts-itself": (
        "the copy check's yardstick measures each real face against itself (distance 0)",
        NB,
        [
            (
                "nearest_other = torch.where(is_own, distances[:, 1], distances[:, 0])",
                "nearest_other = distances[:, 0]",
            )
        ],
        [
            f"{SHARE}::test_copy_verdict_measures_real_faces_against_their_nearest_other_image_sharp_and_blurred"
        ],
    ),
    "seed-order": (
        "the epoch order seeded by the epoch alone",
        NB,
        [
            (
                "generator=torch.Generator().manual_seed(seed * 100_003 + epoch)",
                "generator=torch.Generator().manual_seed(epoch)",
            )
        ],
        [f"{EPOCH}::test_seed_changes_the_epoch_order_and_the_random_draws"],
    ),
    "max-images": (
        "MAX_IMAGES ignored: every file decoded",
        NB,
        [("files = choose_files(all_files, max_images, seed)", "files = all_files")],
        [f"{DATA}::test_max_images_caps_the_data_with_a_repeatable_choice"],
    ),
    "compile-wrapper": (
        "COMPILE wraps the networks (torch.compile), so their state_dict keys gain _orig_mod.",
        NB,
        [
            (
                "generator.compile()\n        discriminator.compile()",
                "generator, discriminator = torch.compile(generator), torch.compile(discriminator)",
            )
        ],
        [f"{CHECKPOINTS}::test_a_compiled_run_and_a_plain_one_resume_from_each_other"],
    ),
    "generate-remainder": (
        "generate_images drops the last, partial batch",
        NB,
        [
            (
                "for batch in noise.split(batch_size)]",
                "for batch in noise.split(batch_size)[: count // batch_size]]",
            )
        ],
        [
            f"{EVALUATE}::test_generate_images_across_its_500_image_batches",
            f"{EVALUATE}::test_measure_fid_success_path",
        ],
    ),
    "record-fid-appends": (
        "record_fid appends a second row for the same epoch and generator",
        NB,
        [
            (
                'rows = [row for row in metrics["fid"] if (row["epoch"], row["generator"]) != (epoch, generator_name)]',
                'rows = list(metrics["fid"])',
            )
        ],
        [f"{EVALUATE}::test_record_fid_replaces_the_row_of_the_same_epoch_and_generator"],
    ),
    "fid-every-epoch": (
        "FID_EVERY ignored inside train(): measured after every epoch",
        NB,
        [
            (
                "if self.fid_probe and config.fid_every and epoch % config.fid_every == 0 and epoch < config.epochs:",
                "if self.fid_probe and epoch < config.epochs:",
            )
        ],
        [f"{EVALUATE}::test_fid_every_inside_train"],
    ),
    "save-metrics-json-only": (
        "save_metrics leaves the checkpoint's metrics behind",
        NB,
        [("    if paths.checkpoint.exists():  # e.g.", "    if False:  # e.g.")],
        [f"{EVALUATE}::test_save_metrics_writes_the_json_and_the_checkpoint"],
    ),
    "bf16-probe-direct": (
        "the private bf16 probes called directly (AttributeError on an older torch)",
        NB,
        [
            (
                "getattr(torch.cpu, probe, lambda: False)()",
                "getattr(torch.cpu, probe)()",
            )
        ],
        [f"{PRECISION}::test_a_torch_without_the_bf16_probes_trains_in_fp32"],
    ),
    "live-view-every-epoch": (
        "headless, a picture after every epoch",
        NB,
        [("elif epoch is None or epoch & (epoch - 1) == 0 or epoch == self.last_epoch:", "else:")],
        [f"{LAYOUT}::test_live_view_updates_one_picture_live_and_shows_a_few_headless"],
    ),
    "no-batch-check": (
        "no check for fewer usable images than BATCH_SIZE (end to end)",
        NB,
        [("if len(images) < batch_size:", "if False:")],
        [f"{DATA_INPUTS}::test_fewer_usable_images_than_batch_size_stop_before_training"],
    ),
    "decoding-label": (
        'the decoding bar renamed: `"decoding" not in text` alone would still pass (end to end)',
        NB,
        [('desc="decoding"', 'desc="reading"')],
        [f"{DATA}::test_cache_is_shared_by_runs_and_not_copied_into_run_folders"],
    ),
    "resume-new-noise": (
        "a resumed run draws new fixed noise (end to end)",
        NB,
        [
            (
                'return state["epoch"], state["metrics"], state["fixed_noise"].to(compute.device)',
                'return state["epoch"], state["metrics"], torch.randn_like(state["fixed_noise"]).to(compute.device)',
            )
        ],
        [f"{RESUME}::test_resumed_notebook_run_is_bit_identical_to_a_straight_one"],
    ),
    "ci-skips": (
        ".ci/run without its ../shared check",
        ".ci/run",
        [('if [ ! -e "$needed" ]; then', "if false; then")],
        [f"{SETUP}::test_ci_without_shared_fails_before_installing_anything"],
    ),
    "readme-bare-pip": (
        "setup_and_run.sh (the README's first command) installs with a bare pip, not .venv's python",
        "setup_and_run.sh",
        [
            (
                "  .venv/bin/python -m pip install -r requirements-dev.txt\n",
                "  pip install -r requirements-dev.txt\n",
            )
        ],
        [
            f"{SETUP}::test_readme_commands_make_and_use_a_virtual_environment",
            f"{SETUP}::test_ci_runs_the_readme_commands",
        ],
    ),
    "needs-shared-skips-on-ci": (
        "tests that need ../shared skip on CI too",
        "tests/conftest.py",
        [("        if running_on_ci():\n", "        if False:\n")],
        [f"{SETUP}::test_tests_that_need_shared_fail_on_ci_and_skip_elsewhere"],
    ),
    "widgets-visible": (
        "ipywidgets not hidden from the kernel",
        "tests/conftest.py",
        [
            (
                '(("JUPYTER_PATH", folder / "jupyter"), ("PYTHONPATH", folder / "hide"))',
                '(("JUPYTER_PATH", folder / "jupyter"),)',
            )
        ],
        [f"{SETUP}::test_every_kernel_is_this_interpreter_without_ipywidgets"],
    ),
    "kernel-unpinned": (
        "the machine's own python3 kernelspec used",
        "tests/conftest.py",
        [
            (
                '(("JUPYTER_PATH", folder / "jupyter"), ("PYTHONPATH", folder / "hide"))',
                '(("PYTHONPATH", folder / "hide"),)',
            )
        ],
        [f"{SETUP}::test_every_kernel_is_this_interpreter_without_ipywidgets"],
    ),
    "game-always": (
        "PLAY_GAME_2D False still plays the 2-D game (end to end)",
        NB,
        [("if config.play_game_2d:", "if True:")],
        [f"{RESUME}::test_resume_continues_instead_of_restarting"],
    ),
    "game-never": (
        "PLAY_GAME_2D True skips the 2-D game (end to end)",
        NB,
        [("if config.play_game_2d:", "if False:")],
        [f"{DATA_INPUTS}::test_end_to_end_on_messy_folder"],
    ),
    "tests-ungrouped": (
        "the tests not put in groups: with -n 2 a run several files read is made in each process",
        "tests/conftest.py",
        [("        item.add_marker(pytest.mark.xdist_group(group_of(item)))", "        pass")],
        [f"{SETUP}::test_each_slow_group_is_a_fixture_and_the_slow_groups_come_first"],
    ),
    "dist-not-grouped": (
        "-n 2 without --dist left to xdist's default (load): the groups ignored, shared runs made twice",
        "tests/conftest.py",
        [('config.option.dist, config.option.loadscopereorder = "loadgroup", False', "pass")],
        [f"{SETUP}::test_with_n_and_no_dist_the_groups_decide_and_plain_pytest_is_left_alone"],
    ),
    "readme-one-process": (
        "the README's test command in one process (1.5 times as long on 2 cores)",
        "README.md",
        [(".venv/bin/python -m pytest -q -n 2\n```", ".venv/bin/python -m pytest -q\n```")],
        [f"{SETUP}::test_readme_commands_make_and_use_a_virtual_environment"],
    ),
    "no-kernels-check": (
        "gpu_kernels_missing finds nothing: a P100 is trusted until its first kernel fails",
        NB,
        [("    if runs or not built:\n        return None", "    if True:\n        return None")],
        [f"{PRECISION}::test_a_gpu_the_build_has_no_kernels_for_is_found"],
    ),
    "div-scaling": (
        "to_model_range divides by 127.5 (a CPU batch then differs from a GPU's in the last bit)",
        NB,
        [("return images.float().mul_(1 / 127.5).sub_(1.0)", "return images.float().div_(127.5).sub_(1.0)")],
        [f"{PRECISION}::test_pixels_are_scaled_by_one_multiplication"],
    ),
    "tf32-new-api-only": (
        "configure_cuda sets only torch 2.9's cudnn.conv.fp32_precision, not the legacy allow_tf32",
        NB,
        [
            (
                '    torch.backends.cudnn.allow_tf32 = precision != "fp32"',
                '    torch.backends.cudnn.conv.fp32_precision = "tf32" if precision != "fp32" else "ieee"',
            )
        ],
        [f"{PRECISION}::test_fp32_switches_tf32_off_and_the_old_flag_stays_readable"],
    ),
    "fp16-on-pascal": (
        "auto precision picks fp16 from compute capability 6.0 (Pascal: no tensor cores)",
        NB,
        [
            (
                'else "fp16" if capability >= (7, 0) else "fp32"',
                'else "fp16" if capability >= (6, 0) else "fp32"',
            )
        ],
        [f"{PRECISION}::test_precision_and_layout_follow_the_hardware"],
    ),
    "channels-last-for-fp32-cuda": (
        "channels-last on CUDA tensor cores for every precision, fp32 too",
        NB,
        [
            (
                'device.type == "cpu" or (tensor_cores and precision != "fp32"))',
                'device.type == "cpu" or tensor_cores)',
            )
        ],
        [f"{PRECISION}::test_precision_and_layout_follow_the_hardware"],
    ),
    "copy-search-on-cpu": (
        "pixel_distances copies the faces to the CPU instead of searching where they are",
        NB,
        [("    images = torch.as_tensor(images)\n", "    images = torch.as_tensor(images).cpu()\n")],
        [f"{PRECISION}::test_the_copy_search_runs_where_the_faces_are"],
    ),
    "ema-averages-counter": (
        "update_ema averages batch norm's integer counter (as AveragedModel does) instead of copying it",
        NB,
        [
            (
                "        torch._foreach_copy_([mine for mine, _ in copied], [theirs for _, theirs in copied])\n",
                "        for mine, theirs in copied:  # step 0: copied; after it: integers averaged\n"
                "            kept = min(decay, (1 + step) / (10 + step))\n"
                "            mine.copy_(theirs if step == 0 else mine * kept + theirs * (1 - kept))\n",
            )
        ],
        [f"{PRECISION}::test_update_ema_matches_averaged_model_and_copies_the_counter"],
    ),
    "requested-precision": (
        "restore_checkpoint compares the requested PRECISION ('auto' both times), not what ran",
        NB,
        [
            (
                'if ran["precision"] != compute.precision:',
                'if state["config"]["precision"] != config.precision:',
            )
        ],
        [f"{PRECISION}::test_a_resumed_run_says_its_precision_changed"],
    ),
    "hub-public": (
        "push_to_hub creates a public repository whatever HUB_PUBLIC says",
        NB,
        [
            (
                "create_repo(repo_id, private=private, exist_ok=True, token=token)",
                "create_repo(repo_id, private=False, exist_ok=True, token=token)",
            )
        ],
        [f"{SHARE}::test_push_sends_the_folder_privately_with_the_token"],
    ),
    "token-printed": (
        "the push's success line prints the token",
        NB,
        [
            (
                "print(f\"Pushed to {url} ({'private' if private else 'public'}).\")",
                "print(f\"Pushed to {url} ({'private' if private else 'public'}) with the token {token}.\")",
            )
        ],
        [f"{SHARE}::test_push_sends_the_folder_privately_with_the_token"],
    ),
    "push-raises": (
        "a failed push re-raises after its sentence: the notebook stops",
        NB,
        [
            (
                '            advice = f"{type(error).__name__}: {PUSH_ADVICE.get(status, PUSH_ADVICE[None])}"\n',
                "            raise\n",
            )
        ],
        [f"{SHARE}::test_failed_push_keeps_the_folder_and_says_what_to_do"],
    ),
    "card-images-seen": (
        "the model card's 'Images seen' counts steps, not images",
        NB,
        [
            (
                '{sum(row["steps"] for row in epochs) * config.batch_size:,}',
                '{sum(row["steps"] for row in epochs):,}',
            )
        ],
        [f"{SHARE}::test_card_figures_are_the_runs_own"],
    ),
    "own-images-license": (
        "the model card claims the Kaggle set's terms for any images, DATA_DIR's too",
        NB,
        [("    if config.data_dir:  # the user's own images", "    if False:  # the user's own images")],
        [f"{SHARE}::test_card_for_your_own_images_claims_no_license"],
    ),
    "fold-the-step": (
        "D's backward pass moved out of train_step into a folded helper cell (it still trains the same)",
        NB,
        [
            (
                "    gan.scaler.scale(loss_d).backward()  # scale(): fp16 only",
                "    scaled_backward(gan.scaler, loss_d)  # scale(): fp16 only",
            ),
            (
                "@contextmanager\ndef frozen(network):\n",
                "def scaled_backward(scaler, loss):\n"
                '    """The backward pass of the (fp16: scaled) loss."""\n'
                "    scaler.scale(loss).backward()\n\n\n"
                "@contextmanager\ndef frozen(network):\n",
            ),
        ],
        [f"{LAYOUT}::test_the_story_a_learner_reads_is_the_whole_gan_in_view"],
    ),
    "long-road": (
        "10 more lines of markdown before training (the 2-D game's introduction)",
        NB,
        [
            (
                "(for faces: only a few kinds of face).",
                "(for faces: only a few kinds of face)."
                + "\nOne more line on the way to the first faces." * 10,
            )
        ],
        [f"{LAYOUT}::test_the_road_to_the_first_faces_is_short"],
    ),
}


def replace_once(text, old, new, where):
    count = text.count(old)
    if count != 1:
        raise SystemExit(f"{where} holds {count} copies of {old!r} (expected exactly 1): update this script.")
    return text.replace(old, new)


def break_file(path, replacements):
    """Apply the replacements to path; in the notebook, to the source of the one cell (code or markdown) holding
    each."""
    if path.suffix != ".ipynb":
        text = path.read_text(encoding="utf-8")
        for old, new in replacements:
            text = replace_once(text, old, new, path.name)
        path.write_text(text, encoding="utf-8")
        return
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for old, new in replacements:
        cells = [c for c in notebook["cells"] if old in "".join(c["source"])]
        if len(cells) != 1:
            raise SystemExit(
                f"{len(cells)} cells of {path.name} hold {old!r} (expected 1): update this script."
            )
        source = replace_once("".join(cells[0]["source"]), old, new, path.name)
        cells[0]["source"] = source.splitlines(keepends=True)
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def copy_project(folder):
    """The working tree's files (tracked and untracked, not ignored) in folder/anime_gan, ../shared beside it."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    project = Path(folder) / "anime_gan"
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, project / name)
    if (ROOT.parent / "shared").exists():
        os.symlink(ROOT.parent / "shared", Path(folder) / "shared")
    return project


def run_tests(project, tests):
    """("pass" | "fail" | "error", pytest's summary, seconds, the ids of the failed tests without their
    parameters) of tests run in project."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *PYTEST_OPTIONS, *tests], cwd=project, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    lines = [line for line in result.stdout.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    summary = re.sub(r" in [\d.]+s.*", "", lines[-1].strip("= ")) if lines else f"(exit {result.returncode})"
    outcome = {0: "pass", 1: "fail"}.get(result.returncode, "error")
    if outcome == "fail" and "failed" not in summary:
        outcome = "error"  # only errors (a fixture broke): the test could not even run
    failed = set(re.findall(r"^FAILED (\S+?::\w+)", result.stdout, re.M))
    return outcome, summary, seconds, failed


def main(argv):
    if "--list" in argv:
        for name, (description, path, _, tests) in VARIANTS.items():
            print(f"{name:<26} {path:<18} {description}\n{'':<26} {' '.join(tests)}")
        return 0
    unknown = [name for name in argv if name not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; --list names them")
    chosen = {name: VARIANTS[name] for name in (argv or VARIANTS)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="sabotage_gaps_") as folder:
        control = copy_project(Path(folder) / "control")
        all_tests = sorted({test for *_, tests in chosen.values() for test in tests})
        print(f"control: {len(all_tests)} tests on an unbroken copy ...", file=sys.stderr, flush=True)
        observed, summary, seconds, _ = run_tests(control, all_tests)
        rows.append(("control", "pass", observed, observed == "pass", seconds, summary, "nothing broken"))
        for name, (description, path, replacements, tests) in chosen.items():
            project = copy_project(Path(folder) / name)
            break_file(project / path, replacements)
            print(f"{name}: {description} ...", file=sys.stderr, flush=True)
            observed, summary, seconds, failed = run_tests(project, tests)
            still_passing = [test.split("::")[1] for test in tests if test not in failed]
            if observed == "fail" and still_passing:  # another named test failed, not all of them
                observed = "partly"
                description += f" (NOT failed: {', '.join(still_passing)})"
            rows.append((name, "fail", observed, observed == "fail", seconds, summary, description))
            shutil.rmtree(Path(folder) / name)
    print(f"{'variant':<26} {'expected':<8} {'observed':<8} {'OK':<3} {'seconds':>7}  {'pytest':<24} broken")
    for name, expected, observed, ok, seconds, summary, description in rows:
        print(
            f"{name:<26} {expected:<8} {observed:<8} {'yes' if ok else 'NO':<3} {seconds:>7.0f}  {summary:<24} {description}"
        )
    return 0 if all(row[3] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
