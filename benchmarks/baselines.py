"""The paper's baselines on the project's own U-Net, and the "perfect foreground" reference.

* U-Net + CC: the ColorRL network (same widths, attention gates, input size, normalisation and
  augmentation as the ColorRL run it is compared with) trained as a plain foreground classifier
  (cross-entropy on its two policy logits; its step-channel input stays zero, as at a first
  coloring step); instances = connected components of ``p(foreground) > threshold``, the threshold
  chosen on the validation images.
* U-Net + watershed: the same foreground, split by a watershed on its distance transform from
  peak markers (``skimage.feature.peak_local_max``), the peaks' minimum distance chosen on the
  validation images.
* Perfect foreground + CC: the true foreground's connected components, i.e. what any method
  gets without splitting touching objects.

Choices are made with the score ColorRL's own minimum-size choice maximises (SBD + AP50,
``core.training.selection.selection_score``), on the images they are given: ``benchmarks.compare``
gives the selection share carved from train/, as for ColorRL's checkpoint and minimum size, and
scores val/.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.measure import label as label_regions
from skimage.segmentation import watershed

from napari_colorrl.core.config import ColorRLConfig
from napari_colorrl.core.data import augment
from napari_colorrl.core.data.normalize import network_labels, normalize_image, resize_image
from napari_colorrl.core.method.postprocess import remove_small
from napari_colorrl.core.metrics import evaluate, mean_metrics
from napari_colorrl.core.model.networks import build_network
from napari_colorrl.core.runtime import resolve_device
from napari_colorrl.core.training.environment import DEFORM_PROBABILITY
from napari_colorrl.core.training.selection import selection_score

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_DISTANCES = (2, 3, 5, 8, 12, 16, 24)


@dataclass
class UNetProgress:
    """One update of the foreground U-Net."""

    update: int
    elapsed: float
    loss: float
    progress: float


class ForegroundUNet:
    """The project's U-Net as a foreground classifier (training and prediction)."""

    def __init__(self, config: ColorRLConfig, device: str = "auto", seed: int = 0):
        # One step channel, always zero: the network sees exactly the image.
        self.config = config.replace(steps=1)
        self.device = resolve_device(device)
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.model = build_network(self.config).to(self.device)

    def _prepare(self, samples: Sequence) -> list[tuple[np.ndarray, np.ndarray]]:
        cfg = self.config
        out = []
        for s in samples:
            image = normalize_image(s.image, cfg.normalization, cfg.ndim)
            labels = np.asarray(s.labels)
            if cfg.input_mode == "resize":
                image = resize_image(image, tuple(cfg.input_size))
                labels = network_labels(labels, cfg)
            out.append((image.astype(np.float32), (labels > 0).astype(np.int64)))
        return out

    def _crop(self, image: np.ndarray, fg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        size = tuple(self.config.input_size)
        pad = [max(0, s - n) for s, n in zip(size, fg.shape)]
        if any(pad):
            widths = [(p // 2, p - p // 2) for p in pad]
            image = np.pad(image, [(0, 0), *widths], mode="reflect")
            fg = np.pad(fg, widths)
        start = [int(self.rng.integers(0, n - s + 1)) for s, n in zip(size, fg.shape)]
        region = tuple(slice(a, a + s) for a, s in zip(start, size))
        return image[(slice(None), *region)], fg[region]

    def _batch(self, data, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented as ColorRL's environment does: deformation, flips/rot90, intensity."""
        images, targets = [], []
        for index in self.rng.integers(0, len(data), size=batch_size):
            image, fg = data[int(index)]
            if self.config.input_mode == "crop":
                image, fg = self._crop(image, fg)
            if self.rng.random() < DEFORM_PROBABILITY:
                image, fg = augment.deform(image, fg, self.rng)
            perm = augment.random_permutation(self.rng, fg.shape)
            image = augment.intensity(perm.apply(image, self.config.ndim), self.rng)
            images.append(image)
            targets.append(perm.apply(fg, self.config.ndim))
        return (torch.from_numpy(np.stack(images)).float().to(self.device),
                torch.from_numpy(np.stack(targets)).to(self.device))

    def train(self, samples: Sequence, minutes: float, *, lr: float = 1e-3,
              batch_size: int | None = None) -> Iterator[UNetProgress]:
        """Adam with cross-entropy for ``minutes``; lr divided by 10 for the last 20%."""
        data = self._prepare(samples)
        batch_size = batch_size or self.config.train.batch_size
        optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        budget = 60.0 * minutes
        start = time.perf_counter()
        update = 0
        self.model.train()
        while True:
            elapsed = time.perf_counter() - start
            if elapsed >= budget:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr if elapsed < 0.8 * budget else lr / 10
            image, target = self._batch(data, batch_size)
            steps = torch.zeros((image.shape[0], 1, *image.shape[2:]), device=self.device)
            logits, _ = self.model(image, steps)
            loss = F.cross_entropy(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            update += 1
            elapsed = time.perf_counter() - start
            yield UNetProgress(update, elapsed, float(loss.detach()), min(1.0, elapsed / budget))

    @torch.inference_mode()
    def probability(self, image: np.ndarray) -> np.ndarray:
        """p(foreground) at the image's own spatial shape (linear resize back)."""
        cfg = self.config
        data = normalize_image(image, cfg.normalization, cfg.ndim)
        shape = tuple(data.shape[1:])
        if cfg.input_mode == "resize":
            data = resize_image(data, tuple(cfg.input_size))
        tensor = torch.from_numpy(data.astype(np.float32))[None].to(self.device)
        steps = torch.zeros((1, 1, *tensor.shape[2:]), device=self.device)
        self.model.eval()
        logits, _ = self.model(tensor, steps)
        prob = torch.softmax(logits.float(), dim=1)[0, 1].cpu().numpy()
        if prob.shape != shape:
            prob = resize_image(prob[None], shape)[0]
        return prob


def cc_instances(prob: np.ndarray, threshold: float, min_size: int = 0) -> np.ndarray:
    """Connected components of ``prob > threshold`` (full connectivity)."""
    return remove_small(label_regions(prob > threshold, connectivity=prob.ndim), min_size)


def watershed_instances(prob: np.ndarray, threshold: float, min_distance: int,
                        min_size: int = 0) -> np.ndarray:
    """Watershed of the foreground's distance transform from its peaks (one per component at
    least, so no component is lost)."""
    mask = prob > threshold
    components = label_regions(mask, connectivity=prob.ndim)
    distance = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(distance, min_distance=int(min_distance), labels=components,
                           exclude_border=False)
    markers = np.zeros(mask.shape, dtype=np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # Components without a peak (tiny or flat) keep their own marker, at their first pixel.
    ids, first = np.unique(components.ravel(), return_index=True)
    missing = (ids > 0) & ~np.isin(ids, components[tuple(peaks.T)])
    markers.flat[first[missing]] = np.arange(len(peaks) + 1, len(peaks) + 1 + missing.sum())
    labels = watershed(-distance, markers, mask=mask)
    return remove_small(labels, min_size)


def perfect_foreground_cc(gt: np.ndarray) -> np.ndarray:
    """The true foreground's connected components: no splitting of touching objects."""
    return label_regions(np.asarray(gt) > 0, connectivity=np.asarray(gt).ndim)


def _quick_scores(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> dict[str, float]:
    return mean_metrics([evaluate(p, g, ("sbd", "ap50", "abs_dic")) for p, g in zip(preds, gts)])


def choose(candidates: Sequence, make: Callable[[object], list[np.ndarray]],
           gts: Sequence[np.ndarray]) -> tuple[object, dict[str, float]]:
    """The candidate whose predictions maximise SBD + AP50 on the validation images."""
    best, best_scores = None, None
    for candidate in candidates:
        scores = _quick_scores(make(candidate), gts)
        if best_scores is None or selection_score(scores) > selection_score(best_scores):
            best, best_scores = candidate, scores
    return best, best_scores
