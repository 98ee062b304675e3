"""What a ColorRL bioimage.io package says: its description (``rdf.yaml``, built and validated
with bioimageio.spec, spec 0.5) and its documentation (``README.md``).

Input ``image`` (batch, channel, [z,] y, x) float32, preprocessed with the spec's own
``scale_range`` (the model's percentiles, per channel) and ``clip`` to [0, 1]. Outputs
``colors`` (batch, [z,] y, x) int32 and ``steps`` (batch, channel = step, [z,] y, x) uint8.
'resize' models take exactly their input size; 'crop' models any multiple of 2^(depth - 1),
at least twice that. ``config.napari-colorrl`` holds the whole ``ColorRLConfig`` and marks the
package as napari-colorrl's (``bioimage.load_package`` reads it back).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ColorRLConfig
from .bioimage import ARCHITECTURE_CALLABLE, CONFIG_KEY, PACKAGE_FORMAT, PACKAGE_FORMAT_VERSION

#: The ColorRL paper (its arXiv DOI; the CVPR 2021 version has the same title).
PAPER = ("Tuan, Khoa, Quan, Jeong: Reinforced Coloring for End-to-End Instance Segmentation. "
         "CVPR 2021 (arXiv:2005.07058)")
PAPER_DOI = "10.48550/arXiv.2005.07058"


@dataclass(frozen=True)
class TrainingData:
    """What a model was trained on, as the package names it."""

    name: str
    description: str = ""
    license: str | None = None
    doi: str | None = None
    citation: str = ""


@dataclass(frozen=True)
class PackageText:
    """The words of a package: its name and summary, who made it, under which licence, on what
    data, how well it did, where its test tensors came from and what it was exported from."""

    title: str
    summary: str | None
    authors: tuple[str, ...]
    license: str
    training: TrainingData | None
    validation: str
    sample: str
    model: str
    source: str  # file name of the exported model


def architecture_kwargs(config: ColorRLConfig) -> dict[str, Any]:
    """The keyword arguments of ``coloring_network.ColorRLColoring`` for ``config``."""
    net = config.network
    kwargs = {"ndim": config.ndim, "image_channels": config.normalization.channels,
              "steps": config.steps, "features": [int(f) for f in net.features],
              "attention": bool(net.attention), "input_features": int(net.input_features),
              "passes": int(config.passes)}
    if net.coordinates:  # only then: packages without it stay as they were
        kwargs["coordinates"] = True
    return kwargs


def spatial_axes(ndim: int) -> tuple[str, ...]:
    return ("z", "y", "x")[3 - ndim:]


def size_multiple(config: ColorRLConfig) -> int:
    """Spatial sizes the network takes without padding: multiples of this, at least twice it."""
    return 2 ** (len(config.network.features) - 1)


def describe(folder: Path, files: dict[str, Path], text: PackageText, config: ColorRLConfig,
             step: int, episodes: int, parameters: int, training_scale: dict | None = None):
    """The ``ModelDescr`` of a package whose files (keys of ``files``: weights, torchscript,
    architecture, input, colors, steps, cover; ``folder / README.md``) are written;
    training_scale: the checkpoint's (``data.scale.TrainingScale.to_dict()``), kept with it."""
    from bioimageio.spec.model import v0_5 as spec

    from ... import __version__

    axes_ids = spatial_axes(config.ndim)
    image_id = spec.TensorId("image")

    def space_out() -> list[Any]:
        return [spec.SpaceOutputAxis(id=spec.AxisId(a), size=spec.SizeReference(
            tensor_id=image_id, axis_id=spec.AxisId(a))) for a in axes_ids]

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
    steps = config.passes  # the steps the package runs: the model's depth k (T unless chosen)
    outputs = [
        spec.OutputTensorDescr(
            id=spec.TensorId("colors"), axes=[spec.BatchAxis(), *space_out()],
            test_tensor=spec.FileDescr(source=files["colors"]),
            description="color of every pixel (0 = background, 1 .. 2^k - 1 after k steps); "
            "the components of each color are the instances",
            data=spec.IntervalOrRatioDataDescr(type="int32", range=(0, 2**steps - 1))),
        spec.OutputTensorDescr(
            id=spec.TensorId("steps"),
            # The channel axis keeps its default id: bioimageio.core 0.11 names the channel
            # axis of a model's output 'channel' whatever the description says.
            axes=[spec.BatchAxis(), spec.ChannelAxis(
                channel_names=[f"step{t + 1}" for t in range(steps)]), *space_out()],
            test_tensor=spec.FileDescr(source=files["steps"]),
            description="the k binary action maps of the coloring steps run (colors = sum_t "
            "a_t 2^t)",
            data=spec.NominalOrOrdinalDataDescr(values=[0, 1], type="uint8")),
    ]
    marker = {
        "format": PACKAGE_FORMAT, "format_version": PACKAGE_FORMAT_VERSION,
        "version": str(__version__), "model": text.model, "step": int(step),
        "episodes": int(episodes), "colorrl_config": config.to_dict(),
        "instances": {"background_color": 0, "connectivity": config.connectivity or config.ndim,
                      "min_size": int(config.min_size), "depth": int(config.passes),
                      "input_mode": config.input_mode,
                      "input_size": [int(s) for s in config.input_size]},
    }
    if training_scale is not None:
        marker["training_scale"] = training_scale
    settings = spec.Config.model_validate({
        "bioimageio": {
            # Colors are integer codes: an argmax flip is a mismatch, never a small error.
            "reproducibility_tolerance": [{"relative_tolerance": 0.0, "absolute_tolerance": 0.0,
                                           "mismatched_elements_per_million": 100}],
            "architecture_type": "U-Net + RL coloring",
            "model_parameter_count": int(parameters),
        },
        CONFIG_KEY: marker,
    })
    summary = text.summary or (
        f"ColorRL instance segmentation ({config.ndim}D, T = {steps} reinforced coloring "
        f"steps), exported by napari-colorrl {__version__}. The output 'colors' gives every "
        f"pixel a color; connected components of each color > 0 are the instances.")
    return spec.ModelDescr(
        name=text.title,
        description=summary,
        authors=[spec.Author(name=a) for a in text.authors],
        cite=[spec.CiteEntry(text=PAPER, doi=spec.Doi(PAPER_DOI))],
        license=spec.LicenseId(text.license),
        documentation=spec.FileDescr(source=folder / "README.md"),
        covers=[spec.FileDescr(source=files["cover"])],
        tags=["instance-segmentation", "colorrl", "reinforcement-learning",
              f"{config.ndim}d", "pytorch", "napari-colorrl"],
        inputs=[_input(spec, config, image_id, files["input"])],
        outputs=outputs,
        weights=weights,
        training_data=_training(spec, text.training),
        config=settings,
    )


def _input(spec: Any, config: ColorRLConfig, image_id: Any, test_tensor: Path):
    axes_ids = spatial_axes(config.ndim)
    m = size_multiple(config)
    if config.input_mode == "resize":
        sizes: list[Any] = [int(s) for s in config.input_size]
    else:
        sizes = [spec.ParameterizedSize(min=2 * m, step=m) for _ in axes_ids]
    channels = ["gray"] if config.normalization.channels == 1 else ["red", "green", "blue"]
    norm = config.normalization
    low, high = (norm.low, norm.high) if norm.mode == "percentile" else (0.0, 100.0)
    if high <= 1:
        raise ValueError(f"normalization.high {high} cannot be written as bioimage.io "
                         f"scale_range (its upper percentile must be above 1).")
    return spec.InputTensorDescr(
        id=image_id,
        axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=channels)] + [
            spec.SpaceInputAxis(id=spec.AxisId(a), size=s) for a, s in zip(axes_ids, sizes)],
        test_tensor=spec.FileDescr(source=test_tensor),
        description="the image, raw intensities; each channel is scaled by its percentiles "
        f"{low:g} and {high:g} to [0, 1] and clipped",
        data=spec.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[
            spec.ScaleRangeDescr(kwargs=spec.ScaleRangeKwargs(
                axes=[spec.AxisId(a) for a in axes_ids], min_percentile=low,
                max_percentile=high)),
            spec.ClipDescr(kwargs=spec.ClipKwargs(min=0.0, max=1.0)),
        ])


def _training(spec: Any, data: TrainingData | None):
    if data is None:
        return None
    from bioimageio.spec.dataset import v0_3 as dataset

    cite = [spec.CiteEntry(text=data.citation or data.name, doi=spec.Doi(data.doi))
            ] if data.doi else []
    return dataset.DatasetDescr(name=data.name, description=data.description or data.name,
                                license=data.license, cite=cite)


def readme(text: PackageText, config: ColorRLConfig) -> str:
    """The package's README.md: inputs, outputs, the way from colors to instances, training
    data, validation, citation."""
    from ... import __version__

    ndim, steps = config.ndim, config.steps
    axes = ", ".join(spatial_axes(ndim))
    m = size_multiple(config)
    norm = config.normalization
    scaling = (f"its {norm.low:g} and {norm.high:g} percentiles" if norm.mode == "percentile"
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
        if any(f != 1 for f in config.crop_scale):
            factors = " x ".join(f"{f:g}" for f in config.crop_scale)
            size_rule += (
                f" First resize your image by {factors} ({axes}; linear interpolation): the "
                f"network was trained on images scaled so, and resize the output colors back "
                f"to your image's size (nearest neighbour) before the connected components.")
    channels = ("1 channel (grayscale; average the channels of an RGB image)"
                if norm.channels == 1 else "3 channels (RGB)")
    data = text.training
    trained = "Not recorded when this package was exported."
    if data is not None:
        trained = data.name + (f" ({data.license})" if data.license else "") + "."
        trained += f" {data.description}" if data.description else ""
        trained += f" Cite: {data.citation} (DOI {data.doi})." if data.doi else ""
    connectivity = config.connectivity or ndim
    neighbours = "full" if connectivity == ndim else "faces only"
    depth = config.passes
    taken = f"T = {steps} steps; the T bits form its color"
    if depth < steps:
        taken = (f"T = {steps} steps. This package runs the first {depth} of them, the depth "
                 f"chosen for this model at training (its later steps cut objects apart more "
                 f"than they separated neighbours); those {depth} bits form its color")
    return f"""# {text.title}

A ColorRL model (reinforced coloring, {PAPER}) exported by napari-colorrl {__version__} from
`{text.source}`. Every pixel is an agent that takes one binary action in each of {taken}, and
neighbouring objects end with different colors.

## Input

`image`: (batch, channel, {axes}) float32, raw intensities, {channels}. The package scales each
channel by {scaling} (`scale_range`) and clips to [0, 1] (`clip`), as napari-colorrl does.
Spatial size: {size_rule}

## Outputs

- `colors`: (batch, {axes}) int32, the color of every pixel, 0 = background,
  1 .. {2**depth - 1} = objects.
- `steps`: (batch, step, {axes}) uint8, the {depth} binary step maps a_t; colors = sum_t a_t 2^t.

## From the color map to instances

The instances are the connected components of each color except 0 (connectivity
{connectivity} of {ndim}: {neighbours}), with components smaller than {config.min_size} pixels
removed (the minimum size chosen for this model). In Python:

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

{trained}

## Validation

{text.validation} The test tensors were made from {text.sample}; `bioimageio test THIS.zip`
checks that a runtime reproduces their outputs.

## Citation

{PAPER}. DOI: {PAPER_DOI}
"""
