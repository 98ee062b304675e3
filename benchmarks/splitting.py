"""Does a split step after the coloring cut merged objects? Post-processing screened on runs.

The coloring gives two touching objects the same color when the policy merged them; connected
components then return one object. This script colors every image once per checkpoint in one
untiled pass (``Segmenter.network_input``: the whole image, resized for 'resize' models), keeps
each step's probability p(a_t = 1) as well as the argmax actions, and compares ways from colors
to instances, scored at full size as the product scores:

- ``cc``: connected components of each color (the method as it is, docs/method.md);
- ``soft``: a boundary map from the step probabilities (the largest Sobel magnitude over the T
  maps), seeds where it is below a threshold inside each color, watershed on it, and the result
  cut again along every color border (so no two colors ever join);
- ``distance``: inside each color component, the distance to its border, seeds at its h-maxima
  and a watershed on it (the classical split of touching convex objects);
- ``absorb``: components below the minimum size go to the nearest larger one of the same
  connected foreground instead of being dropped (fragments of a leaf rejoin it);
- ``smooth``: each step's logit margin smoothed (Gaussian, sigma in network pixels) before the
  argmax, so that isolated pixels follow their surroundings at every step.
- ``depth-k``: the components of the colors after the first k of the T steps (a model's
  ``depth``, docs/method.md; ``cc`` is depth T).
- ``foreground``: a pixel is foreground only where step 0's p(a_0 = 1) reaches a threshold
  above the argmax's 0.5, then connected components of each color (a foreground too large, as
  in 3D, shrinks without retraining).

Each method's parameter and the minimum object size are chosen on the selection share carved
from train/ (as training chooses them) and the chosen setting is scored on val/. Runs given as
folders of ``benchmarks.levers`` or ``benchmarks.learn`` (config.json and model.best.pt).

    python -m benchmarks.splitting --data DATA/cvppp_a1 runs/levers-x/base-seed0 runs/...
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from napari_colorrl.core.method.postprocess import instances_from_colors

from ._report import header, pick

THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.3)
H_VALUES = (1.0, 2.0, 3.0, 5.0)
SIGMAS = (0.7, 1.0, 1.5)
FOREGROUND = (0.6, 0.7, 0.8, 0.9)


class Recorder:
    """A policy that records p(a_t = 1) of each step it is called for (numpy, (B, *S)); with
    ``sigma`` > 0 its logit margin is smoothed first (``smooth``) and the smoothed one used."""

    def __init__(self, model, sigma: float = 0.0):
        self.model = model
        self.sigma = sigma
        self.probabilities: list[np.ndarray] = []

    def __getattr__(self, name):  # encode_image and the rest come from the model
        return getattr(self.model, name)

    def __call__(self, image, channels, **kwargs):
        import torch

        out = self.model(image, channels, **kwargs)
        logits = out[0] if isinstance(out, tuple) else out
        if self.sigma > 0:  # the margin smoothed, as logits (0, margin)
            margin = smooth(logits[:, 1:2].float() - logits[:, :1].float(), self.sigma)
            logits = torch.cat([torch.zeros_like(margin), margin], 1)
        self.probabilities.append(torch.softmax(logits.float(), 1)[:, 1].cpu().numpy())
        return logits


def smooth(maps, sigma: float):
    """``scipy.ndimage.gaussian_filter`` over the spatial axes of (B, 1, *S) torch maps
    (borders replicated, 3 sigma), back as a tensor on the maps' device."""
    import torch
    from scipy.ndimage import gaussian_filter

    spatial = maps.ndim - 2
    out = gaussian_filter(maps.detach().cpu().numpy(), [0, 0] + [sigma] * spatial,
                          mode="nearest", truncate=3.0)
    return torch.from_numpy(out).to(maps.device)


def color_with_probabilities(segmenter, image, sigma: float = 0.0
                             ) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(colors, probabilities (T, *S)) at the network's resolution, and the image's shape;
    sigma > 0 smooths each step's logit margin first (``Recorder``)."""
    import torch

    from napari_colorrl.core.method.coloring import run_coloring

    data, shape = segmenter.network_input(image)
    tensor = torch.from_numpy(np.ascontiguousarray(data))[None].to(segmenter.device)
    recorder = Recorder(segmenter.model, sigma)
    result = run_coloring(recorder, tensor, segmenter.steps)
    return result.colors[0], np.stack([p[0] for p in recorder.probabilities]), shape


def cut_by_colors(regions: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Connected components of (region, color) pairs: a region never joins two colors."""
    key = regions.astype(np.int64) * (int(colors.max()) + 1) + colors.astype(np.int64)
    key[colors == 0] = 0
    return instances_from_colors(key)


def soft_split(colors: np.ndarray, probabilities: np.ndarray, threshold: float) -> np.ndarray:
    from skimage.filters import sobel
    from skimage.segmentation import watershed

    edges = np.max([sobel(p) for p in probabilities], axis=0)
    seeds = instances_from_colors(np.where(edges < threshold, colors, 0))
    regions = watershed(edges, seeds, mask=colors > 0)
    return cut_by_colors(regions, colors)


def distance_split(colors: np.ndarray, h: float) -> np.ndarray:
    from scipy import ndimage as ndi
    from skimage.measure import label
    from skimage.morphology import h_maxima
    from skimage.segmentation import find_boundaries, watershed

    components = instances_from_colors(colors)
    inside = (components > 0) & ~find_boundaries(components, mode="inner")
    distance = ndi.distance_transform_edt(inside)
    seeds = label(h_maxima(distance, h), connectivity=colors.ndim)
    regions = watershed(-distance, seeds, mask=components > 0)
    return cut_by_colors(regions, colors)


def absorb_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Components below ``min_size`` given to the nearest larger one of the same connected
    foreground instead of dropped (those with none are dropped); relabelled 1..N."""
    from scipy import ndimage as ndi
    from skimage.measure import label

    from napari_colorrl.core.method.postprocess import remove_small

    large = remove_small(labels, min_size)
    if not large.any():
        return large
    nearest = tuple(ndi.distance_transform_edt(large == 0, return_distances=False,
                                               return_indices=True))
    foreground = label(labels > 0, connectivity=labels.ndim)
    same = foreground == foreground[nearest]
    return remove_small(np.where((labels > 0) & same, large[nearest], 0), 0)


FAMILIES = ("cc", "depth", "soft", "distance", "absorb", "smooth", "foreground")


def methods(colors: np.ndarray, probabilities: np.ndarray, families=FAMILIES
            ) -> dict[str, np.ndarray]:
    """Labels at the network's resolution, one per method and parameter (of ``families``;
    ``cc`` always)."""
    out = {"cc": instances_from_colors(colors)}
    if "depth" in families:
        for k in range(1, len(probabilities)):  # the colors after the first k steps
            first = np.bitwise_and(colors, (1 << k) - 1)
            out[f"depth-{k}"] = instances_from_colors(first)
    for t in THRESHOLDS if "soft" in families else ():
        out[f"soft {t:g}"] = soft_split(colors, probabilities, t)
    for h in H_VALUES if "distance" in families else ():
        out[f"distance {h:g}"] = distance_split(colors, h)
    for p in FOREGROUND if "foreground" in families else ():
        out[f"foreground {p:g}"] = instances_from_colors(np.where(probabilities[0] >= p, colors, 0))
    return out


def score_all(segmenter, samples, families=FAMILIES) -> dict[str, dict[int, list[dict]]]:
    """scores[setting][min_size] = per-image metrics."""
    from napari_colorrl.core.data.normalize import resize_nearest
    from napari_colorrl.core.metrics import evaluate, evaluate_min_sizes
    from napari_colorrl.core.training.selection import min_size_candidates

    scores: dict[str, dict[int, list[dict]]] = {}

    def add(setting: str, size: int, row: dict) -> None:
        scores.setdefault(setting, {}).setdefault(size, []).append(row)

    def add_sizes(setting: str, full: np.ndarray) -> None:
        pixels = [plan.default_min_size(size) for size in sizes]
        for size, row in zip(sizes, evaluate_min_sizes(full, gt, pixels)):
            add(setting, size, row)

    for sample in samples:
        gt = np.asarray(sample.labels)
        colors, probabilities, shape = color_with_probabilities(segmenter, sample.image)
        plan = segmenter.plan(shape)
        sizes = min_size_candidates(segmenter.config.min_size, int(np.prod(shape)))
        for setting, labels in methods(colors, probabilities, families).items():
            full = resize_nearest(labels, tuple(shape))
            add_sizes(setting, full)
            for size in sizes if setting == "cc" and "absorb" in families else ():
                add("absorb", size, evaluate(absorb_small(full, plan.default_min_size(size)), gt))
        for sigma in SIGMAS if "smooth" in families else ():
            colors = color_with_probabilities(segmenter, sample.image, sigma)[0]
            add_sizes(f"smooth {sigma:g}", instances_from_colors(colors, output_shape=shape))
    return scores


def screen(run: Path, data: Path, families=FAMILIES) -> dict[str, dict]:
    """Per method: the setting and size chosen on the selection share, and val/'s means."""
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.metrics import mean_metrics
    from napari_colorrl.core.training.selection import selection_score
    from napari_colorrl.core.training.setup import TrainingRequest, prepare_training

    # On the selection share carved from train/ whatever the run's config says (a folder made
    # by hand around a bundled model holds its config, whose selection is 'val').
    setup = prepare_training(TrainingRequest(data=data, config_file=run / "config.json",
                                             settings={"train.selection": "train"}))
    if not setup.scored:
        raise SystemExit(f"{data} has no val/ to score.")
    segmenter = Segmenter.load(run / "model.best.pt", device="cpu", fast_layout=False)
    segmenter.use_depth(0)  # all T steps, whatever depth the model was saved with
    chosen_on = score_all(segmenter, setup.val, families)
    scored = score_all(segmenter, setup.scored, families)
    out: dict[str, dict] = {}
    for setting in chosen_on:
        family = setting.split()[0]
        for size, rows in chosen_on[setting].items():
            value = selection_score(mean_metrics(rows))
            if family not in out or value > out[family]["selection"]:
                val = mean_metrics(scored[setting][size])
                out[family] = {"setting": setting, "min_size": size, "selection": value,
                               **{k: val[k] for k in ("sbd", "abs_dic", "dic", "ap50",
                                                      "voi_split", "voi_merge")}}
    return out


def settings(rows: list[dict]) -> str:
    return ", ".join(f"{r['setting']} (size {r['min_size']})" for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train/ and val/")
    parser.add_argument("runs", type=Path, nargs="+",
                        help="run folders holding config.json and model.best.pt")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--only", default=",".join(FAMILIES),
                        help=f"comma-separated methods to screen (default: all of "
                        f"{', '.join(FAMILIES)}; cc is always scored)")
    args = parser.parse_args()
    families = pick(parser, args.only, FAMILIES, "methods")
    missing = [r for r in args.runs if not (r / "model.best.pt").is_file()]
    if missing or not args.data.is_dir():
        print(f"not found: {', '.join(map(str, missing)) or args.data}")
        return 1
    results = {str(run): screen(run, args.data, families) for run in args.runs}
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    shown = list(next(iter(results.values())))
    lines = [*header("Split steps after the coloring"), "",
             "| method | setting chosen per run | SBD per run | SBD | abs DiC | AP50 | "
             "VOI split | VOI merge | SBD vs cc | AP50 vs cc |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    base = statistics.mean(r["cc"]["sbd"] for r in results.values())
    base_ap = statistics.mean(r["cc"]["ap50"] for r in results.values())
    for family in shown:
        rows = [r[family] for r in results.values()]
        sbds = [r["sbd"] for r in rows]
        spread = f" ± {statistics.stdev(sbds):.3f}" if len(sbds) > 1 else ""
        lines.append(
            f"| {family} | {settings(rows)} | "
            f"{', '.join(f'{v:.3f}' for v in sbds)} | {statistics.mean(sbds):.3f}{spread} | "
            + " | ".join(f"{statistics.mean(r[k] for r in rows):.3f}"
                         for k in ("abs_dic", "ap50", "voi_split", "voi_merge"))
            + f" | {statistics.mean(sbds) / base:.2f}x | "
            f"{statistics.mean(r['ap50'] for r in rows) / max(base_ap, 1e-9):.2f}x |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
