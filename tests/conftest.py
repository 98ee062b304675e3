import os
from pathlib import Path

import numpy as np
import pytest
import torch

# One thread: tests use tiny networks, and on a shared, loaded machine several OpenMP threads
# spin against each other (an update of a tiny network took 5-12 s with 2 threads, 0.3 s with 1).
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_dataset(name: str) -> Path:
    """Path of a real data set in ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data set {name} not found at {path}")
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


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
