"""The training environment: batches of coloring episodes on one device, 2D and 3D.

A state is the image plus one channel per step taken. Each episode draws a training sample,
augments it, and brings the reward targets (interiors, rings, neighbours) prepared once per image:
flips and rotations permute them, only a geometric deformation or a new crop prepares new ones.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..config import ColorRLConfig
from ..data import augment
from ..data.normalize import network_image, network_labels, normalize_image
from ..method.rewards import BatchTargets, collate_targets
from ..method.targets import RewardTargets, choose_subset, prepare_targets

#: Share of episodes that get a fresh affine/elastic deformation (and so fresh targets).
DEFORM_PROBABILITY = 0.25


@dataclass
class Episode:
    """A batch of episodes ready to run: images (B, C, *S) and their reward targets."""

    image: torch.Tensor
    targets: BatchTargets
    names: list[str]
    prepare_seconds: float


@dataclass
class _Prepared:
    name: str
    image: np.ndarray  # (C, *S) float32 in [0, 1]
    labels: np.ndarray  # (*S) int32
    targets: RewardTargets | None  # cached targets (resize mode)


class Environment:
    """Draws augmented batches of episodes from training samples.

    samples: sequence of objects with ``name``, ``image`` and ``labels`` (see core.io.Sample).
    """

    def __init__(
        self,
        samples: Sequence,
        config: ColorRLConfig,
        device: torch.device,
        rng: np.random.Generator,
    ):
        if not samples:
            raise ValueError("No training samples: give at least one image with labels.")
        self.config = config
        self.device = device
        self.rng = rng
        self.samples = [self._prepare(s) for s in samples]

    def _prepare(self, sample) -> _Prepared:
        config = self.config
        image = normalize_image(sample.image, config.normalization, config.ndim)
        labels = np.asarray(sample.labels)
        if tuple(image.shape[1:]) != labels.shape:
            raise ValueError(
                f"Sample {sample.name!r}: image shape {tuple(image.shape[1:])} and labels shape "
                f"{labels.shape} differ; give labels of the image's spatial shape."
            )
        image = network_image(image, config)
        labels = network_labels(labels, config)
        targets = None
        if config.input_mode == "resize":
            targets = prepare_targets(labels, config.reward)
        return _Prepared(sample.name, image, labels.astype(np.int32), targets)

    def _crop(self, item: _Prepared) -> tuple[np.ndarray, np.ndarray]:
        size = tuple(self.config.input_size)
        image, labels = item.image, item.labels
        pad = [max(0, s - n) for s, n in zip(size, labels.shape)]
        if any(pad):
            widths = [(p // 2, p - p // 2) for p in pad]
            image = np.pad(image, [(0, 0), *widths], mode="reflect")
            labels = np.pad(labels, widths, mode="constant")
        start = [int(self.rng.integers(0, n - s + 1)) for s, n in zip(size, labels.shape)]
        region = tuple(slice(a, a + s) for a, s in zip(start, size))
        return image[(slice(None), *region)], labels[region]

    def _episode_sample(self, item: _Prepared) -> tuple[np.ndarray, RewardTargets]:
        augmenting = self.config.train.augment
        if self.config.input_mode == "crop":
            image, labels = self._crop(item)
            targets = None
        else:
            image, labels, targets = item.image, item.labels, item.targets
        if augmenting and self.rng.random() < DEFORM_PROBABILITY:
            image, labels = augment.deform(image, labels, self.rng)
            targets = None
        if augmenting:
            perm = augment.random_permutation(self.rng, labels.shape)
            image = perm.apply(image, self.config.ndim)
            if targets is not None:
                targets = targets.transformed(perm.flip_axes, perm.k, perm.axes)
            else:
                labels = perm.apply(labels, self.config.ndim)
            image = augment.intensity(image, self.rng)
        if targets is None:
            targets = prepare_targets(labels, self.config.reward)
        return image, targets

    def reset(self, batch_size: int, indices: Sequence[int] | None = None) -> Episode:
        """A new batch of episodes (random samples unless ``indices`` is given)."""
        start = time.perf_counter()
        if indices is None:
            indices = self.rng.integers(0, len(self.samples), size=batch_size)
        images, targets, names = [], [], []
        for index in indices:
            item = self.samples[int(index)]
            image, prepared = self._episode_sample(item)
            images.append(image)
            targets.append(prepared)
            names.append(item.name)
        masks = [choose_subset(t, self.rng, self.config.reward) for t in targets]
        batch = collate_targets(targets, self.device, masks=masks)
        image_tensor = torch.from_numpy(np.stack(images)).to(self.device)
        return Episode(image_tensor, batch, names, time.perf_counter() - start)
