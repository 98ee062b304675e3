"""Writing a ColorRL model as a bioimage.io model package (spec 0.5), built with bioimageio.spec.

``export_package(model, output)`` writes one zip that bioimage.io tools (bioimageio.core,
deepImageJ, ilastik, QuPath) can run and that napari-colorrl reads back (``bioimage``):

``rdf.yaml``            the description (``bioimage_rdf.describe``), validated by bioimageio.spec
``weights.pt``          the network's state_dict (float32; a plain-data torch file)
``coloring_network.py`` its architecture source (``ColorRLColoring``: network + T argmax steps)
``weights-torchscript.pt``  the same module compiled with ``torch.jit.script``
``test-*.npy``          a test input (a real or synthetic sample) and the outputs it gives
``cover.png``           the sample and its instances; ``README.md`` (``bioimage_rdf.readme``)

Before anything is written, the packaged module must give napari-colorrl's own color map of
the test input, eager and compiled. docs/method.md ("bioimage.io packages") says how the
package's pipeline differs from this project's own inference. Needs the optional
``bioimageio.spec`` (``pip install 'napari-colorrl[bioimage]'``).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ColorRLConfig
from ..data.files import read_image
from ..data.normalize import model_channels, network_image, normalize_channels, resize_image
from ..data.writing import atomic_write
from ..method.coloring import colors_from_steps, run_coloring
from ..method.postprocess import instances_from_colors
from .bioimage import ARCHITECTURE_FILE, PACKAGE_SUFFIX, load_model_file
from .bioimage_rdf import (
    PackageText,
    TrainingData,
    architecture_kwargs,
    describe,
    readme,
    size_multiple,
)
from .checkpoint import Checkpoint, network_from_checkpoint

DEFAULT_LICENSE = "BSD-3-Clause"
#: Largest spatial size of a test tensor cut from a user's sample for a 'crop' model, per axis.
MAX_TEST_SIZE = {2: 256, 3: 64}
_INSTALL = "pip install 'napari-colorrl[bioimage]'"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    bytes: int
    name: str
    sample: str  # where the test tensors came from
    test_shape: tuple[int, ...]  # spatial shape of the test input
    objects: int  # instances in the cover's segmentation
    training_data: str | None  # the training data the package names, if any


def check_package_output(output: str | Path, overwrite: bool = False) -> Path:
    """ValueError when ``output`` is not a ``.zip`` name, is a folder, or exists (unless
    ``overwrite``). Nothing is written."""
    output = Path(output).expanduser()
    if output.suffix.lower() != PACKAGE_SUFFIX:
        raise ValueError(f"--output {output} must end in .zip: a bioimage.io model package is a "
                         f"zip file (e.g. {output.with_suffix('.zip').name}).")
    if output.is_dir():
        raise ValueError(f"--output {output} is a folder; give a file name such as "
                         f"{output / 'model.zip'}.")
    if output.exists() and not overwrite:
        raise ValueError(f"{output} already exists; choose another --output, or --overwrite "
                         f"to replace it.")
    return output


def require_bioimageio_spec() -> None:
    """RuntimeError with the install command when bioimageio.spec is missing."""
    try:
        import bioimageio.spec  # noqa: F401
    except ImportError:
        raise RuntimeError(f"Exporting a bioimage.io package needs the bioimageio.spec package, "
                           f"which is not installed: {_INSTALL}") from None


def load_model(model: str | Path) -> tuple[Checkpoint, Path]:
    """A checkpoint, a package written by ``colorrl export`` or a bundled model name, loaded."""
    from .bundled import resolve_model_path

    path = resolve_model_path(model)
    return load_model_file(path), path


def export_package(
    model: str | Path,
    output: str | Path,
    *,
    sample: str | Path | np.ndarray | None = None,
    name: str | None = None,
    description: str | None = None,
    authors: list[str] | tuple[str, ...] = (),
    license: str = DEFAULT_LICENSE,
    training_data: TrainingData | str | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write the model ``model`` (checkpoint path, package or bundled name) as a bioimage.io
    package ``output`` (``*.zip``), atomically; an existing ``output`` only with ``overwrite``.

    sample: the image the test tensors and the cover are made from (a file path or an array;
    default: a synthetic image of the model's kind). 'resize' models get it resized to the
    network's input size, 'crop' models a centred crop of at most ``MAX_TEST_SIZE`` per axis.
    training_data: named in the package; the bundled models know theirs.
    """
    from .bundled import BUNDLED_INFO

    output = check_package_output(output, overwrite)
    require_bioimageio_spec()
    _check_license(license)
    if isinstance(sample, (str, Path)):
        sample = _read_sample(sample)
    checkpoint, path = load_model(model)
    config = without_aux_heads(checkpoint.config)
    known = BUNDLED_INFO.get(str(model), {})
    if training_data is None and "training_data" in known:
        training_data = TrainingData(**known["training_data"])
    if isinstance(training_data, str):
        training_data = TrainingData(name=training_data)
    raw, sample_text = _test_input(config, sample)
    image = normalize_channels(raw, config.normalization)
    module = coloring_module(config, {k: v for k, v in checkpoint.model_state.items()
                                      if not k.startswith("aux_head.")})
    scripted, colors, steps = _run_checked(module, network_from_checkpoint(checkpoint, path),
                                           config, image)
    instances = instances_from_colors(colors[0], min_size=config.min_size,
                                      connectivity=config.connectivity)
    text = PackageText(
        title=_name(name, model, path), summary=description, authors=tuple(authors),
        license=license, training=training_data,
        validation=known.get("validation") or _validation(checkpoint), sample=sample_text,
        model=str(model), source=path.name)
    with tempfile.TemporaryDirectory(prefix="colorrl-export-") as tmp:
        folder = Path(tmp)
        files = _write_files(folder, module, scripted, raw, colors, steps)
        _cover(image, instances, config.ndim).save(files["cover"])
        (folder / "README.md").write_text(readme(text, config), "utf-8")
        with warnings.catch_warnings():
            # bioimageio.spec leaves files it hashed to the garbage collector.
            warnings.simplefilter("ignore", ResourceWarning)
            descr = describe(folder, files, text, config, checkpoint.step, checkpoint.episodes,
                             sum(v.numel() for v in checkpoint.model_state.values()),
                             training_scale=checkpoint.extra.get("training_scale"))
            built = _save(descr, folder / "package.zip")
        atomic_write(output, lambda fh: _copy(built, fh), what="package")
    return ExportResult(path=output, bytes=output.stat().st_size, name=text.title,
                        sample=sample_text, test_shape=tuple(raw.shape[1:]),
                        objects=int(instances.max()),
                        training_data=None if training_data is None else training_data.name)


def without_aux_heads(config: ColorRLConfig) -> ColorRLConfig:
    """The config a package carries: the auxiliary heads (training only, never used to color)
    are left out with their weights."""
    if not config.network.aux_heads:
        return config
    return config.replace(network=dataclasses.replace(config.network, aux_heads=False))


def coloring_module(config: ColorRLConfig, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """``ColorRLColoring`` of ``config`` with the float32 weights ``state``, in eval mode."""
    from .coloring_network import ColorRLColoring

    module = ColorRLColoring(**architecture_kwargs(config))
    module.load_state_dict({k: v.float() for k, v in state.items()})
    return module.eval()


# --- test tensors ---------------------------------------------------------------------------
def _test_input(config: ColorRLConfig, sample: Any) -> tuple[np.ndarray, str]:
    """The raw (unscaled) test input (C, *S) float32 at a size the package accepts."""
    ndim = config.ndim
    if sample is None:
        shape = tuple(config.input_size) if config.input_mode == "resize" else tuple(
            _valid_size(s, config, cap=False) for s in config.input_size)
        image, text = _synthetic(ndim, shape), "a synthetic image made by napari-colorrl"
    elif isinstance(sample, _Sample):
        image, text = sample.image, f"the image {sample.name}"
    else:
        image, text = np.asarray(sample), "an image given to the export"
    data = model_channels(image, config.normalization, ndim)
    if config.input_mode == "resize":
        return resize_image(data, tuple(int(s) for s in config.input_size)), text
    if sample is not None:  # an image at the image's scale: to the network's (input_scale)
        data = network_image(data, config)
    target = tuple(_valid_size(s, config) for s in data.shape[1:])
    pad = [(0, 0)] + [(0, max(t - s, 0)) for s, t in zip(data.shape[1:], target)]
    data = np.pad(data, pad, mode="edge")
    index = (slice(None),) + tuple(slice((s - t) // 2, (s - t) // 2 + t)
                                   for s, t in zip(data.shape[1:], target))
    return np.ascontiguousarray(data[index], dtype=np.float32), text


@dataclass(frozen=True)
class _Sample:
    name: str
    image: np.ndarray


def _read_sample(path: str | Path) -> _Sample:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--sample {path} does not exist; give an image file (the "
                                f"test tensors and the cover are made from it).")
    return _Sample(path.name, read_image(path))


def _check_license(license: str) -> None:
    from bioimageio.spec.model.v0_5 import LicenseId
    from pydantic import ValidationError

    try:
        LicenseId(license)
    except (ValidationError, ValueError):
        raise ValueError(f"--license {license!r} is not an SPDX licence id that bioimage.io "
                         f"accepts; use e.g. CC-BY-4.0, MIT or BSD-3-Clause.") from None


def _valid_size(size: int, config: ColorRLConfig, cap: bool = True) -> int:
    """The largest size <= ``size`` (and <= the cap) that is a multiple of the network's size
    step, at least twice the step (smaller samples are padded)."""
    m = size_multiple(config)
    size = min(int(size), MAX_TEST_SIZE[config.ndim]) if cap else int(size)
    return max(size // m * m, 2 * m)


def _synthetic(ndim: int, shape: tuple[int, ...]) -> np.ndarray:
    from ..data.synthetic import make_cells_2d, make_nuclei_3d

    if ndim == 2:
        n = max(3, round(14 * shape[0] * shape[1] / 176**2))
        return make_cells_2d(shape=shape, n_objects=n, seed=0)[0]
    n = max(3, round(16 * float(np.prod(shape)) / (48 * 64 * 64)))
    return make_nuclei_3d(shape=shape, n_objects=n, seed=0)[0]


def _run_checked(module: torch.nn.Module, network: torch.nn.Module, config: ColorRLConfig,
                 image: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray]:
    """The TorchScript of ``module`` and the colors and steps it gives for ``image``
    (C, *S); RuntimeError unless the module, eager and compiled, gives napari-colorrl's own
    color map (``run_coloring`` with the project's network)."""
    tensor = torch.from_numpy(image)[None]
    with torch.no_grad():
        colors, steps = (t.numpy() for t in module(tensor))
    reference = run_coloring(network.eval(), tensor, config.steps, passes=config.passes)
    if not np.array_equal(colors_from_steps(np.moveaxis(reference.steps, 1, 0)), colors):
        raise RuntimeError("The exported coloring module does not reproduce napari-colorrl's "
                           "color map; please report this as a bug of napari-colorrl.")
    with warnings.catch_warnings():
        # torch >= 2.10 deprecates TorchScript; bioimage.io tools still run it.
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(module)
    with torch.no_grad():
        script_colors, script_steps = scripted(tensor)
    if not (script_colors.dtype == torch.int32 and script_steps.dtype == torch.uint8
            and np.array_equal(script_colors.numpy(), colors)
            and np.array_equal(script_steps.numpy(), steps)):
        raise RuntimeError("The TorchScript module does not reproduce the color map; please "
                           "report this as a bug of napari-colorrl.")
    return scripted, colors, steps


def _validation(checkpoint: Checkpoint) -> str:
    score = checkpoint.extra.get("best_score")
    if isinstance(score, (int, float)) and score >= 0:
        return (f"The best validation score during training (SBD + AP50, napari-colorrl's "
                f"selection score, 0 to 2) was {score:.3f}.")
    return "No validation scores were recorded with this model."


# --- files ----------------------------------------------------------------------------------
def _write_files(folder: Path, module: torch.nn.Module, scripted: Any, raw: np.ndarray,
                 colors: np.ndarray, steps: np.ndarray) -> dict[str, Path]:
    """Weights (state_dict and TorchScript), architecture source and test tensors in
    ``folder``; their paths, and where the cover goes."""
    from . import coloring_network

    files = {
        "weights": folder / "weights.pt",
        "torchscript": folder / "weights-torchscript.pt",
        "architecture": folder / ARCHITECTURE_FILE,
        "input": folder / "test-input.npy",
        "colors": folder / "test-colors.npy",
        "steps": folder / "test-steps.npy",
        "cover": folder / "cover.png",
    }
    torch.save({k: v.detach().float().contiguous() for k, v in module.state_dict().items()},
               files["weights"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted.save(str(files["torchscript"]))
    shutil.copyfile(coloring_network.__file__, files["architecture"])
    np.save(files["input"], raw[None].astype(np.float32))
    np.save(files["colors"], colors.astype(np.int32))
    np.save(files["steps"], steps.astype(np.uint8))
    return files


def _cover(image: np.ndarray, instances: np.ndarray, ndim: int):
    """The sample (scaled) and its instances over it, side by side: a 2:1 PNG."""
    from PIL import Image

    if ndim == 3:  # the middle slice of the volume
        middle = image.shape[1] // 2
        image, instances = image[:, middle], instances[middle]
    gray = image[:3].transpose(1, 2, 0) if image.shape[0] == 3 else np.repeat(
        image[0][..., None], 3, axis=2)
    gray = (np.clip(gray, 0, 1) * 255).astype(np.uint8)
    palette = np.random.default_rng(0).integers(60, 256, size=(int(instances.max()) + 1, 3))
    palette[0] = 0
    overlay = np.where(instances[..., None] > 0,
                       (0.4 * gray + 0.6 * palette[instances]).astype(np.uint8), gray)
    side = 256
    panels = [_square(Image.fromarray(a), side) for a in (gray, overlay)]
    cover = Image.new("RGB", (2 * side, side))
    for i, panel in enumerate(panels):
        cover.paste(panel, (i * side, 0))
    return cover


def _square(panel, side: int):
    from PIL import Image

    width, height = panel.size
    scale = side / max(width, height)
    panel = panel.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                         Image.NEAREST)
    square = Image.new("RGB", (side, side))
    square.paste(panel, ((side - panel.size[0]) // 2, (side - panel.size[1]) // 2))
    return square


def _copy(source: Path, fh) -> None:
    with open(source, "rb") as src:
        shutil.copyfileobj(src, fh, 1024**2)


def _name(name: str | None, model: str | Path, path: Path) -> str:
    """The package's name: ``name``, else "ColorRL" and the bundled name or the file's stem,
    with the characters bioimage.io allows."""
    from .bundled import BUNDLED_MODELS

    text = name or f"ColorRL {model if str(model) in BUNDLED_MODELS else path.stem}"
    clean = re.sub(r"[^A-Za-z0-9_+\- ()]", "-", text).strip()
    if len(clean) < 5:
        clean = f"ColorRL {clean}".strip()
    return clean[:64]


def _save(descr: Any, path: Path) -> Path:
    from bioimageio.spec import save_bioimageio_package

    return Path(save_bioimageio_package(descr, output_path=path))
