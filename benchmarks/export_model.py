"""Make a bundled pretrained model from a training checkpoint, and score it.

A shipped model is trained on data the package may redistribute a model of: ``nuclei-2d`` on the
CC0 ``dsb2018_fluo`` set, ``nuclei-3d`` on round 3D nuclei generated in code
(``benchmarks.synthetic_set --kind round``):

    python -m benchmarks.learn --data DATA/dsb2018_fluo --recipe dsb --minutes 60
    python -m benchmarks.export_model runs/learn-dsb/model.best.pt --data DATA/dsb2018_fluo

    python -m benchmarks.synthetic_set runs/synthetic-round3d --kind round
    python -m benchmarks.learn --data runs/synthetic-round3d --recipe gonuclear3d --minutes 25
    python -m benchmarks.export_model runs/learn-gonuclear3d/model.best.pt \
        --data runs/synthetic-round3d --name nuclei-3d

Export keeps the configuration (T, input size, network, the minimum size and the depth chosen
at training) and the network weights in float16 (half the size; they are cast back to float32
on loading), drops the optimizer state, and records where the weights came from. Then both the
source checkpoint and the exported file are scored on every validation image and printed side by
side, to show whether the cast changed anything that matters. ``--reselect`` chooses the minimum
size and the depth again (docs/method.md, "Depth") on the selection share carved from
DATA/train, as training now does, for a model trained before the choice existed:

    python -m benchmarks.export_model src/napari_colorrl/core/model/weights/nuclei-2d.pt \
        --data DATA/dsb2018_fluo --reselect --out runs/nuclei-2d.pt
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ._report import ROOT, header

WEIGHTS = ROOT / "src" / "napari_colorrl" / "core" / "model" / "weights"
#: where a data folder came from, for the note kept in the exported file
SOURCES = {"dsb2018_fluo": "dsb2018_fluo (CC0)",
           "synthetic-round3d": "synthetic-round3d (generated in code by "
                                "benchmarks.synthetic_set --kind round)"}
COLUMNS = ("sbd", "abs_dic", "ap50", "map", "aji")


def reselect(source: Path, data: Path) -> dict:
    """The minimum size and depth chosen for ``source`` on the selection share of ``data``
    (``validate`` as training runs it), with the scores there."""
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.training.selection import validate
    from napari_colorrl.core.training.setup import TrainingRequest, prepare_training

    # The selection share, never val/ (which the export scores): as the benchmarks choose.
    setup = prepare_training(TrainingRequest(data=data, init=source,
                                             settings={"train.selection": "train"}))
    if not setup.scored:
        raise SystemExit(f"{data} has no val/ to set aside: the choice would be made on what "
                         f"the export scores.")
    segmenter = Segmenter.load(source, device="cpu", fast_layout=False)
    return validate(segmenter.model, segmenter.config, setup.val, segmenter.device,
                    choose_min_size=True, choose_depth=True, scale=segmenter.scale)


def export(source: Path, out: Path, note: str, choice: dict | None = None) -> Path:
    """Write a weights-only float16 copy of ``source`` to ``out`` (atomically), with the
    minimum size and depth of ``choice`` (``reselect``) when given."""
    from napari_colorrl.core.model.checkpoint import load_checkpoint, save_checkpoint

    checkpoint = load_checkpoint(source)
    config = checkpoint.config
    if choice is not None:
        config = config.replace(min_size=int(choice["min_size"]), depth=int(choice["depth"]))
    state = {k: v.half() if v.is_floating_point() else v
             for k, v in checkpoint.model_state.items()}
    extra = {"source": note, "trained_updates": checkpoint.step,
             "trained_episodes": checkpoint.episodes}
    for key in ("best_score", "best_sbd", "validation", "training_scale"):
        if key in checkpoint.extra:
            extra[key] = checkpoint.extra[key]
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(out, config=config, model_state=state,
                           step=checkpoint.step, episodes=checkpoint.episodes, extra=extra)


def main() -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint written by training")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: the package's weights folder, NAME.pt")
    parser.add_argument("--data", type=Path, default=None,
                        help="the training data's folder: named in the file's note, and both "
                        "files are scored on DATA/val")
    parser.add_argument("--name", default="nuclei-2d")
    parser.add_argument("--reselect", action="store_true",
                        help="choose the minimum size and the depth again on the selection "
                        "share carved from DATA/train (needs --data)")
    args = parser.parse_args()
    if args.reselect and args.data is None:
        parser.error("--reselect chooses on DATA's selection share: give --data")
    out_path = args.out or WEIGHTS / f"{args.name}.pt"
    trained_on = SOURCES.get(args.data.name, args.data.name) if args.data else (
        SOURCES["dsb2018_fluo"])

    from tqdm import tqdm

    from napari_colorrl.core.data.files import load_dataset_dir
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.metrics import evaluate, mean_metrics

    torch.set_num_threads(max(1, torch.get_num_threads()))
    note = (f"trained by benchmarks.learn on {trained_on}; exported from "
            f"{args.checkpoint.name} by benchmarks.export_model")
    choice = None
    if args.reselect:
        choice = reselect(args.checkpoint, args.data)
        print(f"chosen on the selection share: min size {int(choice['min_size'])} px, depth "
              f"{int(choice['depth'])} (SBD {choice['sbd']:.3f}, AP50 {choice['ap50']:.3f})")
        note += "; minimum size and depth chosen again with --reselect"
    out = export(args.checkpoint, out_path, note, choice)
    size_mb = out.stat().st_size / 1e6
    print(f"wrote {out} ({size_mb:.2f} MB)")
    if args.data is None:
        return 0
    _, val = load_dataset_dir(args.data)
    scores, timing = {}, {}
    for label, path in (("training checkpoint (float32)", args.checkpoint),
                        ("bundled model (float16 weights)", out)):
        segmenter = Segmenter.load(path, device="cpu")
        results, start = [], time.perf_counter()
        for sample in tqdm(val, desc=label, unit="image"):
            results.append(evaluate(segmenter.segment(sample.image).instances, sample.labels))
        timing[label] = 1000 * (time.perf_counter() - start) / max(1, len(val))
        scores[label] = mean_metrics(results)
        print(f"{label}: " + ", ".join(f"{k} {scores[label][k]:.3f}" for k in COLUMNS))
    config = Segmenter.load(out, device="cpu").config
    lines = [
        "",
        *header(f"Pretrained model: {args.name}"),
        f"- file: `{out}`, {size_mb:.2f} MB; weights float16; "
        f"T = {config.steps}; network {list(config.network.features)} at "
        f"{'x'.join(map(str, config.input_size))} ({config.input_mode}); minimum object size "
        f"{config.min_size} px; depth {config.passes} of {config.steps} steps",
        f"- use: `colorrl predict --model {args.name} --input IMAGES --output LABELS`, or "
        f"\"bundled: {args.name}\" in the segmentation dock",
        f"- scored on all {len(val)} validation images of `{args.data.name}` at full size:",
        "",
        "| model | " + " | ".join(COLUMNS) + " | ms per image |",
        "|---|" + "---|" * (len(COLUMNS) + 1),
        *[f"| {label} | " + " | ".join(f"{s[k]:.3f}" for k in COLUMNS)
          + f" | {timing[label]:.0f} |" for label, s in scores.items()],
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
