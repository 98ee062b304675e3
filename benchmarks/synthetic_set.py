"""Write a synthetic labelled 3D data set (``train/`` and ``val/``, ``images/`` and ``masks/``).

``--kind touching`` (default): touching ellipsoidal nuclei of ``core.data.synthetic.make_nuclei_3d``
(the plugin's 3D sample) at the sample's density. ``--kind round``: bright round nuclei of one
size (``make_round_nuclei`` in 3D, radius ``--radius``), mostly apart, a few touching: the
training set of the bundled ``nuclei-3d``. Data generated in code may be redistributed with a
model trained on it (docs/experiments.md says how far each got):

    python -m benchmarks.synthetic_set runs/synthetic-nuclei3d
    python -m benchmarks.learn --data runs/synthetic-nuclei3d --recipe nuclei3d_synthetic \
        --minutes 40
    python -m benchmarks.synthetic_set runs/synthetic-round3d --kind round
    python -m benchmarks.learn --data runs/synthetic-round3d --recipe gonuclear3d --minutes 25
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

#: Volumes of the 3D set and their size (ZYX); the objects per volume keep the sample's density
#: (16 nuclei in 48 x 64 x 64).
SHAPE_3D = (64, 96, 96)
SAMPLE_SHAPE, SAMPLE_OBJECTS = (48, 64, 64), 16
#: ``--kind round``: nuclei attempted per voxel (about 45 placed in 64 x 96 x 96 at radius 6)
ROUND_DENSITY = 1.2e-4


def objects_for(shape: tuple[int, ...]) -> int:
    """Nuclei in a volume of ``shape`` at the density of the plugin's 3D sample."""
    return max(1, round(SAMPLE_OBJECTS * float(np.prod(shape)) / float(np.prod(SAMPLE_SHAPE))))


def make_volume(kind: str, shape: tuple[int, ...], seed: int, radius: float = 6.0
                ) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image, labels) of one volume of the set ``kind`` ("touching" or "round")."""
    from napari_colorrl.core.data.synthetic import make_nuclei_3d, make_round_nuclei

    if kind == "round":
        return make_round_nuclei(shape, radius=radius, density=ROUND_DENSITY, seed=seed)
    image, labels = make_nuclei_3d(shape=shape, n_objects=objects_for(shape), seed=seed)
    return (255 * image).round().astype(np.uint8), labels


def write_set(out: Path, n_train: int, n_val: int, shape: tuple[int, ...], seed: int,
              kind: str = "touching", radius: float = 6.0) -> None:
    from napari_colorrl.core.data.writing import write_labels, write_tiff

    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} exists and is not empty: give a new folder.")
    for split, count, first in (("train", n_train, seed), ("val", n_val, seed + 10_000)):
        for i in range(count):
            image, labels = make_volume(kind, shape, first + i, radius)
            name = f"nuclei3d_{first + i:05d}.tif"
            write_tiff(out / split / "images" / name, image)
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
    parser.add_argument("--kind", choices=("touching", "round"), default="touching")
    parser.add_argument("--radius", type=float, default=6.0, help="--kind round: nucleus radius")
    args = parser.parse_args()
    write_set(args.out, args.train, args.val, tuple(args.shape), args.seed, args.kind,
              args.radius)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
