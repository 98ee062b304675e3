"""One configuration object shared by the GUI, the CLI and the checkpoint.

Every setting of the method lives here, in plain dataclasses that serialise to JSON, so a saved
model always knows its number of steps T, its splitting radii, its normalisation and its network
shape. ``ColorRLConfig.from_dict`` accepts partial dictionaries (missing keys keep their defaults)
and rejects unknown keys with a message naming them, so a typo in a ``--config`` file is caught.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

#: Arithmetic of the training rollout's network passes (TrainConfig.precision).
PRECISIONS = ("float32", "bfloat16")

#: Bumped when the meaning of a saved config or of the saved weights changes incompatibly.
CONFIG_VERSION = 1


@dataclass
class NormalizationConfig:
    """How raw images are scaled to [0, 1] before the network sees them.

    mode: "percentile" (robust to hot pixels; default) or "minmax".
    low/high: percentiles used when mode == "percentile".
    channels: 1 for grayscale, 3 for RGB. Grayscale models accept RGB input by averaging
    channels; RGB models accept grayscale input by repeating it.
    """

    mode: str = "percentile"
    low: float = 1.0
    high: float = 99.8
    channels: int = 1


@dataclass
class NetworkConfig:
    """Shape of the policy/value network.

    features: widths of the U-Net levels, from top to bottom (its length is the depth).
    attention: attention gates on the skip connections (the paper's 2D network).
    input_features: width of each of the two input modules (image, step channels).
    """

    features: tuple[int, ...] = (32, 64, 128, 256, 512)
    attention: bool = True
    input_features: int = 16

    @staticmethod
    def default_for(ndim: int) -> NetworkConfig:
        if ndim == 3:
            return NetworkConfig(features=(8, 16, 32, 64, 128), attention=False, input_features=8)
        return NetworkConfig()


@dataclass
class RewardConfig:
    """Weights and geometry of the dense rewards (see COLORRL.md, "Rewards").

    beta: foreground/background weight. w_split / w_merge: weights of the split and merge terms
    (the supplement's ablation says w_split should not be below w_merge). radii: splitting radii in
    pixels at the network's input size, one ring each. interior_shrink: alpha, the interior keeps
    about alpha^2 of an object's area (alpha >= 1: no erosion). split_form: "instance" (each
    neighbour counts equally, the CVPPP form) or "proximity" (pixel counts).
    subset: reward only a random instance and the nearest third of instances per episode when an
    image holds more than subset_min_instances objects.
    """

    beta: float = 0.3
    w_split: float = 1.5
    w_merge: float = 1.0
    radii: tuple[int, ...] = (12, 28)
    interior_shrink: float = 0.8
    split_form: str = "instance"
    subset: bool = False
    subset_min_instances: int = 12


#: Named sets of trainer settings. "paper": the authors' A3C settings (lr 1e-4 then 1e-5,
#: entropy 0.05, no clipping). "fast": what learns most per CPU-minute in our measurements
#: (docs/benchmarks.md): a higher learning rate held by gradient clipping, advantages normalised
#: over the masked pixels, GAE lambda 0.95 and an entropy bonus that decays as the policy
#: settles. The method (rewards, network, coloring) is the same in both.
TRAINING_RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"lr": 1e-4, "lr_final": 1e-5, "lr_switch": 0.7, "entropy_coef": 0.05,
              "entropy_coef_final": 0.05, "gae_lambda": 1.0, "advantage_norm": False,
              "grad_clip": None},
    "fast": {"lr": 6e-4, "lr_final": 1e-4, "lr_switch": 0.8, "entropy_coef": 0.03,
             "entropy_coef_final": 0.005, "gae_lambda": 0.95, "advantage_norm": True,
             "grad_clip": 1.0},
}


@dataclass
class TrainConfig:
    """Settings of the actor-critic trainer.

    batch_size: the number of environments (episodes) each process plays at once, batched on its
    device, per update; under torchrun the effective batch is batch_size x the number of
    processes. episodes: the budget, counted over all processes.
    tune_min_size: at each validation, choose the minimum object size on the validation images
    (COLORRL.md: "a minimum size chosen on the validation set") and save it with the model.
    precision: "float32" (default: exact, every device) or "bfloat16": the training rollout's
    network passes run under ``torch.autocast`` in bfloat16 (weights, optimizer, rewards, returns
    and losses stay float32). On a CPU with native bfloat16 (AVX512-BF16 or AMX) or a recent GPU
    this makes a 2D update 1.18x to 1.27x faster (3D: 0.85x, slower; docs/benchmarks.md); on older
    CPUs it is emulated and slower. Validation and inference always run in float32.
    weight_average: decay of an exponential moving average of the weights (0 = off; 0.995
    averages over about the last 200 updates). The policy gradient is noisy, so the weights of
    any one update segment a little worse or better than their neighbours; the average smooths
    that out. When on, validation scores both the training weights and their average, the best
    checkpoint keeps whichever scored higher, and the periodic checkpoint holds the average as
    its model (the training weights ride along so a resumed run continues exactly).
    """

    episodes: int = 2000
    minutes: float | None = None
    batch_size: int = 4
    lr: float = 1e-4
    lr_final: float = 1e-5
    lr_switch: float = 0.7
    amsgrad: bool = True
    entropy_coef: float = 0.05
    entropy_coef_final: float = 0.05
    value_coef: float = 0.5
    gae_lambda: float = 1.0
    advantage_norm: bool = False
    grad_clip: float | None = None
    update_epochs: int = 1
    warmup_updates: int = 0
    augment: bool = True
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    val_every: int = 50
    checkpoint_every: int = 50
    val_max_images: int = 16
    tune_min_size: bool = True
    precision: str = "float32"
    weight_average: float = 0.0


@dataclass
class ColorRLConfig:
    """Everything a model needs to be trained, saved, loaded and run.

    ndim: 2 (images) or 3 (volumes). steps: T, the number of binary coloring steps.
    input_size: the spatial size the network is trained at. input_mode: "resize" (every image is
    resized to input_size, predictions are resized back; the paper's CVPPP setting) or "crop"
    (training on random crops of input_size, inference on the whole image at its own size).
    min_size: components smaller than this (pixels/voxels of the output image) are removed.
    connectivity: neighbourhood of the connected components per color (None = full).
    """

    ndim: int = 2
    steps: int = 5
    input_size: tuple[int, ...] = (176, 176)
    input_mode: str = "resize"
    min_size: int = 20
    connectivity: int | None = None
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first setting that cannot work."""
        if self.ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {self.ndim}.")
        if not 1 <= int(self.steps) <= 16:
            raise ValueError(f"steps (T) must be between 1 and 16, got {self.steps}.")
        if len(self.input_size) != self.ndim:
            raise ValueError(
                f"input_size {tuple(self.input_size)} has {len(self.input_size)} axes but ndim is "
                f"{self.ndim}; give one size per spatial axis."
            )
        if any(int(s) < 8 for s in self.input_size):
            raise ValueError(f"input_size {tuple(self.input_size)} is too small; use at least 8.")
        if self.input_mode not in ("resize", "crop"):
            raise ValueError(
                f"input_mode must be 'resize' (images are resized to input_size, as the paper does "
                f"for CVPPP) or 'crop' (training on random crops, inference on the whole image), "
                f"got {self.input_mode!r}."
            )
        if self.normalization.mode not in ("percentile", "minmax"):
            raise ValueError(
                f"normalization.mode must be 'percentile' or 'minmax', "
                f"got {self.normalization.mode!r}."
            )
        if self.normalization.channels not in (1, 3):
            raise ValueError(
                f"normalization.channels must be 1 (grayscale) or 3 (RGB), "
                f"got {self.normalization.channels}."
            )
        if self.reward.split_form not in ("instance", "proximity"):
            raise ValueError(
                f"reward.split_form must be 'instance' or 'proximity', "
                f"got {self.reward.split_form!r}."
            )
        if len(self.network.features) < 2:
            raise ValueError("network.features needs at least two levels.")
        if self.train.precision not in PRECISIONS:
            raise ValueError(
                f"train.precision must be one of {', '.join(PRECISIONS)}, "
                f"got {self.train.precision!r}."
            )
        if not 0.0 <= float(self.train.weight_average) < 1.0:
            raise ValueError(
                f"train.weight_average is the decay of the weights' moving average and must be "
                f"in [0, 1) (0 = off, 0.995 = about the last 200 updates), "
                f"got {self.train.weight_average}."
            )
        if self.min_size < 0:
            raise ValueError(f"min_size must be >= 0, got {self.min_size}.")

    @staticmethod
    def default_for(ndim: int) -> ColorRLConfig:
        """Paper defaults for 2D (CVPPP-like) or 3D (zebrafish-like) data."""
        if ndim == 3:
            return ColorRLConfig(
                ndim=3,
                steps=5,
                input_size=(64, 64, 64),
                input_mode="crop",
                min_size=50,
                network=NetworkConfig.default_for(3),
                reward=RewardConfig(radii=(6, 12), interior_shrink=1.0, split_form="proximity"),
            )
        return ColorRLConfig()

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(dataclasses.asdict(self))

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColorRLConfig:
        version = data.get("version", CONFIG_VERSION)
        if version > CONFIG_VERSION:
            raise ValueError(
                f"This configuration was written by a newer napari-colorrl (config version "
                f"{version}, this one reads up to {CONFIG_VERSION}); upgrade napari-colorrl."
            )
        ndim = int(data.get("ndim", 2))
        base = cls.default_for(ndim).to_dict()
        merged = _merge(base, data, path="")
        return cls(
            ndim=int(merged["ndim"]),
            steps=int(merged["steps"]),
            input_size=tuple(int(s) for s in merged["input_size"]),
            input_mode=str(merged["input_mode"]),
            min_size=int(merged["min_size"]),
            connectivity=merged["connectivity"],
            normalization=_build(NormalizationConfig, merged["normalization"]),
            network=_build(NetworkConfig, merged["network"]),
            reward=_build(RewardConfig, merged["reward"]),
            train=_build(TrainConfig, merged["train"]),
            version=CONFIG_VERSION,
        )

    @classmethod
    def from_json(cls, text: str) -> ColorRLConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_file(cls, path: str | Path) -> ColorRLConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"Config file {path} does not exist.") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"Config file {path} is not valid JSON: {err}.") from None
        if not isinstance(data, dict):
            raise ValueError(f"Config file {path} must hold a JSON object.")
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> ColorRLConfig:
        """A copy with top-level fields changed (nested ones: pass a new dataclass)."""
        return dataclasses.replace(self, **changes)


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    return value


def _merge(base: dict, update: dict, path: str) -> dict:
    out = dict(base)
    for key, value in update.items():
        where = f"{path}{key}"
        if key not in base:
            known = ", ".join(sorted(base))
            raise ValueError(f"Unknown config setting {where!r}; known settings here: {known}.")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ValueError(f"Config setting {where!r} must be an object.")
            out[key] = _merge(base[key], value, path=f"{where}.")
        else:
            out[key] = value
    return out


def _build(cls: type, data: dict) -> Any:
    kwargs = {}
    for f in fields(cls):
        value = data[f.name]
        if isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)
