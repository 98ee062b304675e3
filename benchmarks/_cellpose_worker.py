"""Cellpose 3 side of the peer benchmark; runs INSIDE runs/cellpose-venv (see peer_cellpose.py).

It imports only cellpose, numpy, torch, tifffile, opencv and scipy (all in that venv), never the
project. Subcommands, each writing a JSON report:

    train    train a Cellpose 3 network from scratch for a time budget, save it
    predict  segment a folder of images with a trained network, write uint16 TIFF masks
    time     segment arrays from an .npz (2D images or, with --do-3d, volumes), time each

Nothing is ever downloaded: the training starts from random weights, Cellpose's download
functions and socket.connect are replaced by functions that raise, and the models folder
(CELLPOSE_LOCAL_MODELS_PATH) is set to a folder the caller chose before cellpose is imported.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import resource
import shutil
import socket
import sys
import tempfile
import time
import warnings
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
# Cellpose's own command-line defaults for training (python -m cellpose --train): SGD with
# momentum 0.9, learning rate 0.2, weight decay 1e-5, batch 8, 224 px crops, images whose
# objects are rescaled to a mean diameter of 30 px (17 px is Cellpose's value for nuclei).
LEARNING_RATE = 0.2
WEIGHT_DECAY = 1e-5
BATCH_SIZE = 8
MIN_TRAIN_MASKS = 5
# Cellpose's learning-rate schedule is per epoch: 10 warm-up epochs, then constant, then 10
# halvings over the last 50 epochs when n_epochs > 100 (last 100 when > 300). One pass over
# e.g. the 300 DSB images takes minutes on a CPU, so only a dozen full epochs would fit in a
# budget and the warm-up would take most of it. The budget is therefore cut into about
# TARGET_EPOCHS shorter epochs with Cellpose's own nimg_per_epoch, so the schedule keeps its
# intended shape.
TARGET_EPOCHS = 200
# The warm-up starts at a learning rate of 0 (epoch 0 learns nothing) and reaches the full rate
# at epoch 9, so a run of fewer epochs barely trains: at least MIN_EPOCHS are run, even when a
# tiny budget (a quick smoke test, a slow machine) is overrun; the report says so.
MIN_EPOCHS = 12
PROBE_IMAGES = 4 * BATCH_SIZE


def _log(msg: str) -> None:
    print(f"[cellpose-worker] {msg}", flush=True)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _refuse_network(*args, **kwargs):
    raise RuntimeError(
        "the Cellpose peer must not use the network (no pretrained weights); blocked a call "
        f"with arguments {args!r}")


def _import_cellpose(models_dir: str | None):
    """Import cellpose with its models folder set and every way to download blocked."""
    if models_dir:
        os.environ["CELLPOSE_LOCAL_MODELS_PATH"] = str(Path(models_dir).resolve())
    if not os.environ.get("CELLPOSE_LOCAL_MODELS_PATH"):
        raise SystemExit("set CELLPOSE_LOCAL_MODELS_PATH or --models-dir (never ~/.cellpose)")
    socket.socket.connect = _refuse_network  # type: ignore[method-assign]
    socket.create_connection = _refuse_network  # type: ignore[assignment]
    import cellpose
    from cellpose import models, utils

    utils.download_url_to_file = _refuse_network
    utils.urlopen = _refuse_network
    models.cache_model_path = _refuse_network  # the only path to built-in weights
    return cellpose


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


# ---------------------------------------------------------------- images

def _list_images(folder: Path, limit: int | None = None) -> list[Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images in {folder}")
    return files[:limit] if limit else files


def _read(path: Path):
    import numpy as np

    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(path))
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise SystemExit(f"cannot read {path}")
    if arr.ndim == 3:  # OpenCV gives BGR(A)
        arr = cv2.cvtColor(arr[..., :3], cv2.COLOR_BGR2RGB)
    return arr


def _mask_for(image: Path, masks_dir: Path) -> Path:
    same = masks_dir / image.name
    if same.exists():
        return same
    for suffix in IMAGE_SUFFIXES:
        cand = masks_dir / (image.stem + suffix)
        if cand.exists():
            return cand
    raise SystemExit(f"no mask for {image.name} in {masks_dir}")


def _one_channel(img, mode: str):
    """2D float32 image: the channel a user would give Cellpose.

    gray: the image itself (or the mean of its colours); green: the green channel of an RGB
    image (CVPPP's plants: Cellpose's channels=[2, 0]); auto: green for RGB, else gray.
    Cellpose then gets channels=[0, 0] (one channel, no nuclear channel).
    """
    import numpy as np

    img = np.asarray(img)
    colour = img.ndim == 3 and img.shape[-1] in (3, 4)
    if mode == "auto":
        mode = "green" if colour else "gray"
    if colour:
        img = img[..., 1] if mode == "green" else img[..., :3].mean(axis=-1)
    if img.ndim != 2:
        raise SystemExit(f"expected a 2D image, got shape {img.shape}")
    return img.astype(np.float32)


def _resize(img, shape: tuple[int, int], nearest: bool = False):
    """Resize a 2D array to shape (rows, cols): linear, or nearest for masks."""
    import cv2

    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(img, (shape[1], shape[0]), interpolation=interp)


def _volume(img, size: int | None):
    """A float32 ZYX volume, resized to size^3 (linear) when size is given."""
    import numpy as np
    from scipy.ndimage import zoom

    vol = np.asarray(img, dtype=np.float32)
    if vol.ndim != 3:
        raise SystemExit(f"expected a 3D volume, got shape {vol.shape}")
    if size:
        vol = zoom(vol, [size / s for s in vol.shape], order=1)
    return vol


# ---------------------------------------------------------------- train

def train(args) -> dict:
    import numpy as np
    import torch

    cellpose = _import_cellpose(args.models_dir)
    from cellpose import dynamics, models
    from cellpose import train as cp_train

    _set_threads(args.threads)
    t0 = time.perf_counter()
    files = _list_images(args.images, args.limit)
    images = [_one_channel(_read(p), args.channels) for p in files]
    masks = [np.asarray(_read(_mask_for(p, args.masks))).astype(np.int32) for p in files]
    # Flows once (Cellpose would redo them in each train_seg call): [labels, prob, dy, dx].
    flows = dynamics.labels_to_flows(masks, device=torch.device("cpu"))
    n_masks = np.array([len(np.unique(m)) - 1 for m in masks])
    n_train = int((n_masks >= args.min_train_masks).sum())
    if n_train == 0:
        raise SystemExit(f"no training image has >= {args.min_train_masks} objects")
    _log(f"{len(files)} images ({n_train} with >= {args.min_train_masks} objects), flows in "
         f"{time.perf_counter() - t0:.1f} s")

    # Training from scratch: pretrained_model=False and model_type=None load no weights.
    # mkldnn stays off for training (Cellpose itself turns it off to train).
    model = models.CellposeModel(gpu=False, pretrained_model=False, model_type=None,
                                 diam_mean=args.diam_mean, nchan=2, mkldnn=False)
    common = dict(train_data=images, train_labels=flows, channels=[0, 0], normalize=True,
                  batch_size=args.batch_size, learning_rate=args.lr,
                  weight_decay=args.weight_decay, SGD=True, momentum=0.9,
                  min_train_masks=args.min_train_masks, save_every=10**9)
    budget = args.minutes * 60.0
    with tempfile.TemporaryDirectory(prefix="cellpose-train-") as tmp:
        # Time budget: one probe epoch of PROBE_IMAGES images on a throw-away copy of the
        # network gives seconds per image (its whole time, set-up included, so the estimate
        # errs long); the budget left then fixes nimg_per_epoch and n_epochs of ONE train_seg
        # run, so Cellpose's schedule (warm-up, decay) spans the whole budget.
        probe_n = min(PROBE_IMAGES, max(args.batch_size, n_train))
        tp = time.perf_counter()
        cp_train.train_seg(copy.deepcopy(model.net), n_epochs=1, nimg_per_epoch=probe_n,
                           save_path=tmp, model_name="probe", **common)
        sec_per_image = (time.perf_counter() - tp) / probe_n
        left = budget - (time.perf_counter() - t0)
        total_images = max(left, 0.0) / sec_per_image
        per_epoch = args.batch_size * max(1, round(total_images / TARGET_EPOCHS / args.batch_size))
        per_epoch = min(per_epoch, n_train)
        n_epochs = max(args.min_epochs, int(total_images // per_epoch))
        _log(f"probe: {sec_per_image:.3f} s/image; {left:.0f} s left -> {n_epochs} epochs of "
             f"{per_epoch} images")

        tt = time.perf_counter()
        saved, losses, _ = cp_train.train_seg(model.net, n_epochs=n_epochs,
                                              nimg_per_epoch=per_epoch, save_path=tmp,
                                              model_name="cellpose_peer", **common)
        loop_seconds = time.perf_counter() - tt
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(saved), out)
    seconds = time.perf_counter() - t0
    report = {
        "model_path": str(out),
        "cellpose_version": cellpose.version,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "images": len(files),
        "train_images_used": n_train,
        "epochs": n_epochs,
        "nimg_per_epoch": per_epoch,
        "seconds": seconds,
        "train_loop_seconds": loop_seconds,
        "seconds_per_epoch": loop_seconds / n_epochs,
        "probe_seconds_per_image": sec_per_image,
        "budget_seconds": budget,
        "over_budget": seconds > budget,
        "diam_mean": float(model.net.diam_mean.item()),
        "mean_diameter": float(model.net.diam_labels.item()),
        "final_train_loss": float(losses[-1]),
        "channels": args.channels,
        "learning_rate": args.lr,
        "weight_decay": args.weight_decay,
        "batch_size": args.batch_size,
        "optimizer": "SGD momentum 0.9",
        "pretrained": False,
        "peak_rss_mb": _peak_rss_mb(),
    }
    _log(f"trained {n_epochs} epochs in {seconds:.0f} s ({loop_seconds / n_epochs:.2f} s/epoch), "
         f"mean diameter {report['mean_diameter']:.1f} px, final loss {losses[-1]:.3f}")
    return report


# ---------------------------------------------------------------- predict / time

def _load_model(path: str):
    from cellpose import models

    if not Path(path).is_file():
        # CellposeModel would fall back to downloading cyto3 for a missing path.
        raise SystemExit(f"no trained model at {path}")
    return models.CellposeModel(gpu=False, pretrained_model=str(path), nchan=2)


def _segment(model, x, diameter: float, do_3d: bool):
    """The full model.eval call (network, flow dynamics, mask clean-up) and its seconds."""
    import numpy as np

    kwargs = dict(channels=[0, 0], diameter=diameter)
    if do_3d:
        kwargs.update(do_3D=True, z_axis=0)
    t = time.perf_counter()
    masks = model.eval(x, **kwargs)[0]
    return np.asarray(masks), time.perf_counter() - t


def _timing(seconds: list[float]) -> dict:
    total = sum(seconds)
    return {"seconds": seconds, "seconds_per_image": total / max(len(seconds), 1),
            "images_per_second": len(seconds) / total if total > 0 else float("nan")}


def predict(args) -> dict:
    import numpy as np
    import tifffile
    from tqdm import tqdm

    cellpose = _import_cellpose(args.models_dir)
    _set_threads(args.threads)
    model = _load_model(args.model)
    diameter = float(args.diameter or model.diam_labels)
    files = _list_images(args.images, args.limit)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def prepare(path):
        raw = _read(path)
        if args.do_3d:
            vol = _volume(raw, args.size)
            return vol, diameter * (args.size / np.mean(raw.shape) if args.size else 1.0), None
        img = _one_channel(raw, args.channels)
        if not args.size:
            return img, diameter, None
        # Objects shrink with the image: scale the diameter with it.
        scaled = diameter * args.size / np.mean(img.shape)
        return _resize(img, (args.size, args.size)), scaled, img.shape

    # One untimed warm-up call: numba compiles Cellpose's dynamics on first use.
    x, d, _ = prepare(files[0])
    tw = time.perf_counter()
    _segment(model, x, d, args.do_3d)
    warmup = time.perf_counter() - tw

    seconds, counts = [], []
    for path in tqdm(files, desc="cellpose predict", unit="img", file=sys.stdout):
        x, d, full_shape = prepare(path)
        masks, dt = _segment(model, x, d, args.do_3d)
        seconds.append(dt)
        if full_shape is not None:  # back to the image's own size, to be scored there
            masks = _resize(masks.astype(np.uint16), full_shape, nearest=True)
        counts.append(int(len(np.unique(masks)) - 1))
        tifffile.imwrite(out / f"{path.stem}.tif", masks.astype(np.uint16))
    report = {
        "masks_dir": str(out),
        "cellpose_version": cellpose.version,
        "model_path": str(args.model),
        "images": [p.name for p in files],
        "objects": counts,
        "diameter": diameter,
        "size": args.size,
        "do_3d": args.do_3d,
        "warmup_seconds": warmup,
        "threads": args.threads,
        "peak_rss_mb": _peak_rss_mb(),
        **_timing(seconds),
    }
    _log(f"{len(files)} images, {report['seconds_per_image'] * 1000:.0f} ms/image, "
         f"peak RSS {report['peak_rss_mb']:.0f} MB")
    return report


def time_arrays(args) -> dict:
    import numpy as np

    cellpose = _import_cellpose(args.models_dir)
    _set_threads(args.threads)
    model = _load_model(args.model)
    diameter = float(args.diameter or model.diam_labels)
    with np.load(args.arrays) as data:
        arrays = [data[k] for k in sorted(data.files, key=lambda k: int(k.split("_")[1]))]
    xs = [_volume(a, None) if args.do_3d else _one_channel(a, args.channels) for a in arrays]
    _, warmup = _segment(model, xs[0], diameter, args.do_3d)
    seconds, masks = [], []
    for x in xs:
        m, dt = _segment(model, x, diameter, args.do_3d)
        seconds.append(dt)
        masks.append(m.astype(np.uint16))
    if args.masks_out:
        np.savez_compressed(args.masks_out, *masks)
    report = {
        "cellpose_version": cellpose.version,
        "model_path": str(args.model),
        "shapes": [list(a.shape) for a in arrays],
        "objects": [int(len(np.unique(m)) - 1) for m in masks],
        "diameter": diameter,
        "do_3d": args.do_3d,
        "warmup_seconds": warmup,
        "threads": args.threads,
        "peak_rss_mb": _peak_rss_mb(),
        **_timing(seconds),
    }
    _log(f"{len(xs)} arrays, {report['seconds_per_image'] * 1000:.0f} ms each")
    return report


# ---------------------------------------------------------------- command line

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--json", type=Path, required=True, help="report to write")
        sp.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
        sp.add_argument("--models-dir", help="CELLPOSE_LOCAL_MODELS_PATH (else from the env)")
        sp.add_argument("--channels", choices=("auto", "gray", "green"), default="auto")

    t = sub.add_parser("train", help="train from scratch for a time budget")
    common(t)
    t.add_argument("--images", type=Path, required=True)
    t.add_argument("--masks", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True, help="where to save the network")
    t.add_argument("--minutes", type=float, required=True, help="training time budget")
    t.add_argument("--limit", type=int, help="first N training images only")
    t.add_argument("--diam-mean", type=float, default=30.0,
                   help="diameter objects are rescaled to (Cellpose: 30, 17 for nuclei)")
    t.add_argument("--lr", type=float, default=LEARNING_RATE)
    t.add_argument("--weight-decay", type=float, default=WEIGHT_DECAY)
    t.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    t.add_argument("--min-train-masks", type=int, default=MIN_TRAIN_MASKS)
    t.add_argument("--min-epochs", type=int, default=MIN_EPOCHS,
                   help="run at least this many epochs, even past the budget")

    for name, helptext in (("predict", "segment a folder, write uint16 TIFF masks"),
                           ("time", "segment the arrays of an .npz, time each")):
        sp = sub.add_parser(name, help=helptext)
        common(sp)
        sp.add_argument("--model", required=True)
        sp.add_argument("--diameter", type=float,
                        help="object diameter (default: the training masks' mean diameter)")
        sp.add_argument("--do-3d", action="store_true", help="3D volumes (do_3D=True)")
        if name == "predict":
            sp.add_argument("--images", type=Path, required=True)
            sp.add_argument("--out", type=Path, required=True, help="folder for the masks")
            sp.add_argument("--limit", type=int, help="first N images only")
            sp.add_argument("--size", type=int, help="resize images to SIZE x SIZE (3D: "
                            "SIZE^3) before segmenting; 2D masks are resized back")
        else:
            sp.add_argument("--arrays", type=Path, required=True, help=".npz of arr_0, arr_1..")
            sp.add_argument("--masks-out", type=Path, help=".npz for the masks")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Before numpy/torch/numba start their thread pools.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    # Cellpose's training log (loss every 10 epochs) on stdout; its other INFO lines are noise.
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout,
                        format="[cellpose] %(message)s")
    logging.getLogger("cellpose.train").setLevel(logging.INFO)
    warnings.filterwarnings("ignore", message="Sparse invariant checks")  # torch, in dynamics
    run = {"train": train, "predict": predict, "time": time_arrays}[args.cmd]
    report = run(args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
