"""The Cellpose 3 "peer" row of the ColorRL comparison: Cellpose trained from scratch.

Cellpose lives in its own virtual environment (runs/cellpose-venv), never in the package's
dependencies; benchmarks/_cellpose_worker.py runs there (as a script: it never imports the
project) and this module drives it. No weights
are downloaded: the network starts from random weights, the worker blocks Cellpose's download
functions and sockets, and CELLPOSE_LOCAL_MODELS_PATH points under runs/ (never ~/.cellpose).

    python -m benchmarks.peer_cellpose --data DATA/dsb2018_fluo --quick

API (for benchmarks.compare and benchmarks.peer_speed): ensure_venv(), run_cellpose(),
time_cellpose(), score_masks().
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._report import RUNS

VENV = RUNS / "cellpose-venv"
MODELS_DIR = RUNS / "cellpose-models"  # CELLPOSE_LOCAL_MODELS_PATH; stays empty
WORKER = Path(__file__).resolve().with_name("_cellpose_worker.py")
# torch first and pinned: the machine has a local CPU wheel of it; an unpinned torch would pull
# a multi-GB CUDA build from PyPI. The pin is repeated with cellpose so pip keeps it.
TORCH = "torch==2.13.0"
CELLPOSE = "cellpose<4"
EXTRAS = ["tifffile", "opencv-python-headless", "scipy", "tqdm"]  # cellpose needs them anyway
QUICK_MINUTES = 1.0
QUICK_TRAIN_IMAGES = 8
QUICK_VAL_IMAGES = 4


def _pip(python: Path, *args: str) -> None:
    # Plain pip, with the machine's pip configuration (its constraint file) left as it is.
    subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                    *args], check=True)


def ensure_venv(path: Path = VENV) -> Path:
    """Create (once) the venv with torch and cellpose 3; return its python.

    Idempotent: a stamp file in the venv names what was installed; a venv whose stamp matches
    is used as it is.
    """
    path = Path(path)
    python = path / "bin" / "python"
    stamp = path / "peer-cellpose.json"
    wanted = {"torch": TORCH, "cellpose": CELLPOSE, "extras": EXTRAS}
    if python.exists() and stamp.exists():
        try:
            if json.loads(stamp.read_text()).get("wanted") == wanted:
                return python
        except (OSError, ValueError):
            pass
    if not python.exists():
        print(f"creating {path}", flush=True)
        base = shutil.which("python3") or sys.executable
        subprocess.run([base, "-m", "venv", str(path)], check=True)
    print(f"installing {TORCH}, then {CELLPOSE} into {path}", flush=True)
    _pip(python, TORCH)
    try:
        _pip(python, TORCH, CELLPOSE, *EXTRAS)
    except subprocess.CalledProcessError as err:
        raise RuntimeError(
            f"could not install '{CELLPOSE}' (with {TORCH}) into {path}: pip exited with "
            f"{err.returncode}, see its output above. The Cellpose peer needs cellpose 3.x "
            "from PyPI; without it there is no Cellpose row.") from err
    probe = subprocess.run(
        [str(python), "-I", "-c",
         "import cellpose, torch; print(cellpose.version); print(torch.__version__)"],
        check=True, capture_output=True, text=True)
    cp_version, torch_version = probe.stdout.split()[:2]
    if not cp_version.startswith("3."):
        raise RuntimeError(f"{path} has cellpose {cp_version}, the peer needs '{CELLPOSE}'")
    if not torch_version.startswith(TORCH.split("==")[1]):
        raise RuntimeError(f"{path} has torch {torch_version}, expected {TORCH}")
    stamp.write_text(json.dumps({"wanted": wanted, "cellpose": cp_version,
                                 "torch": torch_version}, indent=2))
    return python


def _env(threads: int) -> dict[str, str]:
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(CELLPOSE_LOCAL_MODELS_PATH=str(MODELS_DIR), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
    return env


def _worker(python: Path, cmd: str, *args: str, threads: int = 2) -> dict:
    """Run one worker subcommand (its output streams through) and return its JSON report."""
    with tempfile.TemporaryDirectory(prefix="cellpose-peer-") as tmp:
        report = Path(tmp) / "report.json"
        argv = [str(python), "-I", str(WORKER), cmd, "--json", str(report),
                "--threads", str(threads), "--models-dir", str(MODELS_DIR), *args]
        subprocess.run(argv, check=True, env=_env(threads))
        return json.loads(report.read_text())


def _diam_mean(data: Path) -> float:
    """Cellpose's diameter to rescale objects to in training: 17 px for nuclei, else 30."""
    name = Path(data).name.lower()
    return 17.0 if ("dsb" in name or "nucle" in name) else 30.0


def train_cellpose(data: Path, minutes: float, model_path: Path, *, limit: int | None = None,
                   threads: int = 2, python: Path | None = None,
                   diam_mean: float | None = None) -> dict:
    """Train from scratch on data/train for a budget of ``minutes``; the worker's report."""
    python = python or ensure_venv()
    args = ["--images", str(Path(data) / "train" / "images"),
            "--masks", str(Path(data) / "train" / "masks"),
            "--out", str(model_path), "--minutes", str(minutes),
            "--diam-mean", str(diam_mean or _diam_mean(data))]
    if limit:
        args += ["--limit", str(limit)]
    return _worker(python, "train", *args, threads=threads)


def predict_cellpose(model_path: Path, images_dir: Path, out_dir: Path, *,
                     limit: int | None = None, size: int | None = None, do_3d: bool = False,
                     threads: int = 2, python: Path | None = None) -> dict:
    """Segment a folder; uint16 TIFF masks (same stems) in out_dir; the worker's report."""
    python = python or ensure_venv()
    args = ["--model", str(model_path), "--images", str(images_dir), "--out", str(out_dir)]
    if limit:
        args += ["--limit", str(limit)]
    if size:
        args += ["--size", str(size)]
    if do_3d:
        args.append("--do-3d")
    return _worker(python, "predict", *args, threads=threads)


def run_cellpose(data: Path, minutes: float, work_dir: Path, quick: bool = False,
                 threads: int = 2) -> dict:
    """Train Cellpose 3 from scratch on data/train, segment data/val/images.

    quick: a 1-minute budget (at most), the first 8 training and 4 validation images.
    Returns masks_dir, train_seconds, epochs, infer_seconds_per_image, peak_rss_mb (of the
    inference process; train_peak_rss_mb for training), version (cellpose's), and more details
    (model_path, mean_diameter, seconds_per_epoch, images_per_second, train / predict reports).
    """
    data, work_dir = Path(data), Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    python = ensure_venv()
    if quick:
        minutes = min(minutes, QUICK_MINUTES)
    model_path = work_dir / "cellpose_model.pt"
    tr = train_cellpose(data, minutes, model_path, threads=threads, python=python,
                        limit=QUICK_TRAIN_IMAGES if quick else None)
    masks_dir = work_dir / "masks"
    if masks_dir.exists():
        shutil.rmtree(masks_dir)
    pr = predict_cellpose(model_path, data / "val" / "images", masks_dir, threads=threads,
                          python=python, limit=QUICK_VAL_IMAGES if quick else None)
    result = {
        "masks_dir": masks_dir,
        "train_seconds": tr["seconds"],
        "epochs": tr["epochs"],
        "infer_seconds_per_image": pr["seconds_per_image"],
        "peak_rss_mb": pr["peak_rss_mb"],
        "version": tr["cellpose_version"],
        "train_peak_rss_mb": tr["peak_rss_mb"],
        "model_path": model_path,
        "mean_diameter": tr["mean_diameter"],
        "seconds_per_epoch": tr["seconds_per_epoch"],
        "nimg_per_epoch": tr["nimg_per_epoch"],
        "images_per_second": pr["images_per_second"],
        "train": tr,
        "predict": pr,
    }
    (work_dir / "result.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def time_cellpose(model_path: Path, images: list[np.ndarray], *, do_3d: bool = False,
                  diameter: float | None = None, threads: int = 2,
                  return_masks: bool = False) -> dict:
    """Time the full model.eval on each array (after one untimed warm-up call).

    images: 2D arrays (grayscale, or HxWx3 RGB: the green channel is used), or ZYX volumes
    with do_3d. diameter: object diameter in these arrays' pixels (default: the training masks'
    mean diameter; scale it when the arrays are resized). Returns seconds (per image),
    seconds_per_image, images_per_second, warmup_seconds, peak_rss_mb, objects, version, and
    masks (a list of uint16 arrays) with return_masks.
    """
    python = ensure_venv()
    with tempfile.TemporaryDirectory(prefix="cellpose-time-") as tmp:
        arrays, masks_out = Path(tmp) / "arrays.npz", Path(tmp) / "masks.npz"
        np.savez(arrays, *[np.asarray(a) for a in images])
        args = ["--model", str(model_path), "--arrays", str(arrays)]
        if do_3d:
            args.append("--do-3d")
        if diameter:
            args += ["--diameter", str(diameter)]
        if return_masks:
            args += ["--masks-out", str(masks_out)]
        report = _worker(python, "time", *args, threads=threads)
        if return_masks:
            with np.load(masks_out) as m:
                report["masks"] = [m[f"arr_{i}"] for i in range(len(m.files))]
    report["version"] = report["cellpose_version"]
    return report


def score_masks(masks_dir: Path, gt_dir: Path) -> dict[str, float]:
    """Mean metrics (napari_colorrl.core.metrics.evaluate) of the masks against ground truth."""
    from napari_colorrl.core.data.files import read_labels
    from napari_colorrl.core.metrics import evaluate, mean_metrics

    results = []
    for pred_file in sorted(Path(masks_dir).glob("*.tif")):
        gt_file = next(Path(gt_dir).glob(pred_file.stem + ".*"))
        results.append(evaluate(read_labels(pred_file), read_labels(gt_file)))
    return mean_metrics(results)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {__spec__.name}",
                                     description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True,
                   help="a folder with train/ and val/, each images/ and masks/")
    p.add_argument("--minutes", type=float, default=30.0, help="training time budget")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_MINUTES:g} minute, {QUICK_TRAIN_IMAGES} training and "
                        f"{QUICK_VAL_IMAGES} validation images")
    p.add_argument("--work-dir", type=Path, help="default runs/peer-cellpose/<data name>")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if not (args.data / "train" / "images").is_dir():
        print(f"no data at {args.data} (expects train/images, train/masks, val/images)")
        return 2
    work_dir = args.work_dir or RUNS / "peer-cellpose" / args.data.name
    t0 = time.perf_counter()
    res = run_cellpose(args.data, args.minutes, work_dir, quick=args.quick,
                       threads=args.threads)
    rows = [("cellpose", res["version"]),
            ("epochs", f"{res['epochs']} x {res['nimg_per_epoch']} images"),
            ("train s", f"{res['train_seconds']:.0f} ({res['seconds_per_epoch']:.1f} s/epoch)"),
            ("mean diameter px", f"{res['mean_diameter']:.1f}"),
            ("infer ms/image", f"{res['infer_seconds_per_image'] * 1000:.0f}"),
            ("peak RSS MB (infer)", f"{res['peak_rss_mb']:.0f}"),
            ("masks", str(res["masks_dir"]))]
    try:
        scores = score_masks(res["masks_dir"], args.data / "val" / "masks")
        rows += [(k, f"{scores[k]:.3f}") for k in ("ap50", "sbd", "abs_dic")]
    except ImportError as err:  # scoring needs the project; the peer itself does not
        rows.append(("scores", f"skipped ({err})"))
    width = max(len(k) for k, _ in rows)
    print(f"\nCellpose peer on {args.data.name} ({time.perf_counter() - t0:.0f} s in all)")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
