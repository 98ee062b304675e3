"""Plot a learning curve from the JSON lines written by ``colorrl train --log FILE``.

Top: the reward parts (foreground, background, split, merge; running mean) against training
time. Bottom: validation SBD and AP50 (and |DiC| on a second axis) against training time.

    python -m benchmarks.plot_curve run.jsonl --out docs/images/cvppp-curve.png --title CVPPP
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < 2:
        return values
    window = max(1, min(window, len(values)))
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def plot(rows: list[dict], out: Path, title: str = "ColorRL training", window: int = 25) -> Path:
    """Draw the curve of the log rows (one dict per update) to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("the log is empty")
    minutes = np.array([r["elapsed"] for r in rows]) / 60.0
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for key, label in [("reward_foreground", "foreground (step 0)"),
                       ("reward_background", "background"), ("reward_split", "split"),
                       ("reward_merge", "merge"), ("reward", "total")]:
        values = running_mean(np.array([r[key] for r in rows]), window)
        top.plot(minutes, values, label=label, lw=1.5 if key == "reward" else 1.0)
    top.axhline(0, color="k", lw=0.5)
    top.set_ylabel("reward per pixel (sum over steps)")
    top.legend(fontsize=8, ncol=3)
    top.set_title(title)
    val = [(m, r["validation"]) for m, r in zip(minutes, rows) if r.get("validation")]
    if val:
        t = [m for m, _ in val]
        bottom.plot(t, [v["sbd"] for _, v in val], "o-", label="val SBD")
        bottom.plot(t, [v["ap50"] for _, v in val], "s-", label="val AP50")
        bottom.set_ylim(0, 1)
        bottom.set_ylabel("score")
        twin = bottom.twinx()
        twin.plot(t, [v["abs_dic"] for _, v in val], "^--", color="gray", label="val |DiC|")
        twin.set_ylabel("|DiC|")
        lines = bottom.get_legend_handles_labels()
        extra = twin.get_legend_handles_labels()
        bottom.legend(lines[0] + extra[0], lines[1] + extra[1], fontsize=8, loc="upper left")
    bottom.set_xlabel("training time (minutes)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def read_log(*paths: Path) -> list[dict]:
    """The rows of JSON-lines logs, in order."""
    return [json.loads(line) for path in paths for line in path.read_text().splitlines()
            if line.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, nargs="+", help="JSON-lines log(s) of one run")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="ColorRL training")
    parser.add_argument("--window", type=int, default=25, help="running-mean window (updates)")
    args = parser.parse_args()
    rows = read_log(*args.log)
    if not rows:
        raise SystemExit("the log is empty")
    print(f"wrote {plot(rows, args.out, args.title, args.window)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
