"""What a new run starts from (shared by colorrl train and the dock), and the held-out share."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import tiny_samples
from napari_colorrl.core.recipes import (
    DEFAULT_RECIPE,
    FINETUNE_RECIPE,
    NETWORK_PRESETS,
    TRAINING_RECIPES,
    budget_expectation,
    machine_defaults,
)
from napari_colorrl.core.training.setup import (
    TrainingRequest,
    build_config,
    hold_out,
    prepare_training,
)


@pytest.mark.parametrize("ndim", [2, 3])
def test_a_new_run_starts_from_the_kept_recipe_a_cpu_network_and_minutes(ndim):
    config, steps = build_config(TrainingRequest(settings={"train.device": "cpu"}), ndim)
    assert steps == "auto"
    assert config.train.lr == TRAINING_RECIPES[DEFAULT_RECIPE]["lr"]
    assert config.train.grad_clip == TRAINING_RECIPES[DEFAULT_RECIPE]["grad_clip"]
    assert config.network.features == NETWORK_PRESETS[ndim]["small"]
    assert config.train.minutes == 10.0


def test_a_gpu_gets_the_larger_network_and_a_longer_budget():
    gpu = machine_defaults(2, "cuda")
    assert gpu["network.features"] == list(NETWORK_PRESETS[2]["paper"])
    assert gpu["train.minutes"] > machine_defaults(2, "cpu")["train.minutes"]


def test_what_the_user_gives_beats_the_machine_defaults(tmp_path):
    flags = build_config(TrainingRequest(settings={
        "train.device": "cpu", "train.episodes": 40, "network.features": [4, 8]}), 2)[0]
    assert flags.train.minutes is None and flags.train.episodes == 40
    assert flags.network.features == (4, 8)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"train": {"episodes": 12}, "network": {"features": [4, 8, 16]}}))
    from_file = build_config(TrainingRequest(config_file=path,
                                             settings={"train.device": "cpu"}), 2)[0]
    assert from_file.train.minutes is None and from_file.train.episodes == 12
    assert from_file.network.features == (4, 8, 16)
    paper = build_config(TrainingRequest(recipe="paper", settings={"train.device": "cpu"}), 2)[0]
    assert paper.train.lr == TRAINING_RECIPES["paper"]["lr"]


def test_without_validation_data_a_seeded_share_is_held_out():
    samples = tiny_samples(2, 10)
    train, val, note = hold_out(samples, 0.2, seed=3)
    assert len(val) == 2 and len(train) == 8
    assert {s.name for s in train} | {s.name for s in val} == {s.name for s in samples}
    assert [s.name for s in hold_out(samples, 0.2, seed=3)[1]] == [s.name for s in val]
    assert [s.name for s in hold_out(samples, 0.2, seed=4)[1]] != [s.name for s in val]
    assert "2 of the 10 training samples" in note and "held out" in note
    assert hold_out(samples, 0.0, seed=0)[1] == []
    assert hold_out(samples[:1], 0.0, seed=0)[1] == []


@pytest.mark.parametrize("ndim", [2, 3])
def test_a_single_sample_is_cut_into_a_training_part_and_a_held_out_slab(ndim):
    """One annotated image or volume (a user's one labelled layer, GoNuclear's one training
    volume) still gets a held-out set: a slab of val_share of its longest axis."""
    shape = (40, 64) if ndim == 2 else (30, 24, 50)
    sample = tiny_samples(ndim, 1, shape=shape)[0]
    train, val, note = hold_out([sample], 0.2, seed=0)
    assert len(train) == 1 and len(val) == 1 and "slab" in note
    axis = int(np.argmax(shape))  # the longest axis
    held, kept = val[0].labels.shape[axis], train[0].labels.shape[axis]
    assert held == round(0.2 * shape[axis]) and held + kept == shape[axis]
    assert [n for i, n in enumerate(val[0].labels.shape) if i != axis] == [
        n for i, n in enumerate(shape) if i != axis]
    # the two parts are the sample, image and labels alike, cut at one plane
    for part in (train[0], val[0]):
        assert part.image.shape[:ndim] == part.labels.shape
    whole = (np.concatenate([train[0].labels, val[0].labels], axis=axis)
             if np.array_equal(train[0].labels, np.take(sample.labels, range(kept), axis=axis))
             else np.concatenate([val[0].labels, train[0].labels], axis=axis))
    assert np.array_equal(whole, sample.labels)
    # seeded: the same seed cuts the same end; some seed cuts the other
    again = hold_out([sample], 0.2, seed=0)[1][0].name
    assert again == val[0].name
    assert {hold_out([sample], 0.2, seed=s)[1][0].name for s in range(8)} != {val[0].name}


def test_a_single_sample_too_short_for_the_training_crop_or_resized_is_not_cut():
    sample = tiny_samples(3, 1, shape=(20, 20, 20))[0]
    train, val, note = hold_out([sample], 0.2, seed=0, keep=(16, 16, 16))
    assert train == [sample] and val == [] and "too short" in note and "validation pair" in note
    assert len(hold_out([sample], 0.2, seed=0, keep=(12, 12, 12))[1]) == 1
    assert len(hold_out([sample], 0.2, seed=0, keep=(64, 64, 64))[1]) == 1  # padded anyway
    # a 'resize' model would squeeze a thin slab out of shape: not cut, and it says why
    train, val, note = hold_out([sample], 0.2, seed=0, keep=None)
    assert val == [] and "resizes its inputs" in note


def test_prepare_training_cuts_a_single_crop_sample_and_not_a_resized_one():
    sample = tiny_samples(2, 1, shape=(40, 64))
    crop = prepare_training(TrainingRequest(samples=sample, ndim=2, settings={
        "train.device": "cpu", "input_size": 32, "input_mode": "crop", "steps": 3}))
    assert len(crop.train) == 1 and len(crop.val) == 1
    assert crop.val[0].labels.shape == (40, 13) and crop.train[0].labels.shape == (40, 51)
    assert "slab" in "\n".join(crop.messages)
    resized = prepare_training(TrainingRequest(samples=sample, ndim=2, settings={
        "train.device": "cpu", "input_size": 32, "input_mode": "resize", "steps": 3}))
    assert len(resized.train) == 1 and resized.val == []


def test_prepare_training_holds_out_and_says_what_the_budget_tends_to_give():
    setup = prepare_training(TrainingRequest(samples=tiny_samples(2, 5), ndim=2, settings={
        "train.device": "cpu", "input_size": 32, "steps": 3}))
    assert len(setup.train) == 4 and len(setup.val) == 1
    text = "\n".join(setup.messages)
    assert "1 of the 5 training samples" in text
    assert "About 10 min of training" in text and "docs/results.md" in text
    given = prepare_training(TrainingRequest(
        samples=tiny_samples(2, 3), val_samples=tiny_samples(2, 1), ndim=2,
        settings={"train.device": "cpu", "input_size": 32, "steps": 3}))
    assert len(given.train) == 3 and len(given.val) == 1  # a validation set given: kept as is


def test_budget_expectation_lines():
    assert "SBD 0.53 on CVPPP leaves after 10 min" in budget_expectation(2, 10)
    assert "after 60 min" in budget_expectation(2, 45)
    assert "first updates" in budget_expectation(2, None)
    assert "GPU" in budget_expectation(3, 20, "cuda")


# --- fine-tuning (--init) ---------------------------------------------------------------------
def test_init_from_the_bundled_model_takes_its_method_and_a_fresh_schedule():
    from napari_colorrl.core.model.bundled import resolve_model_path
    from napari_colorrl.core.model.checkpoint import load_checkpoint

    bundled = load_checkpoint(resolve_model_path("nuclei-2d")).config
    config, steps = build_config(TrainingRequest(init="nuclei-2d", settings={
        "train.device": "cpu", "steps": "auto", "reward.w_split": 1.2}), 2)
    assert steps is None and config.steps == bundled.steps  # T is the model's
    assert config.network == bundled.network and config.input_size == bundled.input_size
    assert config.normalization == bundled.normalization
    assert config.reward.radii == bundled.reward.radii and config.reward.w_split == 1.2
    assert config.train.minutes == 10.0  # a fresh schedule, not the model's
    assert config.train.lr == TRAINING_RECIPES[FINETUNE_RECIPE]["lr"]  # the gentle recipe
    assert config.train.entropy_coef == TRAINING_RECIPES[FINETUNE_RECIPE]["entropy_coef"]


@pytest.mark.parametrize("settings, ndim, message", [
    ({}, 3, "is a 2D model but the labels are 3D"),
    ({"network.features": [4, 8]}, 2, r"network.features \[4, 8\] cannot change when fine"),
    ({"steps": 6}, 2, "steps 6 cannot change when fine-tuning"),  # the model's T is 3 or 5
])
def test_init_that_cannot_work_is_refused_with_why(settings, ndim, message):
    with pytest.raises(ValueError, match=message):
        build_config(TrainingRequest(init="nuclei-2d", settings={"train.device": "cpu",
                                                                 **settings}), ndim)


def test_init_and_resume_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        build_config(TrainingRequest(init="nuclei-2d", resume=tmp_path / "m.pt"), 2)


def test_a_fine_tune_starts_from_the_models_weights(tmp_path):
    import torch

    from conftest import tiny_config
    from napari_colorrl.core.model.checkpoint import load_checkpoint
    from napari_colorrl.core.training.trainer import train

    first = tmp_path / "first.pt"
    list(train(tiny_config(), tiny_samples(2), out=first))
    request = TrainingRequest(samples=tiny_samples(2, 3), ndim=2, init=first, settings={
        "train.device": "cpu", "train.episodes": 2, "train.batch_size": 2, "train.lr": 1e-12,
        "train.lr_final": 1e-12, "train.val_share": 0.0, "train.augment": False})
    setup = prepare_training(request)
    assert any("Fine-tuning" in line for line in setup.messages)
    tuned = tmp_path / "tuned.pt"
    list(train(setup.config, setup.train, setup.val, out=tuned, init=first))
    before, after = load_checkpoint(first), load_checkpoint(tuned)
    assert after.step == 1 and after.episodes == 2  # a fresh schedule: counters start at 0
    for key, value in before.model_state.items():  # lr 1e-12: still the model's weights
        if value.is_floating_point():
            assert torch.allclose(after.model_state[key], value, atol=1e-6), key
    fresh = tmp_path / "fresh.pt"
    list(train(setup.config, setup.train, setup.val, out=fresh))  # without init: other weights
    assert any(not torch.allclose(load_checkpoint(fresh).model_state[k], v, atol=1e-3)
               for k, v in before.model_state.items() if v.is_floating_point())


def test_colorrl_train_init_fine_tunes_the_bundled_model(tmp_path, capsys):
    import tifffile

    from napari_colorrl.cli.main import main
    from napari_colorrl.core.model.bundled import resolve_model_path
    from napari_colorrl.core.model.checkpoint import load_checkpoint

    for sub in ("images", "masks"):
        (tmp_path / "d" / "train" / sub).mkdir(parents=True)
    for sample in tiny_samples(2, 2, shape=(64, 64)):
        tifffile.imwrite(tmp_path / "d" / "train" / "images" / f"{sample.name}.tif", sample.image)
        tifffile.imwrite(tmp_path / "d" / "train" / "masks" / f"{sample.name}.tif", sample.labels)
    out = tmp_path / "tuned.pt"
    assert main(["train", "--data", str(tmp_path / "d"), "--init", "nuclei-2d", "--episodes",
                 "2", "--batch-size", "1", "--threads", "1", "--device", "cpu", "--out",
                 str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Fine-tuning nuclei-2d" in printed and "1 of the 2 training samples" in printed
    bundled = load_checkpoint(resolve_model_path("nuclei-2d")).config
    assert load_checkpoint(out).config.steps == bundled.steps
    assert main(["train", "--data", str(tmp_path / "d"), "--init", "nuclei-2d", "--steps", "6",
                 "--out", str(tmp_path / "x.pt")]) == 2
    assert "steps 6 cannot change when fine-tuning" in capsys.readouterr().err


def test_selection_on_train_keeps_the_validation_pairs_for_scoring_only():
    """Issue 17, point 5: with ``train.selection = 'train'`` the best checkpoint and the
    minimum size are chosen on a seeded share carved from the training samples; the validation
    pairs given are set aside (``setup.report``), never given to the trainer."""
    from conftest import tiny_samples
    from napari_colorrl.core.training.setup import TrainingRequest, prepare_training

    samples = tiny_samples(2, 6)
    given_val = tiny_samples(2, 2)
    for s in given_val:
        s.name = "val-" + s.name
    request = TrainingRequest(samples=samples, val_samples=given_val,
                              settings={"train.selection": "train", "train.val_share": 0.34,
                                        "steps": 3})
    setup = prepare_training(request)
    names = {s.name for s in setup.val}
    assert len(setup.val) == 2 and not names & {s.name for s in given_val}
    assert names <= {s.name for s in samples} and not names & {s.name for s in setup.train}
    assert [s.name for s in setup.report] == [s.name for s in given_val]
    assert setup.scored is setup.report
    assert any("only scored afterwards" in m for m in setup.messages)
    again = prepare_training(request)
    assert [s.name for s in again.val] == [s.name for s in setup.val]  # seeded
    plain = prepare_training(TrainingRequest(samples=samples, val_samples=given_val,
                                             settings={"steps": 3}))
    assert [s.name for s in plain.val] == [s.name for s in given_val] and plain.report == []
