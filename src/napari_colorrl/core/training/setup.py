"""Turning what the user gave (folders or arrays, a config file, flags) into a training run.

Shared by ``colorrl train`` and the training dock: settings come from the defaults for the data's
dimensionality, then the config file, then explicit overrides; ``steps = "auto"`` picks T from the
labels' neighbour count and says so.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ColorRLConfig
from ..config_files import deep_update, read_config_file, settings_dict
from ..data.checks import check_training_samples
from ..data.files import Sample
from ..data.normalize import split_channels
from ..method.steps import auto_steps, check_steps
from ..recipes import (
    DEFAULT_RECIPE,
    FINETUNE_RECIPE,
    apply_recipe,
    budget_expectation,
    machine_defaults,
)
from ..runtime import check_setup_memory, resolve_device
from .distributed import describe


@dataclass
class TrainingRequest:
    """What the user asked for; everything optional.

    Data: a data-set folder (``data``: train/ and optional val/), image and label folders, or
    ``samples`` / ``val_samples`` given directly (the napari dock). Settings, lowest first: the
    defaults for the data's dimensionality (or the ``resume`` checkpoint's config), the
    ``recipe``, the ``config_file``, then ``settings``: dotted paths of the settings table
    (``{"train.lr": 3e-4, "steps": "auto", "input_size": 128}``; an int ``input_size`` applies
    to every axis; ``"train.episodes"`` alone makes the budget a number of episodes).
    ``init``: fine-tune a model (a checkpoint or a bundled name): its weights and method
    settings (T, network, normalisation, input, rewards) with a fresh training schedule.
    """

    data: Path | None = None
    images: Path | None = None
    labels: Path | None = None
    val_images: Path | None = None
    val_labels: Path | None = None
    samples: list | None = None
    val_samples: list | None = None
    ndim: int | None = None
    config_file: Path | None = None
    recipe: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    resume: Path | None = None
    init: Path | str | None = None  # fine-tune: a checkpoint path or a bundled model name


@dataclass
class TrainingSetup:
    """What training runs on. val: the samples the best checkpoint and the minimum size are
    chosen on (given to ``train``); report: with ``train.selection = 'train'``, the validation
    pairs given, set aside to be scored after training and never used to choose anything."""

    config: ColorRLConfig
    train: list
    val: list
    messages: list[str]
    report: list = field(default_factory=list)

    @property
    def scored(self) -> list:
        """The samples a benchmark reports: the validation pairs given, else ``val``."""
        return self.report or self.val


def load_samples(request: TrainingRequest) -> tuple[list, list]:
    """Training and validation samples from the request's folders or arrays."""
    from ..data.files import list_pairs, load_dataset_dir, load_pairs

    if request.samples is not None:
        return list(request.samples), list(request.val_samples or [])
    if request.data is not None:
        return load_dataset_dir(request.data)
    if request.images is None or request.labels is None:
        raise ValueError(
            "No training data: give --data DIR (with train/images and train/masks) or both "
            "--images and --labels."
        )
    train = load_pairs(list_pairs(request.images, request.labels))
    val: list = []
    if (request.val_images is None) != (request.val_labels is None):
        raise ValueError("Give both --val-images and --val-labels, or neither.")
    if request.val_images is not None:
        val = load_pairs(list_pairs(request.val_images, request.val_labels))
    return train, val


def _data_ndim(samples: list) -> int:
    ndims = {int(s.labels.ndim) for s in samples}
    if len(ndims) != 1:
        raise ValueError(
            f"The training labels mix {sorted(ndims)}-dimensional arrays; train 2D images and 3D "
            f"volumes separately."
        )
    return ndims.pop()


def build_config(request: TrainingRequest, ndim: int) -> tuple[ColorRLConfig, int | str | None]:
    """The run's config and its number of steps as asked (an int, ``"auto"``, or None to keep
    the resumed checkpoint's): defaults for ndim (or the resumed checkpoint's config), then the
    recipe, then the config file, then the settings. A new run starts from the machine's
    defaults (``config.machine_defaults``: network and minutes for the device) and the default
    recipe; a resumed one from its checkpoint, with a recipe only when one is asked for."""
    given = read_config_file(request.config_file) if request.config_file is not None else {}
    file_train = given.get("train") if isinstance(given.get("train"), dict) else {}
    settings = dict(request.settings)
    data: dict[str, Any] = {"ndim": ndim}
    recipe = request.recipe
    if request.resume is not None and request.init is not None:
        raise ValueError("Give --resume (continue a run) or --init (fine-tune a model into a "
                         "new run), not both.")
    if request.resume is not None:
        from ..model.checkpoint import load_checkpoint

        data = load_checkpoint(request.resume).config.to_dict()
    elif request.init is not None:
        data = _init_config(request, ndim, settings, file_train)
        recipe = recipe or FINETUNE_RECIPE
    else:
        device = settings.get("train.device", file_train.get("device", "auto"))
        data = deep_update(data, settings_dict(
            machine_defaults(ndim, resolve_device(device).type)))
        recipe = recipe or DEFAULT_RECIPE
    if recipe is not None:
        data = apply_recipe(data, recipe)
    if "episodes" in file_train and "minutes" not in file_train:
        given = deep_update(given, {"train": {"minutes": None}})  # episodes replace minutes
    data = deep_update(data, given)
    keep_steps = request.resume is not None or request.init is not None
    steps = settings.pop("steps", given.get("steps", None if keep_steps else "auto"))
    if isinstance(settings.get("input_size"), int):
        settings["input_size"] = [settings["input_size"]] * ndim
    if "train.episodes" in settings and "train.minutes" not in settings:
        settings["train.minutes"] = None  # an episode budget replaces a time budget
    if request.resume is not None and "train.device" not in settings:
        settings["train.device"] = "auto"  # the file's device was another machine's choice
    data = deep_update(data, settings_dict(settings))
    if isinstance(data.get("steps"), str):  # "auto" in a config file
        del data["steps"]
    if isinstance(steps, str) and steps.lower() != "auto":
        raise ValueError(f"steps must be a whole number from 1 to 16 or 'auto', got {steps!r}.")
    return ColorRLConfig.from_dict(data), steps


#: Settings a fine-tune takes from its model and cannot change: the weights were made for them.
_FIXED_BY_WEIGHTS = ("steps", "network.", "normalization.channels")


def _init_config(request: TrainingRequest, ndim: int, settings: dict[str, Any],
                 file_train: dict[str, Any]) -> dict[str, Any]:
    """The config dictionary a fine-tune starts from: the model's, with a fresh ``train``
    section (the machine's budget); ValueError when it cannot work on these data."""
    from ..model.bioimage import load_model_file
    from ..model.bundled import resolve_model_path

    path = resolve_model_path(request.init)
    model = load_model_file(path).config
    if model.ndim != ndim:
        raise ValueError(
            f"The model to start from ({request.init}) is a {model.ndim}D model but the labels "
            f"are {ndim}D; start from a {ndim}D model, or train a new one (without --init).")
    if str(settings.get("steps", "")).lower() == "auto":
        del settings["steps"]  # a fine-tune keeps the model's T
    fixed = {"steps": model.steps, "normalization.channels": model.normalization.channels,
             **{f"network.{k}": v for k, v in dataclasses.asdict(model.network).items()}}
    for key, value in settings.items():
        if key.startswith(_FIXED_BY_WEIGHTS) and key in fixed and not _same(value, fixed[key]):
            raise ValueError(
                f"{key} {value!r} cannot change when fine-tuning: the weights of "
                f"{request.init} were trained with {key} {fixed[key]!r}. Leave it out, or train "
                f"a new model (without --init).")
    data = model.to_dict()
    data.pop("train", None)
    device = settings.get("train.device", file_train.get("device", "auto"))
    minutes = machine_defaults(ndim, resolve_device(device).type)["train.minutes"]
    return deep_update(data, {"train": {"minutes": minutes}})


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def held_out_count(samples: int, share: float) -> int:
    """How many of ``samples`` training samples ``hold_out`` keeps for validation."""
    return min(samples - 1, max(1, round(share * samples))) if share > 0 else 0


#: The thinnest slab ``slab_split`` holds out of a single sample, in pixels.
MIN_SLAB = 8


def crop_extent(config: ColorRLConfig) -> tuple[int, ...] | None:
    """The image pixels per axis that one training crop covers (the input size over
    ``input_scale``: ``slab_split``'s ``keep``); None for a model that resizes its inputs."""
    if config.input_mode != "crop":
        return None
    return tuple(math.ceil(n / f) for n, f in zip(config.input_size, config.crop_scale))


def slab_split(shape, share: float, seed: int, keep=None) -> tuple[int, slice, slice] | str:
    """How one sample of spatial ``shape`` is cut for validation when it is the only one:
    (axis, training slice, held-out slice) along its longest axis, ``share`` of that axis at the
    end or the start (chosen with ``seed``); or why it cannot be cut.

    keep: the crop of "crop" training, per axis: along an axis at least that long, the training
    part must keep it, so its crops stay whole. None: the model resizes every image to its input
    ("resize" training and validation), which would squeeze a thin slab out of all proportion,
    so a single sample is not cut."""
    if share <= 0:
        return "train.val_share is 0"
    if keep is None:
        return ("there is only one training sample and the model resizes its inputs "
                "(input_mode 'resize'), which would squeeze a slab of it out of shape; add a "
                "validation pair or more samples")
    shape = tuple(int(n) for n in shape)
    axis = int(np.argmax(shape))
    size = shape[axis]
    held = max(MIN_SLAB, round(share * size))
    crop = int(keep[axis]) if len(keep) > axis else 0
    need = crop if size >= crop else MIN_SLAB
    if size - held < max(need, MIN_SLAB):
        return (f"there is only one training sample, {size} px along its longest axis: too "
                f"short to hold out {held} px and keep {max(need, MIN_SLAB)} for training; add "
                f"a validation pair or more samples")
    cut = size - held if np.random.default_rng(seed).random() < 0.5 else held
    first, second = slice(0, cut), slice(cut, size)
    return (axis, first, second) if cut == size - held else (axis, second, first)


def hold_out(samples: list, share: float, seed: int,
             reason: str = "No validation data given", keep=()) -> tuple[list, list, str]:
    """(training, validation, what was done): ``share`` of ``samples`` (at least one, and never
    all) drawn with ``seed`` for validation, when there are two or more; a single sample is cut
    in two (``slab_split``, ``keep`` as there): a slab of ``share`` of its longest axis is held
    out."""
    if len(samples) == 1:
        return _hold_out_slab(samples[0], share, seed, reason, keep)
    count = held_out_count(len(samples), share)
    if count <= 0:
        return samples, [], ("No validation data: no validation curve, best model or chosen "
                             "minimum size (train.val_share is 0).")
    picked = set(np.random.default_rng(seed).permutation(len(samples))[:count].tolist())
    val = [s for i, s in enumerate(samples) if i in picked]
    train = [s for i, s in enumerate(samples) if i not in picked]
    return train, val, (
        f"{reason}: {count} of the {len(samples)} training samples "
        f"({', '.join(s.name for s in val[:3])}{', ...' if count > 3 else ''}) are held out "
        f"(train.val_share {share:g}, seed {seed}) for the validation curve, the best model and "
        f"the minimum size.")


def _hold_out_slab(sample, share: float, seed: int, reason: str, keep) -> tuple[list, list, str]:
    labels = np.asarray(sample.labels)
    split = slab_split(labels.shape, share, seed, keep)
    if isinstance(split, str):
        return [sample], [], (f"No validation data: no validation curve, best model or chosen "
                              f"minimum size ({split}).")
    axis, train_part, val_part = split
    image = np.asarray(sample.image)  # channels last (check_training_samples)

    def piece(where, tag):
        index = (slice(None),) * axis + (where,)
        return Sample(name=f"{sample.name} [{tag} {where.start}:{where.stop} of axis {axis}]",
                      image=image[index], labels=labels[index])

    held = val_part.stop - val_part.start
    return [piece(train_part, "train")], [piece(val_part, "held out")], (
        f"{reason}: one training sample, so a slab of it is held out: {held} of its "
        f"{labels.shape[axis]} px along axis {axis} ({val_part.start}:{val_part.stop}; "
        f"train.val_share {share:g}, seed {seed}) for the validation curve, the best model and "
        f"the minimum size; training uses the rest.")


def prepare_training(request: TrainingRequest) -> TrainingSetup:
    """Load data, build the config, resolve T; raise ValueError with a clear message."""
    train, val = load_samples(request)
    if not train:
        raise ValueError("No training samples were found; check the folders or layers given.")
    ndim = request.ndim or _data_ndim(train)
    if ndim != _data_ndim(train):
        raise ValueError(f"--ndim {ndim} does not match the {_data_ndim(train)}D labels given.")
    config, steps = build_config(request, ndim)
    if config.ndim != ndim:
        raise ValueError(
            f"The checkpoint to resume is a {config.ndim}D model but the labels are {ndim}D; "
            f"resume with {ndim}D data or start a new run."
        )
    if request.init is not None:
        messages_init = [f"Fine-tuning {request.init}: its weights, T = {config.steps}, network "
                         f"{list(config.network.features)}, input "
                         f"{'x'.join(map(str, config.input_size))} ({config.input_mode}); a "
                         f"fresh training schedule."]
    else:
        messages_init = []
    train = check_training_samples(train, ndim)
    val = check_training_samples(val, ndim, what="validation")
    messages = messages_init
    report: list = []
    keep = crop_extent(config)
    if val and config.train.selection == "train":
        report = val
        train, val, note = hold_out(
            train, config.train.val_share, config.train.seed,
            reason=f"Chosen on the training data (train.selection 'train'; the {len(report)} "
                   f"validation samples are only scored afterwards)", keep=keep)
        messages.append(note)
    elif not val:
        train, val, note = hold_out(train, config.train.val_share, config.train.seed, keep=keep)
        messages.append(note)
    channels = max(split_channels(s.image, ndim)[0].shape[0] for s in train)
    if channels >= 3 and config.normalization.channels != 3:
        if request.resume is None and request.init is None:  # (weights fix the channels)
            config = config.replace(
                normalization=dataclasses.replace(config.normalization, channels=3)
            )
            messages.append("RGB images found: the network takes 3 input channels.")
    # Before the automatic T, the reward targets or any resizing allocate anything.
    check_setup_memory(config, [s.labels.shape for s in (*train, *val)], channels,
                       resolve_device(config.train.device))
    if isinstance(steps, str) and steps.lower() == "auto":
        t, n_b = auto_steps([s.labels for s in train], config)
        config = config.replace(steps=t)
        messages.append(
            f"T = {t} coloring steps (auto): the most neighbours of any instance within "
            f"{max(config.reward.radii)} px is {n_b}, and 2^(T-1)+1 = {2 ** (t - 1) + 1} "
            f">= {n_b}."
        )
    else:
        if steps is not None:
            config = config.replace(steps=steps)
        _, n_b = auto_steps([s.labels for s in train], config)
        check_steps(config.steps, n_b, max(config.reward.radii))  # warns
    budget = (
        f"{config.train.minutes:g} minutes" if config.train.minutes is not None
        else f"{config.train.episodes} episodes"
    )
    messages.append(
        f"{len(train)} training and {len(val)} validation samples, {ndim}D, input "
        f"{'x'.join(map(str, config.input_size))} ({config.input_mode}), T = {config.steps}, "
        f"batch {config.train.batch_size} (environments per process), lr {config.train.lr:g}, "
        f"budget {budget}."
    )
    messages.append(budget_expectation(ndim, config.train.minutes,
                                       resolve_device(config.train.device).type))
    parallel = describe(config.train.batch_size, config.train.lr, config.train.device)
    if parallel is not None:
        messages.append(parallel)
    return TrainingSetup(config=config, train=train, val=val, messages=messages,
                         report=report)
