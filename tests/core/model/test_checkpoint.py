"""Tests of core.checkpoint: round trip, atomic writes and refusing bad or unsafe files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import napari_colorrl
from napari_colorrl.core.config import ColorRLConfig
from napari_colorrl.core.model import checkpoint as ckpt_module
from napari_colorrl.core.model.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)


def _trained_tiny() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    model(torch.randn(4, 3)).pow(2).sum().backward()
    optimizer.step()
    return model, optimizer


def _save(path: Path, **kwargs) -> Path:
    model, optimizer = _trained_tiny()
    args = dict(
        config=ColorRLConfig(steps=4),
        model_state=model.state_dict(),
        optimizer_state=optimizer.state_dict(),
        step=12,
        episodes=48,
        extra={
            "best_sbd": 0.5,
            "numpy_rng": '{"bit_generator": "PCG64"}',
            "torch_rng": torch.get_rng_state(),
            "metrics": {"sbd": [0.1, 0.2], "count": np.int64(3)},
            "seed_list": [1, 2, 3],
        },
    )
    args.update(kwargs)
    return save_checkpoint(path, **args)


def _tmp_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_round_trip_with_adam_state(tmp_path):
    path = _save(tmp_path / "sub" / "model.pt")
    assert path.is_file() and _tmp_leftovers(path.parent) == []
    loaded = load_checkpoint(path)
    assert isinstance(loaded, Checkpoint)
    assert loaded.config == ColorRLConfig(steps=4)
    assert (loaded.step, loaded.episodes) == (12, 48)
    assert loaded.version == napari_colorrl.__version__
    assert loaded.format_version == FORMAT_VERSION
    assert loaded.extra["best_sbd"] == 0.5
    assert loaded.extra["metrics"] == {"sbd": [0.1, 0.2], "count": 3}
    assert torch.equal(loaded.extra["torch_rng"], torch.get_rng_state())

    model, optimizer = _trained_tiny()
    fresh = torch.nn.Linear(3, 2)
    fresh.load_state_dict(loaded.model_state)
    assert torch.equal(fresh.weight, model.weight)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3, amsgrad=True)
    fresh_opt.load_state_dict(loaded.optimizer_state)
    state = fresh_opt.state_dict()["state"][0]
    assert torch.equal(state["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert fresh_opt.state_dict()["param_groups"][0]["betas"] == (0.9, 0.999)

    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "napari-colorrl" and isinstance(raw["config"], str)


def test_minimal_checkpoint_without_optimizer(tmp_path):
    model = torch.nn.Linear(2, 1)
    path = save_checkpoint(
        tmp_path / "m.pt", config=ColorRLConfig(), model_state=model.state_dict()
    )
    loaded = load_checkpoint(path)
    assert loaded.optimizer_state is None and loaded.extra == {} and loaded.step == 0


def test_non_plain_extra_is_rejected(tmp_path):
    with pytest.raises(TypeError, match=r"extra\['obj'\]"):
        _save(tmp_path / "m.pt", extra={"obj": object()})
    assert not (tmp_path / "m.pt").exists()


def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    path = _save(tmp_path / "model.pt")
    before = path.read_bytes()

    def broken_save(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        _save(path, step=99)
    assert path.read_bytes() == before
    assert _tmp_leftovers(tmp_path) == []
    assert load_checkpoint(path).step == 12


def test_unwritable_folder(tmp_path, monkeypatch):
    real_open = os.open

    def deny(path, *args, **kwargs):
        if str(path).endswith(".tmp"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(PermissionError, match="not writable"):
        _save(tmp_path / "ro" / "model.pt")


def test_missing_empty_truncated_random(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothere.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.pt")
    good = _save(tmp_path / "good.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        load_checkpoint(tmp_path / "trunc.pt")
    rng = np.random.default_rng(1)
    for i in range(5):
        (tmp_path / f"rand{i}.pt").write_bytes(rng.bytes(300))
        with pytest.raises(CheckpointError, match=f"rand{i}.pt"):
            load_checkpoint(tmp_path / f"rand{i}.pt")


def test_plain_state_dict_is_not_a_checkpoint(tmp_path):
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "sd.pt")
    with pytest.raises(CheckpointError, match="state_dict"):
        load_checkpoint(tmp_path / "sd.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a napari-colorrl checkpoint"):
        load_checkpoint(tmp_path / "list.pt")


def test_newer_format_version(tmp_path):
    path = _save(tmp_path / "model.pt")
    data = torch.load(path, weights_only=True)
    data["format_version"] = FORMAT_VERSION + 1
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="Upgrade napari-colorrl"):
        load_checkpoint(path)


def test_bad_config_inside(tmp_path):
    path = _save(tmp_path / "model.pt")
    data = torch.load(path, weights_only=True)
    data["config"] = '{"steps": 99}'
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="configuration"):
        load_checkpoint(path)


class _Malicious:
    marker: str = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _MaliciousOpen:
    marker: str = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
@pytest.mark.parametrize("payload", [_Malicious, _MaliciousOpen])
def test_malicious_pickle_is_refused(tmp_path, monkeypatch, writer, payload):
    marker = tmp_path / "pwned"
    monkeypatch.setattr(payload, "marker", str(marker))
    data = {"format": "napari-colorrl", "format_version": 1, "model_state": payload()}
    path = tmp_path / "evil.pt"
    if writer == "torch":
        torch.save(data, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(data, fh)
    with pytest.raises(CheckpointError, match="not a plain-data checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_core_import_does_not_import_torch_or_checkpoint():
    assert ckpt_module.FORMAT == "napari-colorrl"
    import subprocess
    import sys

    code = (
        "import sys, napari_colorrl.core, napari_colorrl.core.data.files; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(napari_colorrl.__file__).parents[1]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_a_full_disk_says_so_and_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    """A full disk gave torch's "unexpected pos 730112 vs 730000" or a bare [Errno 28]."""
    import errno
    import shutil
    from collections import namedtuple

    path = _save(tmp_path / "model.pt")
    before = path.read_bytes()

    def short_write(payload, fh, *args, **kwargs):
        fh.write(b"x" * 1000)
        raise RuntimeError("[enforce fail at inline_container.cc:783] . unexpected pos 730112 "
                           "vs 730000")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(torch, "save", short_write)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10**9, 10**9, 4096))
    with pytest.raises(OSError, match=r"The disk is full: the checkpoint .*model.pt could not be "
                       r"written .*the previous checkpoint is kept.*Free some space") as info:
        _save(path, step=99)
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and _tmp_leftovers(tmp_path) == []

    def enospc(payload, fh, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", enospc)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10**9, 0, 10**9))
    with pytest.raises(OSError, match="The disk is full"):
        _save(path, step=99)
    # Another failure with room to spare stays what it is.
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError, match="^x$"):
        _save(path, step=99)
    assert path.read_bytes() == before
