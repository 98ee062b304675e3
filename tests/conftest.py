import os
import random
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

# One thread: tests use tiny networks, and on a shared, loaded machine several OpenMP threads
# spin against each other (an update of a tiny network took 5-12 s with 2 threads, 0.3 s with 1).
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def tiny_config(ndim: int = 2, **changes):
    """The one small config of the tests: a 2-level network, T = 3, 32 x 32 (2D) or 12 x 16 x 16
    crops (3D), CPU, a few episodes. ``changes``: top-level settings or nested dictionaries
    (``train={"episodes": 8}``), merged into it."""
    from napari_colorrl.core.config import ColorRLConfig
    from napari_colorrl.core.config_files import deep_update

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
    from napari_colorrl.core.config_files import deep_update
    from napari_colorrl.core.training.trainer import train

    config = tiny_config(ndim, **deep_update(
        {"train": {"episodes": 8, "val_every": 100, "checkpoint_every": 100}}, changes))
    for _ in train(config, tiny_samples(ndim), out=path):
        pass
    return path


class BitPolicy(torch.nn.Module):
    """Step t's action is bit t of the image's level round(x (2^T - 1)). With ``size`` > 1 the
    level is taken after a maximum over a ``size``^ndim neighbourhood (replicate padding, like
    the network's: a receptive field), and step 0 is the foreground x > 0.3, so the rims a
    resize blurs take their object's color or the background's."""

    def __init__(self, steps: int, size: int = 1):
        super().__init__()
        self.steps, self.size = steps, size
        self.weight = torch.nn.Parameter(torch.zeros(1))  # a module with a parameter

    def forward(self, image, channels):
        x = image[:, :1]
        if self.size > 1:
            pad = [self.size // 2] * (2 * (x.ndim - 2))
            x = F.pad(x, pad, mode="replicate")
            pool = F.max_pool2d if x.ndim == 4 else F.max_pool3d
            x = pool(x, self.size, stride=1)
        level = torch.round(x[:, 0] * (2**self.steps - 1)).to(torch.int64)
        taken = int((channels != 0).flatten(2).any(-1)[0].sum())  # steps taken so far
        bit = ((level >> taken) & 1).to(torch.float32)
        if self.size > 1:
            foreground = (image[:, 0] > 0.3).to(torch.float32)
            bit = foreground if taken == 0 else bit * foreground
        return torch.stack([1 - bit, bit], 1)


def bit_segmenter(ndim: int = 2, size: int = 1, steps: int = 3):
    """A ``Segmenter`` of a ``BitPolicy`` (a 'crop' model, min-max normalisation: the levels of
    ``blobs`` images are exact)."""
    from napari_colorrl.core.inference import Segmenter

    config = tiny_config(ndim, steps=steps, input_mode="crop",
                         normalization={"mode": "minmax"})
    return Segmenter(BitPolicy(steps, size), config, device="cpu", fast_layout=False)


def blobs(shape, n=60, radius=(5.0, 11.0), seed=0, levels=7, lowest=1):
    """Non-touching balls (discs) of one random level lowest..levels each (the first: the top
    one, so the min-max levels are exact) on a 0 background."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    image = np.zeros(shape, np.float32)
    grid = np.indices(shape, dtype=np.float32)
    count = 0
    for _ in range(n):
        r = rng.uniform(*radius)
        centre = [rng.uniform(r + 1, s - r - 1) for s in shape]
        inside = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= r * r
        grown = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= (r + 3) ** 2
        if labels[grown].any():
            continue
        count += 1
        labels[inside] = count
        image[inside] = 1.0 if count == 1 else rng.integers(lowest, levels + 1) / levels
    return image, labels


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


def supervised_term_curve(config, term: str, updates: int = 30, sign: float = 1.0):
    """(values, last rollout): ``updates`` Adam steps on sign x ``Rollout.<term>`` alone, on
    the rollouts of two tiny synthetic images (seed 0), and the term's value at each."""
    from napari_colorrl.core.model.networks import build_network
    from napari_colorrl.core.training.environment import Environment
    from napari_colorrl.core.training.rollout import play_episodes

    torch.manual_seed(0)
    model = build_network(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    env = Environment(tiny_samples(2, 2), config, torch.device("cpu"), np.random.default_rng(0))
    values = []
    for _ in range(updates):
        rollout = play_episodes(model, env.reset(2), config)
        optimizer.zero_grad()
        (sign * getattr(rollout, term)).backward()
        optimizer.step()
        values.append(float(getattr(rollout, term).detach()))
    return values, rollout


def trainer_reports(tmp_path, config) -> list:
    """The reports of a run of the trainer on two tiny synthetic images, checked to end, with
    a finite loss, and to save its model."""
    from napari_colorrl.core.training.trainer import train

    reports = list(train(config, tiny_samples(2, 2), out=tmp_path / "m.pt"))
    assert reports[-1].final and np.isfinite(reports[-1].loss)
    assert (tmp_path / "m.pt").exists()
    return reports


def check_supervised_term(tmp_path, term: str, weight: str) -> tuple[float, float]:
    """Checks a supervised term of the rollout (``Rollout.<term>``, weighted by
    ``train.<weight>``): 30 Adam steps on it alone, on the rollouts of two tiny synthetic
    images, bring its mean over the last five below 0.65 x that over the first five (returned);
    ``actor_critic_loss`` adds it with its weight; and a run of the trainer with it trains,
    reports it (``TrainingReport.<term>``) and saves."""
    import dataclasses

    from napari_colorrl.core.training.rollout import actor_critic_loss

    config = tiny_config(2, train={weight: 1.0})
    values, rollout = supervised_term_curve(config, term)
    first, last = float(np.mean(values[:5])), float(np.mean(values[-5:]))
    assert last < 0.65 * first, (first, last)

    losses = actor_critic_loss(rollout, dataclasses.replace(config.train, **{weight: 0.25}), 0.01)
    rest = losses.policy + config.train.value_coef * losses.value - 0.01 * losses.entropy
    assert float((losses.total - rest).detach()) == pytest.approx(
        0.25 * float(getattr(rollout, term).detach()))

    reports = trainer_reports(tmp_path, config)
    assert all(getattr(r, term) is not None and getattr(r, term) > 0 for r in reports)
    return first, last
