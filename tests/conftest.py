import os
import random
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

# One thread: tests use tiny networks, and on a shared, loaded machine several OpenMP threads
# spin against each other (an update of a tiny network took 5-12 s with 2 threads, 0.3 s with 1).
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def tiny_config(ndim: int = 2, **changes):
    """The one small config of the tests: a 2-level network, T = 3, 32 x 32 (2D) or 12 x 16 x 16
    crops (3D), CPU, a few episodes. ``changes``: top-level settings or nested dictionaries
    (``train={"episodes": 8}``), merged into it."""
    from napari_colorrl.core.config import ColorRLConfig, deep_update

    base = {"ndim": ndim, "steps": 3, "min_size": 0,
            "network": {"features": [4, 8], "attention": ndim == 2, "input_features": 4},
            "train": {"batch_size": 2, "episodes": 4, "checkpoint_every": 1, "val_every": 1,
                      "lr": 1e-3, "device": "cpu"}}
    if ndim == 2:
        base.update(input_size=[32, 32], reward={"radii": [2, 4]})
    else:
        base.update(input_size=[12, 16, 16], input_mode="crop", reward={"radii": [2, 3]})
    return ColorRLConfig.from_dict(deep_update(base, changes))


def tiny_samples(ndim: int = 2, n: int = 2, shape: tuple[int, ...] | None = None) -> list:
    """``n`` small synthetic samples (touching cells in 2D, nuclei in 3D), seeds 0..n-1."""
    from napari_colorrl.core.data.files import Sample
    from napari_colorrl.core.data.synthetic import make_cells_2d, make_nuclei_3d

    out = []
    for i in range(n):
        if ndim == 2:
            image, labels = make_cells_2d(shape=shape or (40, 40), n_objects=5, seed=i)
        else:
            image, labels = make_nuclei_3d(shape=shape or (14, 20, 20), n_objects=4, seed=i)
        out.append(Sample(name=f"s{i}", image=image, labels=labels))
    return out


def trained_model(path: Path, ndim: int = 2, **changes) -> Path:
    """A tiny model (``tiny_config``) trained for 4 updates on ``tiny_samples`` (seconds),
    written to ``path``."""
    from napari_colorrl.core.config import deep_update
    from napari_colorrl.core.training.trainer import train

    config = tiny_config(ndim, **deep_update(
        {"train": {"episodes": 8, "val_every": 100, "checkpoint_every": 100}}, changes))
    for _ in train(config, tiny_samples(ndim), out=path):
        pass
    return path


def shared_dataset(name: str) -> Path:
    """Path of a real data set in ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data set {name} not found at {path}")
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def no_network(monkeypatch):
    """Network connections fail as on an offline machine, and the test fails afterwards if any
    was attempted (even one the code under test caught)."""
    import socket

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] or args)
        raise OSError("network access is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield attempts
    assert not attempts, f"network connections were attempted: {attempts[:3]}"


@pytest.fixture(autouse=True)
def _headless_matplotlib():
    os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def docks(make_napari_viewer):
    """A viewer with both docks, opened through the npe2 manifest (GUI tests)."""
    viewer = make_napari_viewer()
    _, training = viewer.window.add_plugin_dock_widget("napari-colorrl", "ColorRL Training")
    _, segmentation = viewer.window.add_plugin_dock_widget(
        "napari-colorrl", "ColorRL Segmentation")
    return viewer, training, segmentation


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports, free now and outside the ephemeral range.

    The ports are picked before the workers start and bound one after another over the next
    20 s or so. A port from the ephemeral range (what binding port 0 gives) can meanwhile become
    the local end of an outgoing connection, such as a gloo pair of an earlier process group,
    and the store then fails with EADDRINUSE (seen in CI). Outgoing connections never take a
    port outside that range.
    """
    low, high = _ephemeral_range()
    outside = [*range(10000, low), *range(high + 1, 65536)]
    ports: list[int] = []
    for port in random.sample(outside, min(len(outside), 200)):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError(f"fewer than {n} free ports outside the ephemeral range")
