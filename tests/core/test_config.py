import json

import pytest

from napari_colorrl.core.config import ColorRLConfig


def test_json_round_trip_2d_and_3d():
    for ndim in (2, 3):
        config = ColorRLConfig.default_for(ndim)
        again = ColorRLConfig.from_json(config.to_json())
        assert again == config


def test_partial_dict_keeps_defaults_and_unknown_keys_are_named():
    config = ColorRLConfig.from_dict({"steps": 6, "reward": {"w_split": 3.0}})
    assert config.steps == 6 and config.reward.w_split == 3.0 and config.reward.w_merge == 1.0
    with pytest.raises(ValueError, match="reward.w_spilt"):
        ColorRLConfig.from_dict({"reward": {"w_spilt": 3.0}})


def test_invalid_values_and_newer_version():
    with pytest.raises(ValueError, match="input_size"):
        ColorRLConfig(ndim=3, input_size=(64, 64))
    with pytest.raises(ValueError, match="newer"):
        ColorRLConfig.from_dict({"version": 999})


def test_from_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"ndim": 3, "steps": 4}))
    config = ColorRLConfig.from_file(path)
    assert config.ndim == 3 and config.input_size == (64, 64, 64) and config.steps == 4
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ColorRLConfig.from_file(path)


def test_paper_recipe_is_the_default_and_fast_recipe_applies():
    from napari_colorrl.core.config import TRAINING_RECIPES, TrainConfig
    from napari_colorrl.core.training.setup import TrainingRequest, build_config

    defaults = TrainConfig()
    for key, value in TRAINING_RECIPES["paper"].items():
        assert getattr(defaults, key) == value, key
    assert set(TRAINING_RECIPES["fast"]) == set(TRAINING_RECIPES["paper"])
    fast = build_config(TrainingRequest(recipe="fast", overrides={"train": {"lr": 2e-4}}), 2)
    assert fast.train.advantage_norm and fast.train.grad_clip == 1.0
    assert fast.train.lr == 2e-4  # explicit settings override the recipe
    with pytest.raises(ValueError, match="Unknown training recipe 'slow'"):
        build_config(TrainingRequest(recipe="slow"), 2)
