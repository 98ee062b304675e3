"""Write a synthetic labelled 3D data set (``train/`` and ``val/``, ``images/`` and ``masks/``):
touching ellipsoidal nuclei of ``core.data.synthetic.make_nuclei_3d`` (the plugin's 3D sample) at
the sample's density. Data generated in code may be redistributed with a model trained on it,
which makes it the candidate training set of a shipped 3D model (docs/experiments.md says how far
a 20-minute run got):

    python -m benchmarks.synthetic_set runs/synthetic-nuclei3d
    python -m benchmarks.learn --data runs/synthetic-nuclei3d --recipe gonuclear3d --minutes 20
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

#: Volumes of the 3D set and their size (ZYX); the objects per volume keep the sample's density
#: (16 nuclei in 48 x 64 x 64).
SHAPE_3D = (64, 96, 96)
SAMPLE_SHAPE, SAMPLE_OBJECTS = (48, 64, 64), 16


def objects_for(shape: tuple[int, ...]) -> int:
    """Nuclei in a volume of ``shape`` at the density of the plugin's 3D sample."""
    return max(1, round(SAMPLE_OBJECTS * float(np.prod(shape)) / float(np.prod(SAMPLE_SHAPE))))


def write_set(out: Path, n_train: int, n_val: int, shape: tuple[int, ...], seed: int) -> None:
    from napari_colorrl.core.data.files import write_labels, write_tiff
    from napari_colorrl.core.data.synthetic import make_nuclei_3d

    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} exists and is not empty: give a new folder.")
    n_objects = objects_for(shape)
    for split, count, first in (("train", n_train, seed), ("val", n_val, seed + 10_000)):
        for i in range(count):
            image, labels = make_nuclei_3d(shape=shape, n_objects=n_objects, seed=first + i)
            name = f"nuclei3d_{first + i:05d}.tif"
            write_tiff(out / split / "images" / name, (255 * image).round().astype(np.uint8))
            write_labels(out / split / "masks" / name, labels)
            print(f"{split}/{name}: {int(labels.max())} nuclei")


def main() -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a new folder")
    parser.add_argument("--train", type=int, default=16, help="training volumes (default 16)")
    parser.add_argument("--val", type=int, default=4, help="validation volumes (default 4)")
    parser.add_argument("--shape", type=int, nargs=3, default=SHAPE_3D, metavar=("Z", "Y", "X"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_set(args.out, args.train, args.val, tuple(args.shape), args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
