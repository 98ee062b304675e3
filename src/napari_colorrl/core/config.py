"""The one table of settings: every setting of a model, its default, its valid range and its help.

Each setting is a field of a plain dataclass, declared with :func:`settings.setting` (default,
one line of help, range or choices; a row of the table is a :class:`settings.Setting`). The
same table drives everything that shows or reads a setting:

- :meth:`ColorRLConfig.validate` checks every field against its type and range, so a bad value is
  refused with a message naming the field and the valid range before any work is spent on it;
- ``colorrl train`` builds one flag per setting from it (``--reward.w_split 2.0``), with the help;
- the training dock builds its form fields (range, tooltip) from it;
- a checkpoint stores the whole config as JSON, and loading one goes through the same checks.

Defaults that differ in 3D are in :data:`DEFAULTS_3D`; named trainer settings (recipes),
network presets and the defaults of a new run per machine in ``core/recipes.py``; reading a
config file, upgrading an older one and merging partial dictionaries in ``core/config_files.py``.
``ColorRLConfig.from_dict`` accepts partial dictionaries (missing keys keep their defaults) and
rejects unknown keys with a message naming them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .config_files import (
    CONFIG_VERSION,
    deep_update,
    merge_known,
    read_config_file,
    to_jsonable,
    upgrade,
)
from .settings import Setting, setting, settings_of


@dataclass
class NormalizationConfig:
    """How raw images are scaled to [0, 1] before the network sees them."""

    mode: str = setting("percentile", "scaling to [0, 1]: 'percentile' (robust to hot pixels) "
                        "or 'minmax'", choices=("percentile", "minmax"))
    low: float = setting(1.0, "lower percentile mapped to 0 (mode 'percentile')", low=0, high=100)
    high: float = setting(99.8, "upper percentile mapped to 1 (mode 'percentile')", low=0,
                          high=100)
    channels: int = setting(1, "input channels of the network: 1 (grayscale; RGB input is "
                            "averaged) or 3 (RGB; grayscale input is repeated)", choices=(1, 3))


@dataclass
class NetworkConfig:
    """Shape of the policy/value network (a U-Net with two input modules)."""

    features: tuple[int, ...] = setting(
        (32, 64, 128, 256, 512), "widths of the U-Net levels, top to bottom (the count is the "
        "depth, at least 2)", low=1, high=4096)
    attention: bool = setting(True, "attention gates on the skip connections (the paper's 2D "
                              "network)")
    input_features: int = setting(16, "width of each of the two input modules (image, step "
                                  "channels)", low=1, high=1024)
    aux_heads: bool = setting(
        False, "auxiliary supervised heads on the shared decoder (foreground and boundaries of "
        "the labels), trained with weight train.aux_weight and ignored at inference (beyond "
        "the paper)")
    coordinates: bool = setting(
        False, "position channels: the image branch also sees each pixel's position along each "
        "axis, -1 to 1 over the network's input (CoordConv; beyond the paper)")


@dataclass
class RewardConfig:
    """Weights and geometry of the dense rewards (docs/method.md, "Rewards")."""

    beta: float = setting(0.3, "beta: weight of the background reward against the foreground "
                          "reward", low=0, high=1)
    w_split: float = setting(1.5, "w_s: weight of the split reward (keep it >= w_merge)", low=0,
                             high=100)
    w_merge: float = setting(1.0, "w_m: weight of the merge reward", low=0, high=100)
    radii: tuple[int, ...] = setting(
        (12, 28), "splitting radii in pixels at the network's input size: objects closer than "
        "a radius must get different colors (one ring each)", low=1, high=10000)
    interior_shrink: float = setting(0.8, "alpha: the interior keeps about alpha^2 of an "
                                     "object's area (1 = no erosion)", low=0, high=1,
                                     low_open=True)
    split_form: str = setting("instance", "split term: 'instance' (the mean over the "
                              "neighbours), 'worst' (the most shared neighbour: a collision "
                              "costs the same however many neighbours an object has) or "
                              "'proximity' (pixel counts)",
                              choices=("instance", "worst", "proximity"))
    worst_share: float = setting(1.0, "with split_form 'worst': the part of the split term "
                                 "taken from the most shared neighbour, the rest from the mean "
                                 "over the neighbours (1 = the worst form alone, 0 = the "
                                 "instance form)", low=0, high=1)
    subset: bool = setting(False, "in crowded images reward only a random object and the "
                           "nearest third of the objects per episode")
    subset_min_instances: int = setting(12, "objects an image needs before subset applies",
                                        low=1, high=10**6)


@dataclass
class TrainConfig:
    """Settings of the actor-critic trainer."""

    episodes: int = setting(2000, "training budget in episodes, counted over all processes "
                            "(unless minutes is set)", low=1, high=10**9)
    minutes: float | None = setting(None, "training budget in minutes (replaces episodes)",
                                    low=0, high=10**7, low_open=True)
    batch_size: int = setting(4, "environments (episodes) each process plays batched per "
                              "update; under torchrun the effective batch is this x processes",
                              low=1, high=4096)
    lr: float = setting(1e-4, "Adam learning rate", low=0, high=1, low_open=True)
    lr_final: float = setting(1e-5, "learning rate after lr_switch of the budget", low=0,
                              high=1, low_open=True)
    lr_switch: float = setting(0.7, "share of the budget after which lr_final applies", low=0,
                               high=1)
    amsgrad: bool = setting(True, "AMSGrad variant of Adam (as the authors)")
    entropy_coef: float = setting(0.05, "entropy bonus at the start", low=0, high=10)
    entropy_coef_final: float = setting(0.05, "entropy bonus at the end (linear in between)",
                                        low=0, high=10)
    value_coef: float = setting(0.5, "weight of the value loss", low=0, high=100)
    gae_lambda: float = setting(1.0, "GAE lambda (1: returns are the sums of the remaining "
                                "rewards)", low=0, high=1)
    advantage_norm: bool = setting(False, "normalise advantages over the loss mask")
    aux_weight: float = setting(0.5, "weight of the auxiliary supervised loss (only with "
                                "network.aux_heads)", low=0, high=100)
    object_weighting: bool = setting(
        False, "weigh every ground-truth object (and each image's background) equally in the "
        "loss means and the advantage normalisation, instead of every pixel")
    expected_reward: bool = setting(
        False, "the policy gradient of each step's own reward from its exact expectation over "
        "the other pixels' actions, for both actions of a pixel; the sampled return only for "
        "the later steps (less noise per update)")
    agreement_weight: float = setting(
        0.0, "weight of the code-agreement term (beyond the paper): a supervised loss on the "
        "policy's step probabilities, averaged over each object, that asks every object to "
        "take one color and touching objects different ones (0 = off, the paper)", low=0,
        high=100)
    agreement_form: str = setting(
        "means", "form of the code-agreement term: 'means' (every object one code, touching "
        "objects apart, whichever codes) or 'repair' (a cross-entropy toward the policy's own "
        "codes with the fewest bits changed that part touching objects of one code)",
        choices=("means", "repair"))
    foreground_weight: float = setting(
        0.0, "weight of the supervised foreground term (beyond the paper): a cross-entropy on "
        "the policy's own actions where the rewards fix the best one, the foreground at step 0 "
        "and code 0 on the background, weighted by beta as the step-0 reward (0 = off, the "
        "paper)", low=0, high=100)
    exploration_scale: float = setting(
        0.0, "coherent exploration: neighbouring pixels draw the random numbers of their "
        "actions correlated over about this many pixels at the network's input, so patches "
        "change color together (0 = independent pixels, as the paper)", low=0, high=1000)
    exploration_objects: bool = setting(
        False, "coherent exploration over objects: all pixels of a ground-truth object (and "
        "of each image's background) share part of the random numbers of their actions, so "
        "whole objects change color together (training only; not with exploration_scale)")
    exploration_correlation: float = setting(
        0.75, "coherent exploration: the share of each draw shared with its neighbours or its "
        "object (only with exploration_scale > 0 or exploration_objects)", low=0, high=1)
    exploration_correlation_final: float | None = setting(
        None, "coherent exploration: the shared share at the end of the budget, linear from "
        "exploration_correlation in between (none = constant; 0 ends with the paper's "
        "independent pixels)", low=0, high=1)
    split_weight_start: float | None = setting(
        None, "the split weight w_s at the start of training (beyond the paper), linear to "
        "reward.w_split by split_anneal of the budget, then w_split (none = w_split throughout). "
        "Above w_split training starts over-split: a leaf cut in pieces rejoins pixel by pixel, "
        "two leaves of one color do not part that way", low=0, high=100)
    split_anneal: float = setting(0.5, "share of the budget over which split_weight_start "
                                  "falls to reward.w_split", low=0, high=1, low_open=True)
    grad_clip: float | None = setting(None, "clip the gradient norm to this (none = off)", low=0,
                                      high=10**6, low_open=True)
    warmup_updates: int = setting(0, "first updates on a single sample (the supplement's 3D "
                                  "trick)", low=0, high=10**9)
    augment: bool = setting(True, "random flips, rotations, deformations and intensity changes")
    seed: int = setting(0, "random seed", low=0, high=2**32 - 1)
    device: str = setting("auto", "auto, cpu, cuda, cuda:N or mps")
    threads: int | None = setting(None, "CPU threads for torch (none = torch's default)", low=1,
                                  high=4096)
    val_every: int = setting(50, "validate every this many updates", low=1, high=10**9)
    checkpoint_every: int = setting(50, "write the checkpoint every this many updates", low=1,
                                    high=10**9)
    val_share: float = setting(0.2, "share of the training samples held out (seeded) for the "
                               "validation curve, the best model and the minimum size when no "
                               "validation data is given (a single sample: a slab of this share "
                               "of its longest axis); 0: none", low=0, high=0.5)
    selection: str = setting(
        "val", "what the best checkpoint and the minimum size are chosen on: 'val' (the "
        "validation data when given, else the held-out share) or 'train' (always the held-out "
        "share of the training samples; validation data given is only scored afterwards, as "
        "the benchmarks do)", choices=("val", "train"))
    val_max_images: int = setting(16, "validation images scored at each validation", low=1,
                                  high=10**6)
    tune_min_size: bool = setting(True, "choose the minimum object size on the validation "
                                  "images and save it with the model")
    tune_depth: bool = setting(True, "choose on the validation images how many of the T steps "
                               "the instances are made from (depth), with the minimum size, "
                               "and save it with the model")
    precision: str = setting("float32", "arithmetic of the training rollout: float32 or "
                             "bfloat16 (autocast; validation and inference stay float32)",
                             choices=("float32", "bfloat16"))


@dataclass
class InferenceConfig:
    """How an image larger than one tile is segmented (docs/method.md, "Scale and tiles")."""

    tile_size: tuple[int, ...] = setting(
        (1024, 1024), "tile size per axis at the network's input: a larger image (after "
        "rescaling to the training scale) is segmented in overlapping tiles of this size, so "
        "memory is bounded by the tile", low=16, high=65536)
    tile_overlap: int = setting(
        128, "overlap of neighbouring tiles in pixels at the network's input; each object is "
        "kept by the tile that holds its centre, so give at least the object size (at most "
        "half the tile)", low=0, high=32768)


@dataclass
class ColorRLConfig:
    """Everything a model needs to be trained, saved, loaded and run."""

    ndim: int = setting(2, "2 (images) or 3 (volumes)", choices=(2, 3))
    steps: int = setting(5, "T, the number of binary coloring steps (2^T colors)", low=1,
                         high=16)
    input_size: tuple[int, ...] = setting(
        (176, 176), "spatial size of the network input, one per axis", low=8, high=65536)
    input_mode: str = setting(
        "resize", "'resize': images are resized to input_size and predictions back (the "
        "paper's 2D setting); 'crop': training on random crops, inference on the whole image",
        choices=("resize", "crop"))
    input_scale: tuple[float, ...] = setting(
        (1.0,), "'crop' mode: network pixels per image pixel, one number or one per axis "
        "(Z Y X): training images are resized by it (labels nearest) and so are the images "
        "segmented, e.g. 1 0.5 0.5 for a volume whose xy pixels are half its z step (1 in "
        "'resize' mode)", low=1 / 32, high=4)
    min_size: int = setting(20, "components smaller than this (pixels/voxels of the image) are "
                            "removed", low=0, high=10**12)
    depth: int = setting(0, "coloring steps run at inference: the instances come from the "
                         "colors after the first `depth` of the T steps (0 = all T; chosen at "
                         "training with train.tune_depth)", low=0, high=16)
    connectivity: int | None = setting(None, "neighbourhood of the connected components per "
                                       "color: 1 .. ndim (none = full, ndim)", low=1, high=3)
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        self.validate()

    @property
    def crop_scale(self) -> tuple[float, ...]:
        """Network pixels per image pixel along each axis (``input_scale``; 1 in 'resize'
        mode, where images are resized to ``input_size`` whole)."""
        scale = tuple(float(v) for v in self.input_scale)
        return scale * self.ndim if len(scale) == 1 else scale

    @property
    def passes(self) -> int:
        """Coloring steps run at inference: ``depth`` when set, else all T (``steps``)."""
        return self.depth or self.steps

    def validate(self) -> None:
        """Raise ValueError naming the first setting that cannot work and its valid range."""
        for spec in SETTINGS:
            spec.check(spec.get(self))
        if len(self.input_size) != self.ndim:
            raise ValueError(
                f"input_size {tuple(self.input_size)} has {len(self.input_size)} axes but ndim is "
                f"{self.ndim}; give one size per spatial axis."
            )
        if len(self.input_scale) not in (1, self.ndim):
            raise ValueError(
                f"input_scale {list(self.input_scale)} needs one number or {self.ndim} (one per "
                f"spatial axis).")
        if self.input_mode == "resize" and any(v != 1 for v in self.input_scale):
            raise ValueError(
                f"input_scale {list(self.input_scale)} applies to input_mode 'crop'; a 'resize' "
                f"model resizes every image to input_size. Give input_scale 1 or input_mode "
                f"'crop'.")
        if self.depth > self.steps:
            raise ValueError(
                f"depth ({self.depth}) cannot exceed steps (T = {self.steps}): give 0 (all steps) "
                f"or 1 to {self.steps}.")
        if len(self.network.features) < 2:
            raise ValueError("network.features needs at least two levels, e.g. [16, 32, 64].")
        if self.connectivity is not None and self.connectivity > self.ndim:
            raise ValueError(
                f"connectivity must be between 1 and ndim ({self.ndim}) or null, got "
                f"{self.connectivity}.")
        if self.normalization.low >= self.normalization.high:
            raise ValueError(
                f"normalization.low ({self.normalization.low}) must be below normalization.high "
                f"({self.normalization.high}); e.g. 1 and 99.8.")
        if not self.reward.radii:
            raise ValueError("reward.radii needs at least one radius, e.g. [12, 28].")
        if self.train.exploration_objects and self.train.exploration_scale > 0:
            raise ValueError(
                "train.exploration_objects and train.exploration_scale are two kinds of coherent "
                "exploration; turn one off (exploration_scale 0 or exploration_objects false).")
        tile = tuple(self.inference.tile_size)
        if len(tile) != self.ndim:
            raise ValueError(
                f"inference.tile_size {tile} has {len(tile)} axes but ndim is {self.ndim}; give "
                f"one size per spatial axis.")
        if 2 * self.inference.tile_overlap > min(tile):
            raise ValueError(
                f"inference.tile_overlap ({self.inference.tile_overlap}) must be at most half "
                f"the smallest inference.tile_size ({min(tile)}); lower the overlap or raise "
                f"the tile size.")

    @staticmethod
    def default_for(ndim: int) -> ColorRLConfig:
        """The defaults for 2D (CVPPP-like) or 3D (zebrafish-like) data."""
        return ColorRLConfig.from_dict({"ndim": ndim})

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(dataclasses.asdict(self))

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColorRLConfig:
        """A config from a (partial) nested dictionary; ValueError names a bad or unknown key."""
        if not isinstance(data, dict):
            raise ValueError("A configuration must be a JSON object (a dictionary).")
        data = upgrade(data)
        ndim = data.get("ndim", 2)
        if ndim not in (2, 3) or isinstance(ndim, bool):
            raise ValueError(f"ndim must be 2 or 3, got {ndim!r}.")
        base = deep_update(to_jsonable(dataclasses.asdict(_plain_defaults())),
                            DEFAULTS_3D if ndim == 3 else {})
        merged = merge_known(base, data, path="")
        return cls(
            **{spec.name: spec.parse(merged[spec.name]) for spec in SETTINGS if not spec.section},
            normalization=_build(NormalizationConfig, merged["normalization"], "normalization"),
            network=_build(NetworkConfig, merged["network"], "network"),
            reward=_build(RewardConfig, merged["reward"], "reward"),
            train=_build(TrainConfig, merged["train"], "train"),
            inference=_build(InferenceConfig, merged["inference"], "inference"),
            version=CONFIG_VERSION,
        )

    @classmethod
    def from_json(cls, text: str) -> ColorRLConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"The configuration is not valid JSON: {err}.") from None
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | Path) -> ColorRLConfig:
        return cls.from_dict(read_config_file(path))

    def replace(self, **changes: Any) -> ColorRLConfig:
        """A copy with top-level fields changed (nested ones: pass a new dataclass). A new T
        (``steps``) drops the depth chosen for the old one (back to 0, all steps) unless
        ``depth`` is given too."""
        if "steps" in changes and "depth" not in changes and changes["steps"] != self.steps:
            changes["depth"] = 0
        return dataclasses.replace(self, **changes)


#: Defaults that differ for 3D volumes (the rest is the 2D default of the field).
DEFAULTS_3D: dict[str, Any] = {
    "input_size": [64, 64, 64], "input_mode": "crop", "min_size": 50,
    "network": {"features": [8, 16, 32, 64, 128], "attention": False, "input_features": 8},
    "reward": {"radii": [6, 12], "interior_shrink": 1.0, "split_form": "proximity"},
    "inference": {"tile_size": [160, 160, 160], "tile_overlap": 48},
}

#: Every leaf setting, in the order of the dataclasses.
SETTINGS: list[Setting] = settings_of(ColorRLConfig)
SETTINGS_BY_PATH: dict[str, Setting] = {s.path: s for s in SETTINGS}


def _plain_defaults() -> ColorRLConfig:
    return ColorRLConfig()


def _build(cls: type, data: dict, section: str) -> Any:
    return cls(**{f.name: SETTINGS_BY_PATH[f"{section}.{f.name}"].parse(data[f.name])
                  for f in fields(cls)})
