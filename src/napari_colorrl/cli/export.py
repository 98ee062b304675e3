"""``colorrl export``: write a model as a bioimage.io model package (spec 0.5)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a model as a bioimage.io model package (.zip)",
        description="Write a ColorRL model (a checkpoint or a bundled model name) as a "
        "bioimage.io model package, spec 0.5: rdf.yaml, TorchScript and pytorch_state_dict "
        "weights, test tensors, a cover and a README. bioimageio.core, deepImageJ, ilastik and "
        "QuPath run it; `colorrl predict --model NAME.zip` and the segmentation dock read it "
        "back. Needs bioimageio.spec (pip install 'napari-colorrl[bioimage]'). Refuses an "
        "existing --output unless --overwrite.",
    )
    p.add_argument("--model", required=True, help="checkpoint file, or a bundled model name")
    p.add_argument("--output", required=True, type=Path, help="the package to write (*.zip)")
    p.add_argument("--sample", type=Path, default=None,
                   help="an image the test tensors and the cover are made from, e.g. one of "
                   "your validation images (default: a synthetic image)")
    p.add_argument("--name", default=None,
                   help="the package's name (default: ColorRL and the model's name)")
    p.add_argument("--description", default=None, help="one paragraph about the model")
    p.add_argument("--author", action="append", default=[], metavar="NAME",
                   help="an author of the model (repeat for several)")
    p.add_argument("--license", default=None,
                   help="SPDX licence id of the package (default: BSD-3-Clause, the licence of "
                   "napari-colorrl)")
    p.add_argument("--training-data", default=None, metavar="TEXT",
                   help="what the model was trained on (the bundled models know theirs)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_colorrl.core.model.bioimage_export import DEFAULT_LICENSE, export_package

    result = export_package(
        args.model, args.output, sample=args.sample, name=args.name,
        description=args.description, authors=args.author,
        license=args.license or DEFAULT_LICENSE, training_data=args.training_data,
        overwrite=args.overwrite)
    print(f"wrote {result.path} ({result.bytes / 1024**2:.1f} MB): bioimage.io model package "
          f"{result.name!r}, test tensors from {result.sample} "
          f"({' x '.join(map(str, result.test_shape))}, {result.objects} objects). Check it "
          f"with `bioimageio test {result.path}`; segment with `colorrl predict --model "
          f"{result.path} ...`.")
    if result.training_data is None:
        print("note: the package does not name the model's training data; give it with "
              "--training-data TEXT (bioimage.io asks for it).")
    return 0
