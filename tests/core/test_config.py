import json

import pytest

from napari_colorrl.core.config import CONFIG_VERSION, ColorRLConfig


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
    from napari_colorrl.core.config import TrainConfig
    from napari_colorrl.core.recipes import TRAINING_RECIPES
    from napari_colorrl.core.training.setup import TrainingRequest, build_config

    defaults = TrainConfig()
    for key, value in TRAINING_RECIPES["paper"].items():
        assert getattr(defaults, key) == value, key
    assert set(TRAINING_RECIPES["fast"]) == set(TRAINING_RECIPES["paper"])
    fast, _ = build_config(TrainingRequest(recipe="fast", settings={"train.lr": 2e-4}), 2)
    assert fast.train.advantage_norm and fast.train.grad_clip == 1.0
    assert fast.train.lr == 2e-4  # explicit settings override the recipe
    with pytest.raises(ValueError, match="Unknown training recipe 'slow'"):
        build_config(TrainingRequest(recipe="slow"), 2)


def test_every_setting_has_help_and_a_default_that_passes_its_own_check():
    from napari_colorrl.core.config import SETTINGS

    assert len(SETTINGS) > 40
    for spec in SETTINGS:
        assert spec.help and spec.path
        spec.check(spec.default)


@pytest.mark.parametrize("changes, field", [
    ({"connectivity": 3}, "connectivity"),
    ({"reward": {"radii": []}}, "reward.radii"),
    ({"reward": {"radii": [-5]}}, "reward.radii"),
    ({"normalization": {"low": 99, "high": 1}}, "normalization.low"),
    ({"train": {"batch_size": 0}}, "train.batch_size"),
    ({"train": {"lr": -1}}, "train.lr"),
    ({"network": {"features": [-4, 0]}}, "network.features"),
    ({"train": {"threads": -3}}, "train.threads"),
    ({"network": {"attention": "no"}}, "network.attention"),
    ({"steps": float("inf")}, "steps"),
    ({"steps": 2.5}, "steps"),
    ({"input_size": [176]}, "input_size"),
    ({"train": {"exploration_objects": True, "exploration_scale": 6}},
     "train.exploration_objects and train.exploration_scale"),
    ({"steps": 4, "depth": 5}, "depth"),
])
def test_settings_out_of_range_are_refused_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        ColorRLConfig.from_dict({"ndim": 2, **changes})


def test_a_config_written_before_depth_existed_runs_every_step():
    old = ColorRLConfig(steps=4).to_dict()
    del old["depth"], old["train"]["tune_depth"]
    config = ColorRLConfig.from_dict(old)
    assert config.depth == 0 and config.passes == 4 and config.train.tune_depth
    assert ColorRLConfig(steps=4, depth=2).passes == 2
    # A new T drops the depth chosen for the old one (fine-tuning a model with a depth and an
    # automatic T, or the memory check's T = 1, once raised "depth cannot exceed steps").
    assert ColorRLConfig(steps=4, depth=2).replace(steps=1).depth == 0
    assert ColorRLConfig(steps=4, depth=2).replace(steps=4).depth == 2
    assert ColorRLConfig(steps=4, depth=2).replace(steps=6, depth=3).depth == 3


def test_a_version_1_config_with_removed_options_still_loads():
    old = ColorRLConfig().to_dict()
    old["version"] = 1
    old["train"].update(update_epochs=1, weight_average=0.995)
    config = ColorRLConfig.from_dict(old)
    assert config.version == CONFIG_VERSION and not hasattr(config.train, "weight_average")


def test_3d_defaults_and_recipes_come_from_one_table():
    from napari_colorrl.core.config import DEFAULTS_3D
    from napari_colorrl.core.recipes import apply_recipe

    three = ColorRLConfig.default_for(3)
    assert three.input_size == (64, 64, 64) and three.input_mode == "crop"
    assert list(three.network.features) == DEFAULTS_3D["network"]["features"]
    assert apply_recipe({"train": {"lr": 1.0}}, "fast")["train"]["lr"] == 6e-4
