"""Where does a trained model lose? An error breakdown of one checkpoint on validation images.

For a run that plateaus below its bar this tells which part of the method to work on:

- foreground: Dice of the predicted foreground against the true one, and their area ratio
  (above 1: objects too fat, as a low beta makes them; below 1: too thin or missed);
- instance errors: true objects merged (their main predicted object also holds another true
  object), missed (mostly background) and split (two predicted objects each hold > 20 % of it);
- separation: the model's instances against the connected components of its own foreground (what
  the coloring adds to a foreground mask) and of the true foreground (what a perfect foreground
  alone would give);
- what each error costs: the scores the model's instances would reach with their merges undone
  (each predicted object cut between the true objects it is the main one of), with their
  fragments joined (the predicted objects lying mostly in one true object given its id), and
  with both (merges undone, then fragments joined): oracles that use the true labels, to tell
  whether merges or fragments lose more;
- the pipeline's ceiling: the instances of the oracle coloring below (every object one color,
  at the network's resolution, then the product's connected components and minimum size);
- the minimum size: at each candidate size, the model's instances, the oracle coloring's and
  the true objects themselves with those under the size removed, so the cost of the size the
  model needs against its fragments shows beside what it costs a perfect coloring;
- reward headroom: the rewards of the model's argmax coloring against those of an oracle coloring
  (a greedy coloring of the true neighbour graph: every object one color, neighbours apart), at
  the network's resolution, summed over the T steps, mean per pixel.

    python -m benchmarks.diagnose --model runs/learn-cvppp/model.best.pt --data DATA/cvppp_a1
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from napari_colorrl.core.method.rewards import PART_NAMES

from ._report import header

SEPARATION = ("sbd", "abs_dic", "ap50", "voi_split", "voi_merge", "arand")
SIZE_ROWS = ("model", "oracle coloring's instances", "true objects")


def oracle_steps(targets, steps: int) -> np.ndarray:
    """(T, *S) uint8 step maps of a coloring that earns the reward's maximum: background 0, every
    instance one odd color (a_0 = 1), neighbours (any radius) different colors, assigned greedily
    with the most-connected instances first. Raises ValueError when 2^(T-1) colors are too few."""
    n = targets.n_instances
    adjacent: list[set[int]] = [set() for _ in range(n + 1)]
    for pairs in targets.neighbours:
        for i, j in pairs:
            adjacent[int(i)].add(int(j))
    color = np.full(n + 1, -1, np.int64)  # -1: not yet colored
    for i in sorted(range(1, n + 1), key=lambda i: -len(adjacent[i])):
        used = {int(color[j]) for j in adjacent[i]}
        free = [c for c in range(2 ** (steps - 1)) if c not in used]
        if not free:
            raise ValueError(f"{2 ** (steps - 1)} colors are too few for instance {i}.")
        color[i] = free[0]
    color[0] = 0
    code = np.where(targets.instance > 0, 1 + 2 * color[targets.instance], 0)
    return np.stack([(code >> k) & 1 for k in range(steps)]).reshape(
        steps, *targets.shape).astype(np.uint8)


def reward_sums(targets, step_maps: np.ndarray) -> dict[str, float]:
    """Each reward part summed over the T steps, mean over pixels."""
    from napari_colorrl.core.method.rewards import collate_targets, episode_rewards

    batch = collate_targets([targets], "cpu")
    actions = torch.from_numpy(np.asarray(step_maps, np.int64))[:, None]
    parts = episode_rewards(batch, actions)
    return {k: float(sum(getattr(p, k).mean() for p in parts)) for k in PART_NAMES}


def object_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, int]:
    """Counts of true objects merged, missed and split by ``pred`` (see the module docstring)."""
    counts = {"objects": 0, "merged": 0, "missed": 0, "split": 0}
    owners = []
    for g in np.unique(gt[gt > 0]):
        inside = pred[gt == g]
        values, sizes = np.unique(inside, return_counts=True)
        owner = int(values[np.argmax(sizes)])
        counts["objects"] += 1
        counts["missed"] += owner == 0
        counts["split"] += int(((values > 0) & (sizes > 0.2 * inside.size)).sum() >= 2)
        if owner:
            owners.append(owner)
    _, shared = np.unique(owners, return_counts=True)
    counts["merged"] = int(shared[shared > 1].sum())
    return counts


def overlaps(pred: np.ndarray, gt: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """counts[p, g]: the pixels of predicted id p in true id g (0 included), only those of
    ``where`` when given."""
    counts = np.zeros((int(pred.max()) + 1, int(gt.max()) + 1), np.int64)
    if where is None:
        np.add.at(counts, (pred.ravel(), gt.ravel()), 1)
    else:
        np.add.at(counts, (pred[where], gt[where]), 1)
    return counts


def main_objects(pred: np.ndarray, gt: np.ndarray, share: float = 0.0) -> np.ndarray:
    """For each predicted id 0..max, the true object it overlaps most, where that overlap is at
    least ``share`` of the predicted object (else 0; 0 for id 0)."""
    counts = overlaps(pred, gt)
    sizes = counts.sum(1)
    counts[:, 0] = 0
    main = counts.argmax(1)
    main[counts[np.arange(main.size), main] < share * sizes] = 0
    main[0] = 0
    return main


def merges_undone(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Each predicted object cut between the true objects it is the main predicted object of
    (as ``object_errors`` counts merges); its other pixels (background, slivers of other true
    objects) stay with the largest of its pieces: the instances without their merges."""
    from .splitting import cut_by_colors

    pred, gt = np.asarray(pred, np.int64), np.asarray(gt, np.int64)
    main_pred = main_objects(gt, pred)  # each true object's main predicted object
    owned = (gt > 0) & (main_pred[gt] == pred) & (pred > 0)
    # Each predicted object's largest owned true object (0: none; owned pixels have gt > 0).
    largest = overlaps(pred, gt, where=owned).argmax(1)
    owner = np.where(owned, gt, largest[pred])
    return cut_by_colors(owner, pred)


def fragments_joined(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The predicted objects that lie mostly (over half) in the same true object joined into
    one (the others keep their own id): the instances without their fragments."""
    pred, gt = np.asarray(pred, np.int64), np.asarray(gt, np.int64)
    main = main_objects(pred, gt, share=0.5)
    ids = np.arange(main.size)
    owner = np.where(main > 0, main, ids + int(gt.max()))
    owner[0] = 0
    return np.unique(owner, return_inverse=True)[1].reshape(-1)[pred]


def oracle_instances(targets, steps: int, connectivity: int | None,
                     shape: tuple[int, ...]) -> np.ndarray:
    """The product's instances (connected components of each color, at the image's ``shape``,
    no minimum size) of the oracle coloring of ``targets`` (``oracle_steps``)."""
    from napari_colorrl.core.method.postprocess import instances_from_colors

    bits = oracle_steps(targets, steps).astype(np.int64)
    code = sum(bits[k] << k for k in range(steps))
    return instances_from_colors(code, connectivity=connectivity, output_shape=shape)


def diagnose(segmenter, samples) -> dict:
    """Sums and means of the figures above over ``samples``."""
    from skimage.measure import label

    from napari_colorrl.core.data.normalize import network_labels, resize_nearest
    from napari_colorrl.core.method.postprocess import remove_small
    from napari_colorrl.core.method.targets import prepare_targets
    from napari_colorrl.core.metrics import evaluate, evaluate_min_sizes, mean_metrics
    from napari_colorrl.core.training.selection import min_size_candidates

    config = segmenter.config
    overlap = predicted = true = 0
    errors: Counter = Counter()
    scores: dict[str, list] = {"ColorRL": [], "merges undone (oracle)": [],
                               "fragments joined (oracle)": [],
                               "both oracles": [],
                               "oracle coloring (one color per object)": [],
                               "components of the model's foreground": [],
                               "components of the true foreground": []}
    rewards: dict[str, list] = {"model (argmax)": [], "oracle coloring": []}
    by_size: dict[str, dict[int, list]] = {k: {} for k in SIZE_ROWS}
    for sample in samples:
        # One segmentation per image, as the product makes it (``Segmenter.segment``: its
        # plan, tiles and statistics): its instances are scored, and its step maps, at the
        # labels' resolution in training (``network_labels``), give the rewards; its instances
        # without a minimum size come from the same objects (``instances_of``).
        result = segmenter.segment(sample.image)
        size = segmenter.default_min_size(result.plan)
        steps, instances = result.steps, result.instances
        targets = prepare_targets(network_labels(sample.labels, config), config.reward)
        net_steps = resize_nearest(steps, (steps.shape[0], *targets.shape))
        fg, gt_fg = steps[0] > 0, sample.labels > 0
        overlap += int((fg & gt_fg).sum())
        predicted += int(fg.sum())
        true += int(gt_fg.sum())
        errors.update(object_errors(instances, sample.labels))
        scores["ColorRL"].append(evaluate(instances, sample.labels))
        # The oracles' pieces below the model's minimum size are dropped, as the product drops
        # its own.
        cut = remove_small(merges_undone(instances, sample.labels), size)
        scores["merges undone (oracle)"].append(evaluate(cut, sample.labels))
        scores["fragments joined (oracle)"].append(
            evaluate(fragments_joined(instances, sample.labels), sample.labels))
        scores["both oracles"].append(
            evaluate(fragments_joined(cut, sample.labels), sample.labels))
        # Every candidate size of each row from one contingency table (``evaluate_min_sizes``).
        oracle = oracle_instances(targets, config.steps, config.connectivity,
                                  sample.labels.shape)
        candidates = min_size_candidates(size, sample.labels.size)
        unsized = (segmenter.instances_of(result, 0), oracle, np.asarray(sample.labels, np.int64))
        for key, labels in zip(SIZE_ROWS, unsized, strict=True):
            rows = evaluate_min_sizes(labels, sample.labels, candidates)
            for candidate, row in zip(candidates, rows, strict=True):
                by_size[key].setdefault(candidate, []).append(row)
        scores["oracle coloring (one color per object)"].append(
            by_size["oracle coloring's instances"][size][-1])
        for key, mask in (("components of the model's foreground", fg),
                          ("components of the true foreground", gt_fg)):
            components = label(mask, connectivity=config.ndim)
            scores[key].append(evaluate(components, sample.labels))
        rewards["model (argmax)"].append(reward_sums(targets, net_steps))
        rewards["oracle coloring"].append(reward_sums(targets, oracle_steps(targets, config.steps)))
    return {
        "foreground_dice": 2 * overlap / max(1, predicted + true),
        "foreground_ratio": predicted / max(1, true),
        "errors": dict(errors),
        "scores": {k: mean_metrics(v) for k, v in scores.items()},
        "min_size": size,
        "by_size": {k: {z: mean_metrics(v) for z, v in rows.items()}
                    for k, rows in by_size.items()},
        "rewards": {k: {p: float(np.mean([r[p] for r in v])) for p in v[0]}
                    for k, v in rewards.items()},
    }


def report(result: dict, model: Path, n_images: int, name: str) -> str:
    e = result["errors"]
    share = {k: e[k] / max(1, e["objects"]) for k in ("merged", "missed", "split")}
    lines = [
        *header(f"Diagnosis: {name}"),
        f"- model: `{model}`, {n_images} validation images, scored at full size",
        f"- foreground Dice {result['foreground_dice']:.3f}, predicted / true foreground area "
        f"{result['foreground_ratio']:.3f}",
        f"- of {e['objects']} true objects: merged {e['merged']} ({share['merged']:.0%}), "
        f"missed {e['missed']} ({share['missed']:.0%}), split {e['split']} "
        f"({share['split']:.0%})",
        "",
        "| instances | " + " | ".join(SEPARATION) + " |",
        "|---|" + "---|" * len(SEPARATION),
    ]
    lines += [f"| {k} | " + " | ".join(f"{v[m]:.3f}" for m in SEPARATION) + " |"
              for k, v in result["scores"].items()]
    sizes = sorted(result["by_size"]["model"])
    lines += ["", f"SBD (abs DiC) with the objects under each minimum size removed (pixels of "
              f"the image; the model's is {result['min_size']}):", "",
              "| instances | " + " | ".join(str(z) for z in sizes) + " |",
              "|---|" + "---|" * len(sizes)]
    lines += [f"| {k} | " + " | ".join(f"{rows[z]['sbd']:.3f} ({rows[z]['abs_dic']:.1f})"
                                       for z in sizes) + " |"
              for k, rows in result["by_size"].items()]
    parts = PART_NAMES
    lines += ["", "Rewards at the network's resolution, summed over the T steps, mean per pixel:",
              "", "| coloring | " + " | ".join(parts) + " |", "|---|" + "---|" * len(parts)]
    lines += [f"| {k} | " + " | ".join(f"{v[p]:.3f}" for p in parts) + " |"
              for k, v in result["rewards"].items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="checkpoint to diagnose")
    parser.add_argument("--data", type=Path, required=True, help="folder with val/")
    parser.add_argument("--name", default=None, help="name in the title (default: data folder)")
    parser.add_argument("--max-images", type=int, default=0, help="first N images (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from napari_colorrl.core.data.files import find_split, list_pairs, load_pairs
    from napari_colorrl.core.inference import Segmenter

    if not (args.data / "val").is_dir():
        print(f"{args.data / 'val'} not found: nothing to diagnose")
        return 1
    samples = load_pairs(list_pairs(*find_split(args.data, "val")))
    samples = samples[: args.max_images] if args.max_images else samples
    segmenter = Segmenter.load(args.model, device="cpu")
    text = report(diagnose(segmenter, samples), args.model, len(samples),
                  args.name or args.data.name)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
