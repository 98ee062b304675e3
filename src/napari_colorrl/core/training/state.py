"""The state a training run saves and resumes from: counters, best score and random streams.

``TrainingState.save`` writes it into a checkpoint with the weights and the optimizer, and
``TrainingState.resume`` reads the same keys back, so a resumed run continues exactly where the
saved one stopped (same weights, optimizer moments, counters and random streams).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import ColorRLConfig
from ..model.checkpoint import load_checkpoint, load_weights, save_checkpoint
from ..model.checkpoint_checks import check_model_state, check_training_state


@dataclass
class TrainingState:
    """Counters of a run (``episodes`` over all processes), its best validation score and the
    numpy random stream of its environment."""

    update: int = 0
    episodes: int = 0
    elapsed_before: float = 0.0  # seconds of training before this process started
    best_score: float = -1.0
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    #: The scale of the training data (``data.scale.TrainingScale.to_dict()``), saved with the
    #: model so inference can rescale images to it.
    training_scale: dict | None = None

    @classmethod
    def start(cls, seed: int) -> TrainingState:
        """A new run: torch's and numpy's random streams seeded with ``seed``."""
        torch.manual_seed(seed)
        return cls(rng=np.random.default_rng(seed))

    def save(self, path: Path, config: ColorRLConfig, model: torch.nn.Module,
             optimizer: torch.optim.Optimizer, elapsed: float, device: torch.device) -> str:
        """Write a checkpoint of the model, the optimizer and this state; returns its path."""
        save_checkpoint(
            path, config=config, model_state=model.state_dict(),
            optimizer_state=optimizer.state_dict(), step=self.update, episodes=self.episodes,
            extra={
                "elapsed": elapsed,
                "best_score": self.best_score,
                "numpy_rng": json.dumps(self.rng.bit_generator.state, default=str),
                "torch_rng": torch.get_rng_state(),
                **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda"
                   else {}),
                **({"training_scale": self.training_scale} if self.training_scale else {}),
            },
        )
        return str(path)

    def resume(self, path: Path, config: ColorRLConfig, model: torch.nn.Module,
               optimizer: torch.optim.Optimizer, device: torch.device) -> None:
        """Load the weights, optimizer and state saved in ``path`` into this run."""
        ckpt = load_checkpoint(path, map_location=device)
        check_model_state(ckpt.model_state, ckpt.config, path)
        check_training_state(ckpt, path)  # random states and optimizer: sizes before use
        if ckpt.config.steps != config.steps or ckpt.config.ndim != config.ndim:
            raise ValueError(
                f"Cannot resume from {path}: it has T = {ckpt.config.steps}, "
                f"ndim = {ckpt.config.ndim}, but this run asks for T = {config.steps}, "
                f"ndim = {config.ndim}. Use the same settings or start a new run."
            )
        load_weights(model, ckpt, path, optimizer)
        extra = ckpt.extra
        self.update, self.episodes = ckpt.step, ckpt.episodes
        self.elapsed_before = float(extra.get("elapsed", 0.0))
        self.best_score = float(extra.get("best_score", -1.0))
        if "numpy_rng" in extra:
            state = json.loads(extra["numpy_rng"])
            inner = state.get("state", {})
            for key in ("state", "inc"):
                if key in inner:
                    inner[key] = int(inner[key])
            self.rng.bit_generator.state = state
        if "torch_rng" in extra:
            torch.set_rng_state(torch.as_tensor(extra["torch_rng"], dtype=torch.uint8))
        if "cuda_rng" in extra and device.type == "cuda":
            torch.cuda.set_rng_state(torch.as_tensor(extra["cuda_rng"], dtype=torch.uint8), device)
