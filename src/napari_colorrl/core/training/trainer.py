"""Advantage actor-critic training of the coloring agent, as a generator of progress reports.

``train(...)`` yields one ``TrainingReport`` per update, so a caller (CLI progress bar, napari
thread worker, test) drives it and stops it between two updates; closing the generator writes a
final checkpoint. Every pixel is an agent; returns run over the T steps with gamma = 1 and
generalized advantage estimation (lambda a config value).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from napari_colorrl.core.config import ColorRLConfig
from napari_colorrl.core.data.checks import check_training_samples, ensure_writable
from napari_colorrl.core.model.checkpoint import load_checkpoint, load_weights, save_checkpoint
from napari_colorrl.core.model.fast_layers import use_fast_layout
from napari_colorrl.core.model.networks import build_network
from napari_colorrl.core.runtime import check_training_memory, release_memory
from napari_colorrl.core.training import distributed
from napari_colorrl.core.training.environment import Environment
from napari_colorrl.core.training.rollout import RolloutStats, run_update
from napari_colorrl.core.training.selection import selection_score, validate


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the message says what to do."""


@dataclass(frozen=True)
class TrainingReport:
    """What one update did. Reward parts are means per pixel and step over the loss mask."""

    update: int
    episodes: int
    elapsed: float
    progress: float
    eta_seconds: float | None
    reward: float
    reward_foreground: float
    reward_background: float
    reward_split: float
    reward_merge: float
    loss: float
    policy_loss: float
    value_loss: float
    entropy: float
    lr: float
    seconds_per_update: float
    reward_share: float
    network_share: float
    environment_share: float
    validation: dict[str, float] | None = None
    checkpoint: str | None = None
    message: str | None = None
    final: bool = False
    extra: dict = field(default_factory=dict)


def _learning_rate(config: ColorRLConfig, progress: float) -> float:
    """The paper's two phases: lr, then lr_final after ``lr_switch`` of the budget."""
    train = config.train
    return train.lr if progress < train.lr_switch else train.lr_final


def _entropy_coef(config: ColorRLConfig, progress: float) -> float:
    train = config.train
    return train.entropy_coef + (train.entropy_coef_final - train.entropy_coef) * progress


def _rng_state(rng: np.random.Generator) -> str:
    return json.dumps(rng.bit_generator.state, default=str)


def _set_rng_state(rng: np.random.Generator, text: str) -> None:
    state = json.loads(text)
    inner = state.get("state", {})
    for key in ("state", "inc"):
        if key in inner:
            inner[key] = int(inner[key])
    rng.bit_generator.state = state


def train(
    config: ColorRLConfig,
    train_samples: Sequence,
    val_samples: Sequence = (),
    *,
    out: str | Path,
    resume: str | Path | None = None,
) -> Generator[TrainingReport, None, None]:
    """Train a ColorRL agent; yields a ``TrainingReport`` after every update.

    config: the full configuration (``config.steps`` must already be resolved, see
        ``environment.auto_steps``). train_samples / val_samples: objects with ``name``,
        ``image`` and ``labels`` (``core.io.Sample``). out: checkpoint path, written every
        ``config.train.checkpoint_every`` updates, at the end and when the generator is closed.
        When validation samples are given, the best model by validation SBD + AP50 is also kept
        as ``<out>.best.pt``, and (``train.tune_min_size``) the minimum object size is chosen on
        the validation images and saved in the checkpoints' config. resume: continue from a
        checkpoint (weights, optimizer, counters, random state).

    Under torchrun (see ``core.distributed``) every process runs this generator as one worker:
    its own episodes from its own shard of ``train_samples``, gradients averaged by DDP, report
    scalars averaged over the workers; only rank 0 validates and writes checkpoints. Episode
    counts and the ``episodes`` budget are totals over all workers.
    """
    tcfg = config.train
    out = Path(out)
    ctx, device = distributed.setup(tcfg.device)
    # Refuse what cannot work before any time is spent: bad labels, no room, no write access.
    train_samples = check_training_samples(train_samples, config.ndim)
    val_samples = check_training_samples(val_samples, config.ndim, what="validation")
    check_training_memory(config, device)
    ensure_writable(out.parent, what="checkpoint")
    if tcfg.threads:
        torch.set_num_threads(int(tcfg.threads))
    torch.manual_seed(tcfg.seed)
    rng = np.random.default_rng(tcfg.seed)

    model = use_fast_layout(build_network(config).to(device), device)
    optimizer = torch.optim.Adam(model.parameters(), lr=tcfg.lr, amsgrad=tcfg.amsgrad)
    # The moving average of the weights (train.weight_average), torch's own EMA helper.
    average = None if not tcfg.weight_average else AveragedModel(
        model, multi_avg_fn=get_ema_multi_avg_fn(float(tcfg.weight_average)))
    update, episodes, elapsed_before, best_score = 0, 0, 0.0, -1.0
    if resume is not None:
        ckpt = load_checkpoint(resume, map_location=device)
        if ckpt.config.steps != config.steps or ckpt.config.ndim != config.ndim:
            raise ValueError(
                f"Cannot resume from {resume}: it has T = {ckpt.config.steps}, "
                f"ndim = {ckpt.config.ndim}, but this run asks for T = {config.steps}, "
                f"ndim = {config.ndim}. Use the same settings or start a new run."
            )
        extra = ckpt.extra or {}
        training_weights = extra.get("training_weights")
        if training_weights is not None:
            # The file's model is the weights' average; the trainer continues from the raw ones.
            load_weights(model, dataclasses.replace(ckpt, model_state=training_weights), resume,
                         optimizer)
        else:
            load_weights(model, ckpt, resume, optimizer)
        if average is not None:
            if training_weights is not None:
                load_weights(average.module, ckpt, resume)
                average.n_averaged.fill_(max(1, ckpt.step))
            # else: a checkpoint without an average starts one from its weights.
        update, episodes = ckpt.step, ckpt.episodes
        elapsed_before = float(extra.get("elapsed", 0.0))
        best_score = float(extra.get("best_score", extra.get("best_sbd", -1.0)))
        if "numpy_rng" in extra:
            _set_rng_state(rng, extra["numpy_rng"])
        if "torch_rng" in extra:
            torch.set_rng_state(torch.as_tensor(extra["torch_rng"], dtype=torch.uint8))
        if "cuda_rng" in extra and device.type == "cuda":
            torch.cuda.set_rng_state(torch.as_tensor(extra["cuda_rng"], dtype=torch.uint8), device)
    if ctx.enabled:
        # Saved random states are rank 0's: every worker draws fresh streams of its own instead.
        rng = distributed.worker_rng(tcfg.seed, ctx, update)
    worker = distributed.wrap(model, ctx, device)  # the model itself in a plain run

    env = Environment(distributed.shard(train_samples, ctx), config, device, rng)
    effective_batch = tcfg.batch_size * ctx.world_size
    # Counted in episodes, so a run resumed with another number of processes ends on budget.
    total_updates = max(1, update + math.ceil((tcfg.episodes - episodes) / effective_batch))
    budget = None if tcfg.minutes is None else float(tcfg.minutes) * 60.0
    start = time.perf_counter()
    last_checkpoint: str | None = None if resume is None else str(resume)

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - start

    def shared_elapsed() -> float:
        # Workers take the lr phase and the stop from the same clock (rank 0's), or they part.
        return distributed.broadcast_float(elapsed(), ctx) if budget else elapsed()

    def progress() -> float:
        by_time = shared_elapsed() / budget if budget else 0.0
        by_updates = update / total_updates if tcfg.minutes is None else 0.0
        return min(1.0, max(by_time, by_updates))

    def save(path: Path, weights: str = "average") -> str:
        """Write a checkpoint. With weight averaging on, its model is the average (or the
        training weights, ``weights="training"``, when those scored best) and the training
        weights ride along in extra for resuming."""
        if not ctx.is_main:
            return str(path)
        state = training = model.state_dict()
        more = {}
        if average is not None:
            more = {"training_weights": training, "weights": weights}
            if weights == "average":
                state = average.module.state_dict()
        save_checkpoint(
            path,
            config=config,
            model_state=state,
            optimizer_state=optimizer.state_dict(),
            step=update,
            episodes=episodes,
            extra={
                **more,
                "elapsed": elapsed(),
                "best_score": best_score,
                "numpy_rng": _rng_state(rng),
                "torch_rng": torch.get_rng_state(),
                **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda"
                   else {}),
            },
        )
        return str(path)

    def finished() -> bool:
        if budget is not None:
            return shared_elapsed() >= budget
        return update >= total_updates

    try:
        # One decision per update: the loop ends exactly after the report marked final.
        done = finished()
        while not done:
            frac = progress()
            lr = _learning_rate(config, frac)
            for group in optimizer.param_groups:
                group["lr"] = lr
            warm = update < tcfg.warmup_updates
            episode = env.reset(tcfg.batch_size, indices=[0] * tcfg.batch_size if warm else None)
            stats: RolloutStats = run_update(
                worker, optimizer, episode, config, entropy_coef=_entropy_coef(config, frac)
            )
            stats = distributed.mean_over_ranks(stats, ctx)
            if not (math.isfinite(stats.loss) and _weights_finite(model)):
                where = last_checkpoint or "none was written yet"
                what = (f"The loss became {stats.loss}" if not math.isfinite(stats.loss)
                        else "The weights became NaN or infinite")
                raise TrainingError(
                    f"{what} at update {update + 1}; training stopped and "
                    f"the last good checkpoint ({where}) is kept. Lower the learning rate "
                    f"(now {lr:g}) or enable gradient clipping (grad_clip)."
                )
            if average is not None:
                average.update_parameters(model)
            update += 1
            episodes += effective_batch
            validation, checkpoint = None, None
            done = finished()
            # The last update is always validated: with a time budget the final weights (after
            # the low-learning-rate phase) would otherwise never compete for the best model.
            if val_samples and ctx.is_main and (update % max(1, tcfg.val_every) == 0 or done):
                validation, weights = _validate_both(model, average, config,
                                                     val_samples[: tcfg.val_max_images], device)
                if "min_size" in validation:
                    # Post-processing only: the checkpoints written from now on carry it.
                    config = config.replace(min_size=int(validation["min_size"]))
                if selection_score(validation) > best_score:
                    best_score = selection_score(validation)
                    save(out.with_suffix(".best.pt"), weights)
            if update % max(1, tcfg.checkpoint_every) == 0:
                checkpoint = last_checkpoint = save(out)
            if done:
                checkpoint = last_checkpoint = save(out)
            yield _report(stats, update, episodes, elapsed(), progress(), lr, validation,
                          checkpoint, done)
    except GeneratorExit:
        # The caller stopped training: keep what was learnt. (A crash raises past this and
        # leaves the last periodic checkpoint untouched.)
        if _weights_finite(model):
            save(out)
        raise
    finally:
        worker = None  # DDP holds the process group: let go of it before leaving the group
        distributed.teardown(ctx)
        # Drop the network, its gradients and Adam's moments before giving the memory back.
        model = worker = optimizer = env = None
        release_memory(device)


def _validate_both(
    model: torch.nn.Module, average: AveragedModel | None, config: ColorRLConfig,
    samples: Sequence, device: torch.device,
) -> tuple[dict[str, float], str]:
    """Validation scores of the weights that score higher, and which ones they are ("training"
    or "average"). With weight averaging the other's scores come along as ``training_*`` /
    ``average_*`` entries, so a run's log compares the two on the same images."""
    choose = config.train.tune_min_size
    scores = validate(model, config, samples, device, choose_min_size=choose)
    if average is None:
        return scores, "training"
    averaged = validate(average.module, config, samples, device, choose_min_size=choose)
    both = {**{f"training_{k}": v for k, v in scores.items()},
            **{f"average_{k}": v for k, v in averaged.items()}}
    if selection_score(averaged) >= selection_score(scores):
        return {**averaged, **both}, "average"
    return {**scores, **both}, "training"


def _weights_finite(model: torch.nn.Module) -> bool:
    """True when no weight is NaN or infinite (one max per tensor, one device sync)."""
    with torch.no_grad():
        peaks = [p.detach().abs().amax().float() for p in model.parameters() if p.numel()]
        return not peaks or bool(torch.isfinite(torch.stack(peaks)).all())


def _report(
    stats: RolloutStats,
    update: int,
    episodes: int,
    elapsed: float,
    progress: float,
    lr: float,
    validation: dict | None,
    checkpoint: str | None,
    final: bool,
) -> TrainingReport:
    total = max(stats.seconds, 1e-9)
    eta = elapsed * (1.0 - progress) / progress if progress > 0 else None
    return TrainingReport(
        update=update,
        episodes=episodes,
        elapsed=elapsed,
        progress=progress,
        eta_seconds=eta,
        reward=stats.reward,
        reward_foreground=stats.reward_parts["foreground"],
        reward_background=stats.reward_parts["background"],
        reward_split=stats.reward_parts["split"],
        reward_merge=stats.reward_parts["merge"],
        loss=stats.loss,
        policy_loss=stats.policy_loss,
        value_loss=stats.value_loss,
        entropy=stats.entropy,
        lr=lr,
        seconds_per_update=stats.seconds,
        reward_share=stats.reward_seconds / total,
        network_share=stats.network_seconds / total,
        environment_share=stats.environment_seconds / total,
        validation=validation,
        checkpoint=checkpoint,
        final=final,
    )
