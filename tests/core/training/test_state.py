"""Training state survives stops, crashes and SIGKILL; same seed, same result; memory released."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from conftest import tiny_config as shared_tiny_config
from napari_colorrl.cli.main import main
from napari_colorrl.core.config import ColorRLConfig
from napari_colorrl.core.data.files import Sample
from napari_colorrl.core.data.synthetic import make_cells_2d
from napari_colorrl.core.inference import Segmenter
from napari_colorrl.core.model.checkpoint import load_checkpoint
from napari_colorrl.core.training import trainer as trainer_module
from napari_colorrl.core.training.trainer import TrainingError, train

NETWORK = {"features": [4, 8, 16], "attention": True, "input_features": 4}


def tiny_config(**train_settings) -> ColorRLConfig:
    return shared_tiny_config(network={"features": [4, 8, 16]}, train={
        "episodes": 8, "checkpoint_every": 2, "val_every": 1000, "lr_final": 1e-4,
        "lr_switch": 0.5, **train_settings})


def samples(n: int = 3) -> list[Sample]:
    return [Sample(f"s{i}", *make_cells_2d(shape=(40, 40), n_objects=5, seed=i))
            for i in range(n)]


def assert_same_state(a, b) -> None:
    assert a.step == b.step and a.episodes == b.episodes
    for key, value in a.model_state.items():
        assert torch.equal(value, b.model_state[key]), key
    for (ka, va), (kb, vb) in zip(a.optimizer_state["state"].items(),
                                  b.optimizer_state["state"].items(), strict=True):
        assert ka == kb
        for name in va:
            assert torch.equal(va[name], vb[name]), (ka, name)
    assert a.extra["numpy_rng"] == b.extra["numpy_rng"]
    assert torch.equal(a.extra["torch_rng"], b.extra["torch_rng"])


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    """4 updates in one go == 2 updates, stop, resume, 2 more (weights, Adam, RNG, LR phase)."""
    config = tiny_config()
    whole = [r.lr for r in train(config, samples(), out=tmp_path / "whole.pt")]
    assert len(whole) == 4 and whole[0] != whole[-1]  # the LR schedule switches halfway

    run = train(config, samples(), out=tmp_path / "part.pt")
    first = [next(run).lr, next(run).lr]
    run.close()  # a stop: the periodic checkpoint of update 2 is rewritten on the way out
    assert load_checkpoint(tmp_path / "part.pt").step == 2
    rest = [r.lr for r in train(config, samples(), out=tmp_path / "part.pt",
                                resume=tmp_path / "part.pt")]
    assert first + rest == whole
    assert_same_state(load_checkpoint(tmp_path / "whole.pt"), load_checkpoint(tmp_path / "part.pt"))


def test_same_seed_same_checkpoint_and_predictions(tmp_path):
    config = tiny_config(episodes=4)
    for name in ("a", "b"):
        list(train(config, samples(), out=tmp_path / f"{name}.pt"))
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    assert_same_state(a, b)
    image = make_cells_2d(shape=(48, 40), n_objects=6, seed=7)[0]
    first = Segmenter.load(tmp_path / "a.pt", device="cpu").segment(image)
    again = Segmenter.load(tmp_path / "b.pt", device="cpu").segment(image)
    np.testing.assert_array_equal(first.steps, again.steps)
    np.testing.assert_array_equal(first.instances, again.instances)
    other = train(tiny_config(episodes=4, seed=1), samples(), out=tmp_path / "c.pt")
    list(other)
    c = load_checkpoint(tmp_path / "c.pt")
    assert any(not torch.equal(v, c.model_state[k]) for k, v in a.model_state.items())


def test_periodic_checkpoints_follow_the_interval(tmp_path):
    reports = list(train(tiny_config(episodes=10, checkpoint_every=2), samples(),
                         out=tmp_path / "m.pt"))
    saved = [r.update for r in reports if r.checkpoint]
    assert saved == [2, 4, 5]  # every 2 updates, and the last one
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_non_finite_weights_stop_training_and_keep_last_good_checkpoint(tmp_path, monkeypatch):
    """A finite loss with weights gone to inf must not be saved as a 'good' checkpoint."""
    real = trainer_module.run_update
    calls = []

    def poisoning(model, *args, **kwargs):
        stats = real(model, *args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            with torch.no_grad():
                next(model.parameters()).fill_(float("inf"))
        return stats

    monkeypatch.setattr(trainer_module, "run_update", poisoning)
    out = tmp_path / "m.pt"
    run = train(tiny_config(episodes=20, checkpoint_every=1), samples(), out=out)
    with pytest.raises(TrainingError, match=r"weights became NaN or infinite at update 3.*kept"):
        for _ in run:
            pass
    good = load_checkpoint(out)
    assert good.step == 2
    assert all(torch.isfinite(v).all() for v in good.model_state.values()
               if v.is_floating_point())


def test_memory_released_when_training_ends_or_stops(tmp_path, monkeypatch):
    released = []
    monkeypatch.setattr(trainer_module, "release_memory", released.append)
    list(train(tiny_config(episodes=2), samples(), out=tmp_path / "a.pt"))
    assert released == [torch.device("cpu")]
    run = train(tiny_config(episodes=40), samples(), out=tmp_path / "b.pt")
    next(run)
    run.close()
    assert len(released) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_memory_returned_after_training(tmp_path):
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    list(train(tiny_config(episodes=4, device="cuda"), samples(), out=tmp_path / "g.pt"))
    assert torch.cuda.memory_allocated() <= before
    assert torch.cuda.memory_reserved() <= before + 2 * 1024**2


def _write_dataset(root: Path) -> tuple[Path, Path]:
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    for sample in samples(2):
        tifffile.imwrite(images / f"{sample.name}.tif", sample.image)
        tifffile.imwrite(labels / f"{sample.name}.tif", sample.labels)
    return images, labels


def test_sigkill_mid_run_loses_at_most_one_interval(tmp_path):
    images, labels = _write_dataset(tmp_path / "data")
    every = 3
    settings = {"network": NETWORK, "reward": {"radii": [2, 4]}, "min_size": 0,
                "train": {"batch_size": 1, "checkpoint_every": every, "val_every": 1000}}
    (tmp_path / "c.json").write_text(json.dumps(settings))
    out, log = tmp_path / "run" / "m.pt", tmp_path / "log.jsonl"
    common = ["train", "--images", str(images), "--labels", str(labels), "--size", "32",
              "--steps", "3", "--device", "cpu", "--threads", "1", "--config",
              str(tmp_path / "c.json"), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[3] / "src")}
    process = subprocess.Popen(
        [sys.executable, "-m", "napari_colorrl", *common, "--episodes", "100000", "--log",
         str(log)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            lines = log.read_text().splitlines() if log.exists() else []
            if len(lines) >= 2 * every + 1:
                break
            time.sleep(0.2)
        assert process.poll() is None, process.stderr.read().decode()
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    logged = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    last_logged = logged[-1]["update"]
    saved = load_checkpoint(out)  # intact: written atomically
    # Killed during update last_logged + 1 at the latest: at most one interval is lost.
    assert saved.step % every == 0 and (last_logged + 1) - saved.step <= every
    assert saved.step >= every

    total = saved.step + 2
    assert main([*common, "--resume", str(out), "--episodes", str(total)]) == 0
    resumed = load_checkpoint(out)
    assert resumed.step == total and resumed.episodes == total
