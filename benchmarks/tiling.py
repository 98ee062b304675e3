"""Tiled inference against image size: time linear in pixels, memory flat; quality at the model's
scale; megapixels per second next to Cellpose 3's tiled inference on the same images.

1. Quality (the table of issue 18): the bundled ``nuclei-2d`` on synthetic nuclei of radius 8 px
   (``make_round_nuclei``) at 256 x 256 (a training size) and 1024 x 1024 (a 4x larger field of
   view), the old way (the whole image resized to the network's 256 x 256) and at the training
   scale in tiles; SBD, AP50, abs DiC.
   Then tiled against untiled: the same images in one tile and in tiles (768 x 768 in four
   512 tiles, 2048 x 2048 in nine 1024 tiles, 128 px of overlap, seeds 0 and 1), AP50 of each
   against the ground truth and of the tiled objects against the untiled ones, with the shared
   instance-norm statistics (the product) and with each tile normalised by itself (before).
   In 3D, the choice of tile and overlap: the bundled ``nuclei-3d`` on round synthetic nuclei
   (64 x 192 x 192 and 96 x 256 x 256, two seeds each) in one pass and in tiles of each
   (tile, overlap) of ``TILINGS_3D``: agreement, time against the one pass, the repeated work
   on a 256 x 1024 x 1024 volume and the memory check's estimate for one tile.
2. Time and peak memory against size: 2D with ``nuclei-2d`` (256 px to 8192 px), 3D with a
   random-init network of the ``gonuclear3d`` recipe (64^3 to 256 x 1024 x 1024). Each size runs
   in a fresh process: the image is a memory-mapped TIFF (a periodic pattern of nuclei), the
   labels go to a zarr array in a temporary folder, tile by tile (``Segmenter.iter_segment``);
   peak memory is the increase of the peak RSS (VmHWM, reset after a warm-up call) over the
   RSS before the call,
   next to the memory check's estimate for one tile (``runtime.tile_bytes``).
3. Cellpose 3 on the same 2D images (its own tiled ``model.eval``: 224 px tiles), in its own
   venv (``benchmarks.peer_cellpose``), when a trained Cellpose model is given or found in
   ``runs/compare-dsb/cellpose``; megapixels per second side by side.

    python -m benchmarks.tiling                       # everything (takes a while on a CPU)
    python -m benchmarks.tiling --sizes 256 --sizes-3d 64 --no-cellpose   # a quick check
    python -m benchmarks.tiling --skip quality agreement 2d 3d --no-cellpose   # the 3D choice
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._report import RUNS, header, run_worker
from ._timing import apply_threads, dump_json, fmt, speed_config, speed_parser, table

SIZES_2D = (256, 512, 1024, 2048, 4096, 8192)
SIZES_3D = ("64", "128", "128x256x256", "256x512x512", "256x1024x1024")
CELLPOSE_MODEL = RUNS / "compare-dsb" / "cellpose" / "cellpose_model.pt"
CELLPOSE_DIAMETER = 16.0  # the synthetic nuclei: radius 8 px


def _shape(text: str, ndim: int) -> tuple[int, ...]:
    parts = [int(v) for v in str(text).lower().split("x")]
    return tuple(parts * ndim if len(parts) == 1 else parts)


# --- 1. quality ---------------------------------------------------------------------------------
def quality() -> list[dict]:
    from napari_colorrl.core.data.synthetic import make_round_nuclei
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.metrics import abs_dic, ap, sbd

    segmenter = Segmenter.load("nuclei-2d", device="cpu")
    rows = []
    for size in (256, 1024):
        image, labels = make_round_nuclei((size, size), seed=0)
        squeezed = segmenter.postprocess(segmenter.color_maps(image)[1])
        result = segmenter.segment(image)
        for how, pred in (("whole image resized to 256 x 256 (before)", squeezed),
                          (f"training scale, {result.plan.tiles} tile(s) (now)",
                           result.instances)):
            rows.append({"size": size, "objects": int(labels.max()), "how": how,
                         "sbd": sbd(pred, labels), "ap50": ap(pred, labels, 0.5),
                         "abs_dic": abs_dic(pred, labels)})
            print(f"quality {size}: {how}: AP50 {rows[-1]['ap50']:.3f}", flush=True)
    return rows


AGREEMENT = ((768, 512), (2048, 1024))


def agreement(seeds=(0, 1), cases=AGREEMENT, overlap: int = 128) -> list[dict]:
    from napari_colorrl.core.data.synthetic import make_round_nuclei
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.metrics import ap

    segmenter = Segmenter.load("nuclei-2d", device="cpu")
    rows = []
    for size, tile in cases:
        for seed in seeds:
            image, labels = make_round_nuclei((size, size), seed=seed)
            row = {"size": size, "tile": tile, "seed": seed}
            for name, shared in (("shared", True), ("own", False)):
                if not shared:  # each tile (and the untiled pass) normalised by itself
                    segmenter.image_statistics = lambda *a, **k: None
                try:
                    whole = segmenter.segment(image, tile_size=size, keep_steps=False).instances
                    tiled = segmenter.segment(image, tile_size=tile, tile_overlap=overlap,
                                              keep_steps=False)
                finally:
                    segmenter.__dict__.pop("image_statistics", None)
                row[name] = {"tiles": tiled.plan.tiles, "whole_ap50": ap(whole, labels, 0.5),
                             "tiled_ap50": ap(tiled.instances, labels, 0.5),
                             "agreement": ap(tiled.instances, whole, 0.5)}
            rows.append(row)
            print(f"agreement {size} seed {seed}: {row['shared']['agreement']:.3f} (own "
                  f"statistics {row['own']['agreement']:.3f})", flush=True)
    return rows


AGREEMENT_3D = ((64, 192, 192), (96, 256, 256))
#: (tile, overlap) choices for 3D, each measured for agreement, time and repeated work.
TILINGS_3D = ((128, 32), (128, 48), (128, 64), (160, 48), (160, 64), (192, 64))
#: the volume whose repeated work (network voxels per image voxel) each choice reports.
WORK_VOLUME = (256, 1024, 1024)


def work_factor(shape, tile: int, overlap: int, stride: int) -> float:
    """Network voxels run per image voxel when ``shape`` is cut into tiles of ``tile``^3 with
    ``overlap``: the repeated work of the overlap (1.0 for one tile)."""
    from napari_colorrl.core.tiling import TileGrid

    grid = TileGrid.make(shape, shape, (tile,) * len(shape), overlap, align=stride)
    return sum(math.prod(s.stop - s.start for s in t.network) for t in grid) / math.prod(shape)


def agreement_3d(seeds=(0, 1), shapes=AGREEMENT_3D, tilings=TILINGS_3D) -> list[dict]:
    """The bundled ``nuclei-3d`` on synthetic nuclei like its training set's (round, radius 6,
    seeds unlike its training volumes'): one pass against tiles of each (tile, overlap); AP50
    of each against the truth and of the tiled objects against the untiled, the seconds of each
    pass, the one-tile memory estimate and the repeated work of the choice on ``WORK_VOLUME``."""
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.metrics import ap
    from napari_colorrl.core.runtime import tile_bytes

    from .synthetic_set import make_volume

    segmenter = Segmenter.load("nuclei-3d", device="cpu")
    segmenter.segment(np.zeros((32, 32, 32), np.float32), keep_steps=False)  # warm-up
    rows = []
    for shape in shapes:
        for seed in seeds:
            image, labels = make_volume("round", shape, seed=50_000 + seed)
            start = time.perf_counter()
            whole = segmenter.segment(image, tile_size=max(shape), keep_steps=False)
            whole_s = time.perf_counter() - start
            for tile, overlap in tilings:
                start = time.perf_counter()
                tiled = segmenter.segment(image, tile_size=tile, tile_overlap=overlap,
                                          keep_steps=False)
                seconds = time.perf_counter() - start
                host, net = tile_bytes(segmenter.config, (tile,) * 3, (tile,) * 3, (tile,) * 3)
                row = {"shape": list(shape), "seed": seed, "tile": tile, "overlap": overlap,
                       "tiles": tiled.plan.tiles, "objects": int(labels.max()),
                       "whole_ap50": ap(whole.instances, labels, 0.5),
                       "tiled_ap50": ap(tiled.instances, labels, 0.5),
                       "agreement": ap(tiled.instances, whole.instances, 0.5),
                       "whole_seconds": whole_s, "tiled_seconds": seconds,
                       "tile_mb": (host + net) / 2**20,
                       "work_factor": work_factor(WORK_VOLUME, tile, overlap, segmenter.stride)}
                rows.append(row)
                print(f"agreement 3D {'x'.join(map(str, shape))} seed {seed} tile {tile} "
                      f"overlap {overlap}: {row['agreement']:.3f} ({seconds:.1f} s, one pass "
                      f"{whole_s:.1f} s)", flush=True)
    return rows


# --- 2. time and memory -------------------------------------------------------------------------
def write_image(path: Path, shape: tuple[int, ...]) -> None:
    """A memory-mapped TIFF of ``shape``: a 256 x 256 (2D) or 64^3 (3D) block of nuclei of
    radius 8 px repeated, written a block at a time."""
    import tifffile

    from napari_colorrl.core.data.synthetic import make_round_nuclei

    side = 256 if len(shape) == 2 else 64
    block, _ = make_round_nuclei((side,) * len(shape), seed=0,
                                 density=1.1e-3 if len(shape) == 2 else 2e-4)
    out = tifffile.memmap(path, shape=shape, dtype=np.uint8)
    for start in np.ndindex(*[math.ceil(s / side) for s in shape]):
        window = tuple(slice(i * side, min((i + 1) * side, s)) for i, s in zip(start, shape))
        out[window] = block[tuple(slice(0, w.stop - w.start) for w in window)]
    out.flush()
    del out


def _current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    """Reset the process's peak RSS (Linux: VmHWM, through /proc/self/clear_refs), so the
    warm-up call's peak does not count; False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_bytes(field: str) -> int | None:
    """A memory line of /proc/self/status ("VmHWM", "RssFile") in bytes; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _peak_rss() -> int:
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _rss_file() -> int:
    """Bytes of file-backed pages the process has mapped (RssFile: the memory-mapped image's
    pages read so far; the kernel may drop them at any time, they are not memory in use)."""
    return _status_bytes("RssFile") or 0


def _worker(spec_path: str) -> int:
    """One size in a fresh process: segment the memory-mapped image into a zarr array."""
    import torch

    from napari_colorrl.core.config import ColorRLConfig
    from napari_colorrl.core.data.lazy import LabelFile, open_lazy
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.runtime import tile_bytes

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(int(spec["threads"]))
    if spec["model"] == "nuclei-2d":
        segmenter = Segmenter.load("nuclei-2d", device=spec["device"])
    else:
        from ._timing import random_model

        config = ColorRLConfig.from_dict(spec["config"])
        segmenter = Segmenter(random_model(config), config, device=spec["device"])
    image = open_lazy(spec["image"])
    plan = segmenter.plan(image.shape)
    out = LabelFile(Path(spec["out"]), image.shape)
    warm = np.zeros((64,) * segmenter.config.ndim, np.uint8)
    segmenter.segment(warm)  # one untimed call: oneDNN and the allocator set up
    gc.collect()
    reset = _reset_peak()
    base, base_file = _current_rss(), _rss_file()
    start = time.perf_counter()
    limit = spec.get("first_tiles") or plan.tiles
    run = segmenter.iter_segment(image, out.array, plan=plan)
    by_tiles = []  # (tiles done, peak MB so far, mapped image pages MB) at 1, 2, 4, ... tiles
    for done, _ in run:
        if done & (done - 1) == 0 or done >= limit:
            by_tiles.append((done, max(_peak_rss() - base, 0) / 2**20,
                             max(_rss_file() - base_file, 0) / 2**20))
        if done >= limit:  # only the first tiles of a very large image: time and peak so far
            run.close()
            break
    seconds = time.perf_counter() - start
    peak = _peak_rss()
    out.discard()
    grid = plan.grid
    host, network = tile_bytes(segmenter.config, grid.tile_shape, grid.read_shape,
                               grid.tile_shape)
    print(json.dumps({"seconds": seconds, "peak_mb": max(peak - base, 0) / 2**20,
                      "peak_reset": reset, "tiles_done": min(limit, plan.tiles),
                      "tiles": plan.tiles, "tile": list(grid.tile_shape),
                      "tile_estimate_mb": (host + network) / 2**20,
                      "peak_by_tiles": by_tiles}))
    return 0


def measure(shape: tuple[int, ...], model: str, config, threads: int, device: str,
            first_tiles: int | None = None) -> dict:
    import torch

    with tempfile.TemporaryDirectory(prefix="colorrl-tiling-") as tmp:
        image = Path(tmp) / "image.tif"
        write_image(image, shape)
        result = run_worker("benchmarks.tiling", "--worker",
                            {"image": str(image), "out": str(Path(tmp) / "l.zarr"),
                             "model": model, "first_tiles": first_tiles,
                             "threads": threads or torch.get_num_threads(), "device": device,
                             "config": None if config is None else config.to_dict()}, Path(tmp))
    pixels = math.prod(shape) * result["tiles_done"] / result["tiles"]  # those segmented
    result.update(shape=list(shape), megapixels=math.prod(shape) / 1e6,
                  mpx_per_s=pixels / 1e6 / result["seconds"],
                  us_per_px=1e6 * result["seconds"] / pixels)
    return result


# --- 3. Cellpose --------------------------------------------------------------------------------
def cellpose(model_path: Path, sizes: list[int], threads: int) -> dict:
    """Cellpose 3's tiled eval on the same 2D images (the first 256 x 256 block repeated)."""
    import tifffile

    from .peer_cellpose import time_cellpose

    images = []
    with tempfile.TemporaryDirectory(prefix="colorrl-tiling-cp-") as tmp:
        for size in sizes:
            path = Path(tmp) / f"{size}.tif"
            write_image(path, (size, size))
            images.append(np.asarray(tifffile.imread(path)))
    report = time_cellpose(model_path, images, diameter=CELLPOSE_DIAMETER, threads=threads)
    return {size: {"seconds": float(s), "mpx_per_s": size * size / 1e6 / float(s)}
            for size, s in zip(sizes, report["seconds"])} | {"version": report["version"],
                                                              "peak_rss_mb":
                                                              report["peak_rss_mb"]}


def main(argv: list[str] | None = None) -> int:
    parser = speed_parser(__spec__.name, __doc__)
    parser.add_argument("--sizes", nargs="*", type=int, default=list(SIZES_2D),
                        help="2D image sizes (default: 256 to 8192)")
    parser.add_argument("--sizes-3d", nargs="*", default=list(SIZES_3D),
                        help="3D sizes, S or ZxYxX (default: 64 to 256x1024x1024)")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["quality", "agreement", "agreement-3d", "2d", "3d"],
                        help="parts to leave out: quality (the 2D scale table), agreement (2D "
                        "tiled against untiled), agreement-3d, 2d and 3d (time and memory)")
    parser.add_argument("--tilings-3d", nargs="*", default=[f"{t}/{o}" for t, o in TILINGS_3D],
                        help="3D agreement: TILE/OVERLAP choices to measure (default: "
                        + " ".join(f"{t}/{o}" for t, o in TILINGS_3D) + ")")
    parser.add_argument("--cellpose-model", type=Path, default=None,
                        help=f"a trained Cellpose 3 model (default: {CELLPOSE_MODEL} if it "
                        f"exists)")
    parser.add_argument("--no-cellpose", action="store_true", help="leave Cellpose out")
    parser.add_argument("--first-tiles", type=int, default=None,
                        help="segment only the first N tiles of each 3D size (time per pixel "
                        "and peak memory of a volume too large to finish)")
    parser.add_argument("--cellpose-max", type=int, default=2048,
                        help="the largest 2D size Cellpose segments (default 2048: on a CPU it "
                        "takes about 20 us per pixel, 22 minutes at 8192 x 8192)")
    parser.add_argument("--json", type=Path, default=None, help="also write all numbers here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args.worker)
    apply_threads(args)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out: dict = {"load_average": load}
    out["quality"] = [] if "quality" in args.skip else quality()
    out["agreement"] = [] if "agreement" in args.skip else agreement()
    out["agreement_3d"] = [] if "agreement-3d" in args.skip else (
        agreement_3d(tilings=[tuple(int(v) for v in t.split("/")) for t in args.tilings_3d]))
    out["2d"] = {}
    for size in [] if "2d" in args.skip else args.sizes:
        out["2d"][size] = measure((size, size), "nuclei-2d", None, args.threads, args.device)
        print(f"2D {size}: {out['2d'][size]['seconds']:.1f} s, peak "
              f"{out['2d'][size]['peak_mb']:.0f} MB", flush=True)
    config = speed_config("gonuclear3d")
    out["3d"] = {}
    for text in [] if "3d" in args.skip else args.sizes_3d:
        shape = _shape(text, 3)
        out["3d"][text] = measure(shape, "random", config, args.threads, args.device,
                                  first_tiles=args.first_tiles)
        print(f"3D {text}: {out['3d'][text]['seconds']:.1f} s, peak "
              f"{out['3d'][text]['peak_mb']:.0f} MB", flush=True)
    model = args.cellpose_model or (CELLPOSE_MODEL if CELLPOSE_MODEL.is_file() else None)
    out["cellpose"] = None
    if out["2d"] and not args.no_cellpose and model is not None:
        out["cellpose"] = cellpose(model, [s for s in out["2d"] if s <= args.cellpose_max],
                                   args.threads or 2)
    elif out["2d"] and not args.no_cellpose:
        print(f"no Cellpose model (give --cellpose-model, or run benchmarks.compare --name dsb "
              f"to make {CELLPOSE_MODEL}): Cellpose left out", flush=True)
    print()
    print(report(out, config))
    dump_json(args.json, out)
    return 0


def report(out: dict, config) -> str:
    lines = [*header("Tiled inference against image size")]
    if out["load_average"] is not None and out["load_average"] > 0.5 * (os.cpu_count() or 1):
        lines.append(f"- the CPU may have been shared: 1-minute load average "
                     f"{out['load_average']:.1f} at the start")
    if out["quality"]:
        rows = [[f"{r['size']} x {r['size']}", str(r["objects"]), r["how"], fmt(r["sbd"], ".3f"),
                 fmt(r["ap50"], ".3f"), fmt(r["abs_dic"], ".0f")] for r in out["quality"]]
        lines += ["", "Bundled `nuclei-2d` on synthetic nuclei of radius 8 px (seed 0):", "",
                  table(["image", "nuclei", "inference", "SBD", "AP50", "abs DiC"], rows)]
    if out.get("agreement"):
        rows = []
        for r in out["agreement"]:
            sh, own = r["shared"], r["own"]
            rows.append([f"{r['size']} x {r['size']}", str(r["seed"]),
                         f"{sh['tiles']} of {r['tile']}", fmt(sh["whole_ap50"], ".3f"),
                         fmt(sh["tiled_ap50"], ".3f"), fmt(sh["agreement"], ".3f"),
                         fmt(own["whole_ap50"], ".3f"), fmt(own["tiled_ap50"], ".3f"),
                         fmt(own["agreement"], ".3f")])
        lines += ["", "Tiled against untiled (128 px of overlap), shared statistics (now) and "
                  "each tile's own (before):", "",
                  table(["image", "seed", "tiles", "AP50 untiled", "AP50 tiled", "agreement",
                         "own: AP50 untiled", "own: AP50 tiled", "own: agreement"], rows)]
    if out.get("agreement_3d"):
        rows = [[" x ".join(map(str, r["shape"])), str(r["objects"]), str(r["seed"]),
                 f"{r['tiles']} of {r['tile']}^3", str(r["overlap"]), fmt(r["whole_ap50"], ".3f"),
                 fmt(r["tiled_ap50"], ".3f"), fmt(r["agreement"], ".3f"),
                 fmt(r["tiled_seconds"] / r["whole_seconds"], ".2f"),
                 fmt(r["work_factor"], ".2f"), fmt(r["tile_mb"], ".0f")]
                for r in out["agreement_3d"]]
        work = " x ".join(map(str, WORK_VOLUME))
        lines += ["", "3D, bundled `nuclei-3d` on synthetic round nuclei (radius 6), tiled "
                  "against one pass:", "",
                  table(["volume", "nuclei", "seed", "tiles", "overlap", "AP50 untiled",
                         "AP50 tiled", "agreement", "time / one pass",
                         f"work on {work}", "one tile MB"], rows),
                  "", f"work on {work}: network voxels run per image voxel (the overlap's "
                  "repeated work); one tile MB: the memory check's estimate."]
    cp = out.get("cellpose") or {}
    for kind, title in (("2d", "2D, bundled `nuclei-2d` (T = 5)"),
                        ("3d", f"3D, random-init `gonuclear3d` network (T = {config.steps})")):
        if not out[kind]:
            continue
        rows = []
        for key, r in out[kind].items():
            done = r.get("tiles_done", r["tiles"])
            tiles = str(r["tiles"]) if done == r["tiles"] else f"first {done} of {r['tiles']}"
            row = [" x ".join(map(str, r["shape"])), fmt(r["megapixels"], ".2f"),
                   tiles, fmt(r["seconds"], ".1f"), fmt(r["mpx_per_s"], ".3f"),
                   fmt(r["us_per_px"], ".2f"), fmt(r["peak_mb"], ".0f"),
                   fmt(r["tile_estimate_mb"], ".0f")]
            if kind == "2d" and cp:
                entry = cp.get(key) or cp.get(str(key))
                row.append(fmt(entry["mpx_per_s"] if entry else None, ".3f"))
            rows.append(row)
        head = ["image", "Mpx", "tiles", "s", "Mpx/s", "us/px", "peak MB", "one tile (check) MB"]
        if kind == "2d" and cp:
            head.append(f"Cellpose {cp['version']} Mpx/s")
        lines += ["", f"{title}, labels written to zarr tile by tile:", "", table(head, rows)]
        for r in out[kind].values():
            if len(r.get("peak_by_tiles") or []) > 2:
                steps = r["peak_by_tiles"]
                lines += ["", f"{' x '.join(map(str, r['shape']))}: peak MB after "
                          + ", ".join(f"{n}: {p:.0f}" for n, p, _ in steps) + " tiles; of it "
                          "the memory-mapped image's pages read so far (RssFile, reclaimable) "
                          + ", ".join(f"{f:.0f}" for _, _, f in steps) + " MB"]
    lines += ["", "Peak MB: increase of the peak RSS (VmHWM, reset after one warm-up call) over "
              "the call in a fresh process (image "
              "memory-mapped, labels to zarr); one tile (check): the memory check's estimate "
              "for one tile (`runtime.tile_bytes`, host + network)."]
    if cp:
        lines.append(f"Cellpose: `model.eval` in its own venv with its default tiling, "
                     f"diameter {CELLPOSE_DIAMETER:g} px, one warm-up call first; its process "
                     f"peaked at {cp['peak_rss_mb']:.0f} MB.")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
