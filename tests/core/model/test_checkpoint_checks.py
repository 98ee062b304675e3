"""Checkpoint safety: sizes and shapes checked before a network is built or state is used,
output paths that never replace another run's files, disk space (issue 20, points 1, 4, 5)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from napari_colorrl.core.config import ColorRLConfig, NetworkConfig
from napari_colorrl.core.data.checks import check_disk_space
from napari_colorrl.core.model import checkpoint_checks as ck
from napari_colorrl.core.model import networks
from napari_colorrl.core.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    network_from_checkpoint,
    save_checkpoint,
)
from napari_colorrl.core.model.checkpoint_checks import check_training_state, weight_bytes
from napari_colorrl.core.model.checkpoint_paths import (
    best_path,
    check_checkpoint_output,
    checkpoint_bytes,
    fresh_output_path,
    training_disk_bytes,
)
from napari_colorrl.core.model.networks import build_network, count_parameters, parameter_count


def _config(ndim=2, features=(4, 8), attention=False, input_features=4, steps=3, channels=1):
    config = ColorRLConfig.default_for(ndim)
    return dataclasses.replace(
        config, steps=steps,
        network=NetworkConfig(features=tuple(features), attention=attention,
                              input_features=input_features),
        normalization=dataclasses.replace(config.normalization, channels=channels),
    )


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("features,input_features,steps,channels", [
    ((4, 8), 4, 3, 1), ((5, 7, 9), 3, 1, 3), ((8, 16, 32, 64), 8, 5, 1), ((6, 3, 12), 2, 16, 3)])
def test_parameter_count_matches_the_built_network(ndim, attention, features, input_features,
                                                   steps, channels):
    config = _config(ndim, features, attention, input_features, steps, channels)
    assert parameter_count(config) == count_parameters(build_network(config))


def test_parameter_count_of_the_defaults():
    for ndim in (2, 3):
        config = ColorRLConfig.default_for(ndim)
        assert parameter_count(config) == count_parameters(build_network(config))


def _good(tmp_path: Path, config: ColorRLConfig, name="m.pt", **kwargs) -> Path:
    model = build_network(config)
    optimizer = torch.optim.Adam(model.parameters(), amsgrad=True)
    model(torch.rand(1, config.normalization.channels, *[8] * config.ndim),
          torch.zeros(1, config.steps, *[8] * config.ndim))[0].sum().backward()
    optimizer.step()
    extra = {"torch_rng": torch.get_rng_state(), "numpy_rng": '{"bit_generator": "PCG64"}'}
    extra.update(kwargs.pop("extra", {}))
    args = dict(config=config, model_state=model.state_dict(),
                optimizer_state=optimizer.state_dict(), extra=extra)
    args.update(kwargs)
    return save_checkpoint(tmp_path / name, **args)


def test_huge_network_refused_before_building(tmp_path, monkeypatch):
    def no_build(config):
        raise AssertionError("the network was built")

    monkeypatch.setattr(networks, "build_network", no_build)
    # Within the settings table's range, but far too many weights.
    path = save_checkpoint(tmp_path / "huge.pt", config=_config(features=(4096, 4096)),
                           model_state={"w": torch.zeros(1)})
    assert path.stat().st_size < 10_000
    with pytest.raises(CheckpointError, match=r"4096.*GiB of weights.*smaller network"):
        load_checkpoint(path)
    # The crafted 2.5 KB file of the issue: [12000, 12000] is outside the table's range.
    crafted = torch.load(path, weights_only=True)
    config = json.loads(crafted["config"])
    config["network"]["features"] = [12000, 12000]
    crafted["config"] = json.dumps(config)
    torch.save(crafted, tmp_path / "crafted.pt")
    with pytest.raises(CheckpointError, match=r"network\.features must be .* <= 4096"):
        load_checkpoint(tmp_path / "crafted.pt")


def test_network_larger_than_free_memory_refused(tmp_path, monkeypatch):
    import napari_colorrl.core.runtime as runtime

    monkeypatch.setattr(runtime, "available_bytes", lambda device="cpu": 1000)
    load_checkpoint(_good(tmp_path, _config()))  # tiny weights: left to the work's own checks
    config = _config(features=(2048, 2048))
    assert 64 * 1024**2 < weight_bytes(config) < ck.MAX_WEIGHT_BYTES
    path = save_checkpoint(tmp_path / "big.pt", config=config, model_state={"w": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="memory is free"):
        load_checkpoint(path)


def test_good_checkpoint_passes_every_check(tmp_path):
    config = _config(attention=True)
    path = _good(tmp_path, config)
    checkpoint = load_checkpoint(path)
    check_training_state(checkpoint, path)
    model = network_from_checkpoint(checkpoint, path)
    assert count_parameters(model) == parameter_count(config)


@pytest.mark.parametrize("edit,match", [
    (lambda s: s.pop("policy_head.bias"), "missing policy_head.bias"),
    (lambda s: s.__setitem__("extra.weight", torch.zeros(2)), "unknown extra.weight"),
    (lambda s: s.__setitem__("policy_head.bias", torch.zeros(3)), "wrong shape policy_head.bias"),
    (lambda s: s.__setitem__("policy_head.bias", torch.zeros(1).expand(2)), "malformed"),
])
def test_model_state_checked_against_the_config_before_building(tmp_path, monkeypatch, edit,
                                                                match):
    config = _config()
    state = dict(build_network(config).state_dict())
    edit(state)
    path = save_checkpoint(tmp_path / "m.pt", config=config, model_state=state)
    checkpoint = load_checkpoint(path)
    real = networks.build_network

    def meta_only(c):
        assert torch.empty(0).device.type == "meta", "built with memory before the check"
        return real(c)

    monkeypatch.setattr(networks, "build_network", meta_only)
    with pytest.raises(CheckpointError, match=match):
        network_from_checkpoint(checkpoint, path)


def test_stride0_random_state_refused_without_allocating(tmp_path):
    huge = torch.zeros(1, dtype=torch.uint8).expand(10**10)
    path = _good(tmp_path, _config(), extra={"torch_rng": huge})
    assert path.stat().st_size < 1_000_000
    checkpoint = load_checkpoint(path)  # loads: the storage holds one byte
    with pytest.raises(CheckpointError, match=r"malformed random state torch_rng.*new run"):
        check_training_state(checkpoint, path)


@pytest.mark.parametrize("value", [torch.zeros(10**6, dtype=torch.uint8),
                                   torch.zeros(16, dtype=torch.float32), [1, 2, 3]])
def test_bad_random_state_refused(tmp_path, value):
    checkpoint = load_checkpoint(_good(tmp_path, _config(), extra={"cuda_rng": value}))
    with pytest.raises(CheckpointError, match="cuda_rng"):
        check_training_state(checkpoint)


def test_bad_numpy_state_refused(tmp_path):
    checkpoint = load_checkpoint(_good(tmp_path, _config(), extra={"numpy_rng": "x" * 10**6}))
    with pytest.raises(CheckpointError, match="numpy_rng"):
        check_training_state(checkpoint)


def test_optimizer_state_of_wrong_shape_refused(tmp_path):
    checkpoint = load_checkpoint(_good(tmp_path, _config()))
    checkpoint.optimizer_state["state"][0]["exp_avg"] = torch.zeros(1).expand(10**9)
    with pytest.raises(CheckpointError, match="optimizer_state.*exp_avg of parameter 0"):
        check_training_state(checkpoint)


def test_training_weights_checked(tmp_path):
    config = _config()
    weights = dict(build_network(config).state_dict())
    weights["policy_head.weight"] = torch.zeros(7)
    checkpoint = load_checkpoint(_good(tmp_path, config, extra={"training_weights": weights}))
    with pytest.raises(CheckpointError, match="training weights.*policy_head.weight"):
        check_training_state(checkpoint)


# --- outputs --------------------------------------------------------------------------------
def test_best_path_rule_is_one_to_one():
    assert best_path("d/run.pt") == Path("d/run.best.pt")
    assert best_path("run.ckpt") == Path("run.best.ckpt")
    assert best_path("run") == Path("run.best")
    names = ["run.pt", "run.ckpt", "run", "run.best", "run.best.pt", "run.pt.pt", "a.b.pt",
             "run.ckpt.pt"]
    bests = [best_path(n) for n in names]
    assert len(set(bests)) == len(names)
    assert not set(bests) & {Path(n) for n in names if n not in ("run.best", "run.best.pt")}


def test_output_folder_image_and_existing_file_refused(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        check_checkpoint_output(tmp_path)
    image = tmp_path / "s0.tif"
    image.write_bytes(b"raw")
    with pytest.raises(ValueError, match=r"image file name.*\*\.pt"):
        check_checkpoint_output(image)
    old = tmp_path / "m.pt"
    old.write_bytes(b"old run")
    with pytest.raises(ValueError, match=r"already exists.*--resume.*another --out.*--overwrite"):
        check_checkpoint_output(old)
    with pytest.raises(ValueError, match="already exists"):
        check_checkpoint_output(old, resume=tmp_path / "other.pt")
    assert check_checkpoint_output(old, resume=old) == old
    assert check_checkpoint_output(old, overwrite=True) == old
    assert check_checkpoint_output(tmp_path / "new.pt") == tmp_path / "new.pt"
    assert old.read_bytes() == b"old run" and image.read_bytes() == b"raw"


def test_existing_best_model_of_another_run_refused(tmp_path):
    (tmp_path / "run.best.pt").write_bytes(b"best")
    with pytest.raises(ValueError, match="best model"):
        check_checkpoint_output(tmp_path / "run.pt")


def test_fresh_output_path_never_exists(tmp_path):
    first = fresh_output_path(tmp_path)
    assert first.parent == tmp_path and first.suffix == ".pt" and first.name.startswith("colorrl-")
    first.write_bytes(b"x")
    second = fresh_output_path(tmp_path)
    assert second != first and not second.exists()
    best_path(second).write_bytes(b"x")
    third = fresh_output_path(tmp_path, stem="nuclei")
    assert third.name.startswith("nuclei-") and not third.exists()
    assert fresh_output_path(tmp_path) not in (first, second)


def test_checkpoint_size_estimate_matches_a_saved_file(tmp_path):
    config = _config(features=(16, 32, 64), input_features=8)
    path = _good(tmp_path, config)
    estimate = checkpoint_bytes(config)
    assert weight_bytes(config) == 4 * parameter_count(config)
    size = path.stat().st_size
    assert size <= estimate <= size + 2 * 1024**2
    assert training_disk_bytes(config, validation=True) > training_disk_bytes(config, False)


def test_disk_space_checked_with_free_and_needed(tmp_path, monkeypatch):
    check_disk_space(tmp_path / "not" / "yet", 1)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 5 * 1024**2,
                                                             5 * 1024**2))
    with pytest.raises(OSError, match=r"needs about 1\.0 GiB but only 5\.0 MiB is free"):
        check_disk_space(tmp_path, 1024**3, what="the checkpoint")


def test_weight_limit_is_configurable():
    ck.check_network_size(_config())
    with pytest.raises(ValueError, match="allowed"):
        ck.check_network_size(_config(), limit=100)
