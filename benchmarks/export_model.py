"""Make the bundled pretrained model from a training checkpoint, and score it.

The shipped ``nuclei-2d`` model is trained on the CC0 ``dsb2018_fluo`` set (the only one of the
benchmark sets the package may redistribute a model of):

    python -m benchmarks.learn --data DATA/dsb2018_fluo --recipe dsb --minutes 60
    python -m benchmarks.export_model runs/learn-dsb/model.best.pt --data DATA/dsb2018_fluo

Export keeps the configuration (T, input size, network, the minimum size chosen on validation)
and the network weights in float16 (half the size; they are cast back to float32 on loading),
drops the optimizer state, and records where the weights came from. Then both the source
checkpoint and the exported file are scored on every validation image and printed side by side,
to show whether the cast changed anything that matters.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ._report import ROOT, header

DEFAULT_OUT = ROOT / "src" / "napari_colorrl" / "core" / "model" / "weights" / "nuclei-2d.pt"
COLUMNS = ("sbd", "abs_dic", "ap50", "map", "aji")


def export(source: Path, out: Path, note: str) -> Path:
    """Write a weights-only float16 copy of ``source`` to ``out`` (atomically)."""
    from napari_colorrl.core.model.checkpoint import load_checkpoint, save_checkpoint

    checkpoint = load_checkpoint(source)
    state = {k: v.half() if v.is_floating_point() else v
             for k, v in checkpoint.model_state.items()}
    extra = {"source": note, "trained_updates": checkpoint.step,
             "trained_episodes": checkpoint.episodes}
    for key in ("best_score", "best_sbd", "validation", "training_scale"):
        if key in checkpoint.extra:
            extra[key] = checkpoint.extra[key]
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(out, config=checkpoint.config, model_state=state,
                           step=checkpoint.step, episodes=checkpoint.episodes, extra=extra)


def main() -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint written by training")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--data", type=Path, default=None,
                        help="score both files on DATA/val and print the scores")
    parser.add_argument("--name", default="nuclei-2d")
    args = parser.parse_args()

    from tqdm import tqdm

    from napari_colorrl.core.data.files import load_dataset_dir
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.metrics import evaluate, mean_metrics

    torch.set_num_threads(max(1, torch.get_num_threads()))
    note = (f"trained by benchmarks.learn on dsb2018_fluo (CC0); exported from "
            f"{args.checkpoint.name} by benchmarks.export_model")
    out = export(args.checkpoint, args.out, note)
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
        f"{config.min_size} px",
        "- use: `colorrl predict --model nuclei-2d --input IMAGES --output LABELS`, or "
        "\"bundled: nuclei-2d\" in the segmentation dock",
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
