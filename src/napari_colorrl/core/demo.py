"""The demo's data and settings, one definition for the headless ``colorrl demo`` and the
napari demo: touching synthetic cells, a small network and the "fast" recipe."""

from __future__ import annotations

from typing import Any

#: The demo's settings (dotted paths of the settings table), on top of the "fast" recipe.
DEMO_RECIPE = "fast"
DEMO_SETTINGS: dict[str, Any] = {
    "input_size": 128, "min_size": 10, "steps": "auto",
    "network.features": [16, 32, 64, 128], "network.attention": True,
    "network.input_features": 8, "reward.radii": [6, 14], "reward.interior_shrink": 0.8,
    "train.batch_size": 4, "train.val_every": 25, "train.checkpoint_every": 25,
}


def demo_samples(n_train: int = 12, n_val: int = 3, seed: int = 0, size: int = 128
                 ) -> tuple[list, list]:
    """Synthetic training and validation samples (``core.data.files.Sample``), 10 touching
    cells each."""
    from .data.files import Sample
    from .data.synthetic import make_cells_2d

    def make(i: int) -> Sample:
        image, labels = make_cells_2d(shape=(size, size), n_objects=10, seed=seed + i)
        return Sample(name=f"cells_{i:02d}", image=image, labels=labels)

    return [make(i) for i in range(n_train)], [make(1000 + i) for i in range(n_val)]


def demo_settings(minutes: float, device: str = "auto", seed: int = 0) -> dict[str, Any]:
    """The demo's settings for a run of ``minutes`` on ``device``."""
    return {**DEMO_SETTINGS, "train.minutes": minutes, "train.device": device,
            "train.seed": seed}


def demo_request(minutes: float, device: str = "auto", seed: int = 0):
    """The ``TrainingRequest`` of the headless demo (the napari demo fills the dock with the
    same samples, recipe and settings)."""
    from .training.setup import TrainingRequest

    train, val = demo_samples(seed=seed)
    return TrainingRequest(samples=train, val_samples=val, ndim=2, recipe=DEMO_RECIPE,
                           settings=demo_settings(minutes, device, seed))
