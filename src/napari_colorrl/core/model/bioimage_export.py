"""Writing a ColorRL model as a bioimage.io model package (spec 0.5), built with bioimageio.spec.

``export_package(model, output)`` writes one zip that bioimage.io tools (bioimageio.core,
deepImageJ, ilastik, QuPath) can run and that napari-colorrl reads back (``bioimage``):

``rdf.yaml``            the description, made and validated by ``bioimageio.spec``; its
                        ``config.napari-colorrl`` section holds the whole ``ColorRLConfig``
``weights.pt``          the network's state_dict (float32; a plain-data torch file)
``coloring_network.py`` its architecture source (``ColorRLColoring``: network + T argmax steps)
``weights-torchscript.pt``  the same module compiled with ``torch.jit.script``
``test-*.npy``          a test input (a real or synthetic sample) and the outputs it gives
``cover.png``           the sample and its instances; ``README.md`` the documentation

Input: ``image`` (batch, channel, [z,] y, x) float32; preprocessing ``scale_range`` with the
model's percentiles per channel, then ``clip`` to [0, 1]. Outputs: ``colors`` (batch, [z,] y, x)
int32, the color code of every pixel (connected components of each color > 0 are the
instances), and ``steps`` (batch, step, [z,] y, x) uint8, the T binary step maps.
docs/method.md ("bioimage.io packages") says what differs from napari-colorrl's own inference.
Needs the optional ``bioimageio.spec`` (``pip install 'napari-colorrl[bioimage]'``).
"""

from __future__ import annotations

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
from ..data.files import atomic_write, read_image
from ..data.normalize import model_channels, normalize_channels, resize_image
from ..method.coloring import colors_from_steps, run_coloring
from ..method.postprocess import instances_from_colors
from .bioimage import (
    ARCHITECTURE_CALLABLE,
    ARCHITECTURE_FILE,
    CONFIG_KEY,
    PACKAGE_FORMAT,
    PACKAGE_FORMAT_VERSION,
    PACKAGE_SUFFIX,
    is_package,
    load_package,
)
from .checkpoint import Checkpoint, load_checkpoint, network_from_checkpoint

#: The ColorRL paper (arXiv DOI; the CVPR 2021 version has the same title).
PAPER = ("Tuan, Khoa, Quan, Jeong: Reinforced Coloring for End-to-End Instance Segmentation. "
         "CVPR 2021 (arXiv:2005.07058)")
PAPER_DOI = "10.48550/arXiv.2005.07058"
DEFAULT_LICENSE = "BSD-3-Clause"
#: Largest spatial size of a test tensor cut from a user's sample for a 'crop' model, per axis.
MAX_TEST_SIZE = {2: 256, 3: 64}
_INSTALL = "pip install 'napari-colorrl[bioimage]'"


@dataclass(frozen=True)
class TrainingData:
    """What a model was trained on, as the package names it."""

    name: str
    description: str = ""
    license: str | None = None
    doi: str | None = None
    citation: str = ""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    bytes: int
    name: str
    sample: str  # where the test tensors came from
    test_shape: tuple[int, ...]  # spatial shape of the test input
    objects: int  # instances in the cover's segmentation


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
    loader = load_package if is_package(path) else load_checkpoint
    return loader(path), path


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
    package ``output`` (``*.zip``), atomically.

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
    config = checkpoint.config
    network = network_from_checkpoint(checkpoint, path).eval()
    known = BUNDLED_INFO.get(str(model), {})
    if training_data is None and "training_data" in known:
        training_data = TrainingData(**known["training_data"])
    if isinstance(training_data, str):
        training_data = TrainingData(name=training_data)
    validation = known.get("validation") or _validation(checkpoint)
    raw, sample_text = _test_input(config, sample)
    image = normalize_channels(raw, config.normalization)
    module = coloring_module(config, checkpoint.model_state)
    with torch.no_grad():
        colors, steps = (t.numpy() for t in module(torch.from_numpy(image)[None]))
    _check_matches_inference(network, config, image, colors)
    with warnings.catch_warnings():
        # torch >= 2.10 deprecates TorchScript; bioimage.io tools still run it.
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(module)
    with torch.no_grad():
        script_colors, script_steps = scripted(torch.from_numpy(image)[None])
        if not (script_colors.dtype == torch.int32 and script_steps.dtype == torch.uint8
                and np.array_equal(script_colors.numpy(), colors)
                and np.array_equal(script_steps.numpy(), steps)):
            raise RuntimeError("The TorchScript module does not reproduce the color map; please "
                               "report this as a bug of napari-colorrl.")
    instances = instances_from_colors(colors[0], min_size=config.min_size,
                                      connectivity=config.connectivity)
    title = _name(name, model, path)
    with tempfile.TemporaryDirectory(prefix="colorrl-export-") as tmp:
        folder = Path(tmp)
        files = _write_files(folder, module, scripted, checkpoint, raw, colors, steps, image,
                             instances, config)
        (folder / "README.md").write_text(
            _readme(title, config, training_data, sample_text, validation, path), "utf-8")
        with warnings.catch_warnings():
            # bioimageio.spec leaves files it hashed to the garbage collector.
            warnings.simplefilter("ignore", ResourceWarning)
            descr = _description(folder, files, title, description, config, checkpoint,
                                 authors, license, training_data, str(model))
            built = _save(descr, folder / "package.zip")
        atomic_write(output, lambda fh: _copy(built, fh), what="package")
    return ExportResult(path=output, bytes=output.stat().st_size, name=title,
                        sample=sample_text, test_shape=tuple(raw.shape[1:]),
                        objects=int(instances.max()))


def coloring_module(config: ColorRLConfig, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """``ColorRLColoring`` of ``config`` with the float32 weights ``state``, in eval mode."""
    from .coloring_network import ColorRLColoring

    module = ColorRLColoring(**architecture_kwargs(config))
    module.load_state_dict({k: v.float() for k, v in state.items()})
    return module.eval()


def architecture_kwargs(config: ColorRLConfig) -> dict[str, Any]:
    """The keyword arguments of ``ColorRLColoring`` for ``config`` (saved in rdf.yaml)."""
    net = config.network
    return {"ndim": config.ndim, "image_channels": config.normalization.channels,
            "steps": config.steps, "features": [int(f) for f in net.features],
            "attention": bool(net.attention), "input_features": int(net.input_features)}


def spatial_axes(ndim: int) -> tuple[str, ...]:
    return ("z", "y", "x")[3 - ndim:]


def size_multiple(config: ColorRLConfig) -> int:
    """Spatial sizes the network takes without padding: multiples of this, at least twice it."""
    return 2 ** (len(config.network.features) - 1)


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


def _check_matches_inference(network: torch.nn.Module, config: ColorRLConfig,
                             image: np.ndarray, colors: np.ndarray) -> None:
    """RuntimeError unless the packaged module colors ``image`` as napari-colorrl does."""
    reference = run_coloring(network, torch.from_numpy(image)[None], config.steps)
    if not np.array_equal(colors_from_steps(np.moveaxis(reference.steps, 1, 0)), colors):
        raise RuntimeError("The exported coloring module does not reproduce napari-colorrl's "
                           "color map; please report this as a bug of napari-colorrl.")


def _validation(checkpoint: Checkpoint) -> str:
    score = checkpoint.extra.get("best_score")
    if isinstance(score, (int, float)) and score >= 0:
        return (f"The best validation score during training (SBD + AP50, napari-colorrl's "
                f"selection score, 0 to 2) was {score:.3f}.")
    return "No validation scores were recorded with this model."


# --- files ----------------------------------------------------------------------------------
def _write_files(folder: Path, module: torch.nn.Module, scripted: Any, checkpoint: Checkpoint,
                 raw: np.ndarray, colors: np.ndarray, steps: np.ndarray, image: np.ndarray,
                 instances: np.ndarray, config: ColorRLConfig) -> dict[str, Path]:
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
    _cover(image, instances, config.ndim).save(files["cover"])
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


# --- the description -------------------------------------------------------------------------
def _description(folder: Path, files: dict[str, Path], title: str, description: str | None,
                 config: ColorRLConfig, checkpoint: Checkpoint, authors: Any, license: str,
                 training_data: TrainingData | None, model: str):
    from bioimageio.spec.model import v0_5 as spec

    from ... import __version__

    ndim, steps = config.ndim, config.steps
    axes_ids = spatial_axes(ndim)
    m = size_multiple(config)
    if config.input_mode == "resize":
        sizes: list[Any] = [int(s) for s in config.input_size]
    else:
        sizes = [spec.ParameterizedSize(min=2 * m, step=m) for _ in axes_ids]
    channel_names = ["gray"] if config.normalization.channels == 1 else ["red", "green", "blue"]
    image_id = spec.TensorId("image")
    input_axes = [spec.BatchAxis(), spec.ChannelAxis(channel_names=channel_names)] + [
        spec.SpaceInputAxis(id=spec.AxisId(a), size=s) for a, s in zip(axes_ids, sizes)]

    def space_out() -> list[Any]:
        return [spec.SpaceOutputAxis(id=spec.AxisId(a), size=spec.SizeReference(
            tensor_id=image_id, axis_id=spec.AxisId(a))) for a in axes_ids]

    norm = config.normalization
    low, high = (norm.low, norm.high) if norm.mode == "percentile" else (0.0, 100.0)
    if high <= 1:
        raise ValueError(f"normalization.high {high} cannot be written as bioimage.io "
                         f"scale_range (its upper percentile must be above 1).")
    inputs = [spec.InputTensorDescr(
        id=image_id, axes=input_axes, test_tensor=spec.FileDescr(source=files["input"]),
        description="the image, raw intensities; each channel is scaled by its percentiles "
        f"{low:g} and {high:g} to [0, 1] and clipped",
        data=spec.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[
            spec.ScaleRangeDescr(kwargs=spec.ScaleRangeKwargs(
                axes=[spec.AxisId(a) for a in axes_ids], min_percentile=low,
                max_percentile=high)),
            spec.ClipDescr(kwargs=spec.ClipKwargs(min=0.0, max=1.0)),
        ])]
    outputs = [
        spec.OutputTensorDescr(
            id=spec.TensorId("colors"), axes=[spec.BatchAxis(), *space_out()],
            test_tensor=spec.FileDescr(source=files["colors"]),
            description="color code of every pixel (0 = background, 1 .. 2^T - 1): the "
            "connected components of each color are the instances (README.md)",
            data=spec.IntervalOrRatioDataDescr(type="int32", range=(0, 2**steps - 1))),
        spec.OutputTensorDescr(
            id=spec.TensorId("steps"),
            # The channel axis keeps its default id: bioimageio.core 0.11 names the axis of a
            # model's output 'channel' whatever the description says.
            axes=[spec.BatchAxis(), spec.ChannelAxis(
                channel_names=[f"step{t + 1}" for t in range(steps)]), *space_out()],
            test_tensor=spec.FileDescr(source=files["steps"]),
            description="the T binary action maps of the coloring steps (colors = sum_t "
            "a_t 2^t)",
            data=spec.NominalOrOrdinalDataDescr(values=[0, 1], type="uint8")),
    ]
    torch_version = spec.Version(torch.__version__.split("+")[0])
    weights = spec.WeightsDescr(
        pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
            source=files["weights"], pytorch_version=torch_version,
            architecture=spec.ArchitectureFromFileDescr(
                source=files["architecture"], callable=spec.Identifier(ARCHITECTURE_CALLABLE),
                kwargs=architecture_kwargs(config))),
        torchscript=spec.TorchscriptWeightsDescr(
            source=files["torchscript"], pytorch_version=torch_version,
            parent="pytorch_state_dict"),
    )
    marker = {
        "format": PACKAGE_FORMAT, "format_version": PACKAGE_FORMAT_VERSION,
        "version": str(__version__), "model": model, "step": int(checkpoint.step),
        "episodes": int(checkpoint.episodes), "colorrl_config": config.to_dict(),
        "instances": {"background_color": 0, "connectivity": config.connectivity or ndim,
                      "min_size": int(config.min_size), "input_mode": config.input_mode,
                      "input_size": [int(s) for s in config.input_size]},
    }
    config_section = spec.Config.model_validate({
        "bioimageio": {
            # The colors are integer codes: an argmax flip is a mismatch, not a small error.
            "reproducibility_tolerance": [{"relative_tolerance": 0.0, "absolute_tolerance": 0.0,
                                           "mismatched_elements_per_million": 100}],
            "architecture_type": "U-Net + RL coloring",
            "model_parameter_count": int(sum(v.numel() for v in
                                             checkpoint.model_state.values())),
        },
        CONFIG_KEY: marker,
    })
    summary = description or (
        f"ColorRL instance segmentation ({ndim}D, T = {steps} reinforced coloring steps), "
        f"exported by napari-colorrl {__version__}. The output 'colors' gives every pixel a "
        f"color; connected components of each color > 0 are the instances.")
    training = None
    if training_data is not None:
        from bioimageio.spec.dataset import v0_3 as dataset

        training = dataset.DatasetDescr(
            name=training_data.name,
            description=training_data.description or training_data.name,
            license=training_data.license,
            cite=[spec.CiteEntry(text=training_data.citation or training_data.name,
                                 doi=spec.Doi(training_data.doi))] if training_data.doi else [],
        )
    return spec.ModelDescr(
        name=title,
        description=summary,
        authors=[spec.Author(name=a) for a in authors],
        cite=[spec.CiteEntry(text=PAPER, doi=spec.Doi(PAPER_DOI))],
        license=spec.LicenseId(license),
        documentation=spec.FileDescr(source=folder / "README.md"),
        covers=[spec.FileDescr(source=files["cover"])],
        tags=["instance-segmentation", "colorrl", "reinforcement-learning", f"{ndim}d",
              "pytorch", "napari-colorrl"],
        inputs=inputs,
        outputs=outputs,
        weights=weights,
        training_data=training,
        config=config_section,
    )


def _save(descr: Any, path: Path) -> Path:
    from bioimageio.spec import save_bioimageio_package

    return Path(save_bioimageio_package(descr, output_path=path))


def _readme(title: str, config: ColorRLConfig, training: TrainingData | None, sample: str,
            validation: str, path: Path) -> str:
    from ... import __version__

    ndim, steps = config.ndim, config.steps
    axes = ", ".join(spatial_axes(ndim))
    m = size_multiple(config)
    norm = config.normalization
    scaling = (f"its {norm.low:g}th and {norm.high:g}th percentiles" if norm.mode == "percentile"
               else "its minimum and maximum")
    if config.input_mode == "resize":
        size_rule = (
            f"exactly {' x '.join(str(s) for s in config.input_size)} ({axes}): the network "
            f"was trained on images resized to this size. Resize your image to it first "
            f"(linear interpolation), and resize the output colors back to your image's size "
            f"(nearest neighbour) before the connected components.")
    else:
        size_rule = (
            f"any size per spatial axis ({axes}) that is a multiple of {m}, at least {2 * m}. "
            f"Pad your image (replicate its edges) up to such a size and crop the outputs back. "
            f"Run whole images, not tiles: the network's instance norms see the whole input.")
    channels = ("1 channel (grayscale; average the channels of an RGB image)"
                if norm.channels == 1 else "3 channels (RGB)")
    trained = (f"{training.name}" + (f" ({training.license})" if training.license else "")
               if training else "not recorded when this package was exported")
    connectivity = config.connectivity or ndim
    return f"""# {title}

A ColorRL model (reinforced coloring, {PAPER}) exported by napari-colorrl {__version__} from
`{path.name}`. Every pixel is an agent that takes one binary action in each of T = {steps}
steps; the T bits form its color, and neighbouring objects end with different colors.

## Input

`image`: (batch, channel, {axes}) float32, raw intensities, {channels}. The package scales each
channel by {scaling} (`scale_range`) and clips to [0, 1] (`clip`), as napari-colorrl does.
Spatial size: {size_rule}

## Outputs

- `colors`: (batch, {axes}) int32, the color of every pixel, 0 = background,
  1 .. {2**steps - 1} = objects.
- `steps`: (batch, step, {axes}) uint8, the {steps} binary step maps a_t; colors = sum_t a_t 2^t.

## From the color map to instances

The instances are the connected components of each color except 0 (neighbourhood: connectivity
{connectivity} of {ndim}, i.e. {'full' if connectivity == ndim else 'faces only'}), with
components smaller than {config.min_size} pixels removed (the minimum size chosen for this
model). In Python:

```python
import numpy as np
from skimage.measure import label

components = label(colors, background=0, connectivity={connectivity})
sizes = np.bincount(components.ravel())
keep = sizes >= {max(int(config.min_size), 1)}
keep[0] = False
ids = np.zeros(len(sizes), dtype=np.int64)
ids[keep] = np.arange(1, keep.sum() + 1)
instances = ids[components]
```

napari-colorrl does all of this itself: `colorrl predict --model THIS.zip --input IMAGE
--output labels/`, or choose the .zip in the "ColorRL Segmentation" dock of napari.

## Training data

{trained}.

## Validation

{validation} The test tensors were made from {sample}; `bioimageio test THIS.zip` checks that a
runtime reproduces their outputs.

## Citation

{PAPER}. DOI: {PAPER_DOI}
"""
