"""Advantage actor-critic training of the coloring agent, as a generator of progress reports.

``train(...)`` yields one ``TrainingReport`` per update, so a caller (CLI progress bar, napari
thread worker, test) drives it and stops it between two updates; closing the generator writes a
final checkpoint. One update is ``rollout.run_update``: play a batch of episodes, the
actor-critic loss, one Adam step. What a run saves and resumes is ``state.TrainingState``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import ColorRLConfig, TrainConfig
from ..data.checks import check_training_samples, ensure_writable
from ..data.scale import measure_training_scale
from ..model.checkpoint_paths import best_path
from ..model.fast_layers import use_fast_layout
from ..model.networks import build_network
from ..runtime import check_training_memory, release_memory
from . import distributed
from .environment import Environment
from .rollout import RolloutStats, run_update
from .selection import selection_score, validate
from .state import TrainingState


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
    final: bool = False
    stopped: bool = False  # the final update, ended early by ``should_stop`` (a signal)
    agreement: float | None = None  # the code-agreement term (train.agreement_weight > 0)
    foreground: float | None = None  # the supervised foreground term (train.foreground_weight)


def learning_rate(train: TrainConfig, progress: float) -> float:
    """The paper's two phases: lr, then lr_final after ``lr_switch`` of the budget."""
    return train.lr if progress < train.lr_switch else train.lr_final


def _linear(start: float, final: float | None, progress: float) -> float:
    """From ``start`` at the budget's start to ``final`` at its end (constant without one)."""
    return start if final is None else start + (final - start) * progress


def entropy_coef(train: TrainConfig, progress: float) -> float:
    """The entropy bonus, linear from entropy_coef to entropy_coef_final over the budget."""
    return _linear(train.entropy_coef, train.entropy_coef_final, progress)


def exploration_correlation(train: TrainConfig, progress: float) -> float:
    """The shared share of coherent exploration's draws, linear from exploration_correlation to
    exploration_correlation_final over the budget (constant without a final value)."""
    return _linear(train.exploration_correlation, train.exploration_correlation_final, progress)


def split_weight(config: ColorRLConfig, progress: float) -> float:
    """The split weight w_s now: linear from train.split_weight_start to reward.w_split over the
    first train.split_anneal of the budget, then w_split (w_split throughout without a start)."""
    start, final = config.train.split_weight_start, config.reward.w_split
    if start is None:
        return final
    return _linear(start, final, min(1.0, progress / config.train.split_anneal))


class Budget:
    """The run's clock and budget (minutes or episodes), shared by all workers."""

    def __init__(self, train: TrainConfig, ctx: distributed.DistributedContext,
                 state: TrainingState) -> None:
        self.ctx, self.state = ctx, state
        self.batch = train.batch_size * ctx.world_size  # episodes per update, all workers
        # Counted in episodes, so a run resumed with another number of processes ends on budget.
        self.total_updates = max(1, state.update + math.ceil(
            (train.episodes - state.episodes) / self.batch))
        self.seconds = None if train.minutes is None else float(train.minutes) * 60.0
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return self.state.elapsed_before + time.perf_counter() - self.start

    def _shared_elapsed(self) -> float:
        # Workers take the lr phase and the stop from the same clock (rank 0's), or they part.
        elapsed = self.elapsed()
        return distributed.broadcast_float(elapsed, self.ctx) if self.seconds else elapsed

    def progress(self) -> float:
        if self.seconds:
            return min(1.0, max(self._shared_elapsed() / self.seconds, 0.0))
        return min(1.0, self.state.update / self.total_updates)

    def finished(self) -> bool:
        if self.seconds is not None:
            return self._shared_elapsed() >= self.seconds
        return self.state.update >= self.total_updates


def train(
    config: ColorRLConfig,
    train_samples: Sequence,
    val_samples: Sequence = (),
    *,
    out: str | Path,
    resume: str | Path | None = None,
    should_stop: Callable[[], bool] | None = None,
    init: str | Path | None = None,
) -> Generator[TrainingReport, None, None]:
    """Train a ColorRL agent; yields a ``TrainingReport`` after every update.

    config: the full configuration (``config.steps`` must already be resolved, see
        ``method.steps.auto_steps``). train_samples / val_samples: objects with ``name``,
        ``image`` and ``labels`` (``core.data.files.Sample``). out: checkpoint path, written every
        ``config.train.checkpoint_every`` updates, at the end and when the generator is closed.
        When validation samples are given, the best model by validation SBD + AP50 is also kept
        as ``checkpoint_paths.best_path(out)`` (run.pt: run.best.pt), and (``train.tune_min_size``)
        the minimum object size is chosen on the validation images and saved in the
        checkpoints' config. resume: continue from a
        checkpoint (weights, optimizer, counters, random state). init: fine-tune, starting from
        the weights of this checkpoint or bundled model (its network must be ``config``'s, as
        ``setup.build_config`` makes it), with a fresh optimizer and schedule.
        should_stop: asked after every update (``stopping.StopSignals.requested``); True ends
        the run there, with the checkpoint written and a final report that has
        ``stopped=True``. A KeyboardInterrupt raised inside an update (a second Ctrl-C) abandons
        it and still writes the weights.

    Under torchrun (see ``training.distributed``) every process runs this generator as one
    worker: its own episodes from its own shard of ``train_samples``, gradients averaged by DDP,
    report scalars averaged over the workers; only rank 0 validates and writes checkpoints.
    Episode counts and the ``episodes`` budget are totals over all workers.
    """
    tcfg, out = config.train, Path(out)
    ctx, device = distributed.setup(tcfg.device)
    state = model = optimizer = worker = env = run = None
    try:
        # Refuse what cannot work before any time is spent: bad labels, no room, no write
        # access, a bad resume file. Every worker learns whether all the others are ready, so a
        # failure on one does not leave the rest waiting in the first collective.
        error = None
        try:
            train_samples = check_training_samples(train_samples, config.ndim)
            val_samples = check_training_samples(val_samples, config.ndim, what="validation")
            check_training_memory(config, device)
            ensure_writable(out.parent, what="checkpoint")
            if tcfg.threads:
                torch.set_num_threads(int(tcfg.threads))
            state = TrainingState.start(tcfg.seed)
            state.training_scale = measure_training_scale(train_samples, config).to_dict()
            model = use_fast_layout(build_network(config).to(device), device)
            optimizer = torch.optim.Adam(model.parameters(), lr=tcfg.lr, amsgrad=tcfg.amsgrad)
            if resume is not None:
                state.resume(Path(resume), config, model, optimizer, device)
            elif init is not None:
                load_initial_weights(model, init, config)
        except Exception as exc:  # re-raised below, on this worker and (as a note) on the others
            error = exc
        distributed.raise_unless_all_ready(error, ctx)
        if ctx.enabled:
            # Saved random states are rank 0's: every worker draws fresh streams of its own.
            state.rng = distributed.worker_rng(tcfg.seed, ctx, state.update)
        worker = distributed.wrap(model, ctx, device)  # the model itself in a plain run
        env = Environment(distributed.shard(train_samples, ctx), config, device, state.rng)
        budget = Budget(tcfg, ctx, state)
        run = _Run(ctx, device, state, model, optimizer, worker, env, budget)
        yield from _updates(run, config, val_samples, out, resume, should_stop)
    finally:
        worker = run = None  # DDP holds the process group: let it go before leaving the group
        distributed.teardown(ctx)
        # Drop the network, its gradients and Adam's moments before giving the memory back.
        model = optimizer = env = None
        release_memory(device)


@dataclass
class _Run:
    """What ``train`` set up for its loop."""

    ctx: distributed.DistributedContext
    device: torch.device
    state: TrainingState
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    worker: torch.nn.Module
    env: Environment
    budget: Budget


def _updates(run: _Run, config: ColorRLConfig, val_samples: Sequence, out: Path,
             resume: str | Path | None, should_stop: Callable[[], bool] | None,
             ) -> Generator[TrainingReport, None, None]:
    """The loop of ``train``: one report per update, a checkpoint at every stop."""
    tcfg = config.train
    ctx, device, state, model, optimizer = run.ctx, run.device, run.state, run.model, run.optimizer
    worker, env, budget = run.worker, run.env, run.budget
    last_checkpoint: str | None = None if resume is None else str(resume)

    def save(path: Path) -> str:
        if ctx.is_main:
            state.save(path, config, model, optimizer, budget.elapsed(), device)
        return str(path)

    try:
        done = budget.finished()  # one decision per update: the loop ends after the final one
        while not done:
            progress = budget.progress()
            lr = learning_rate(tcfg, progress)
            for group in optimizer.param_groups:
                group["lr"] = lr
            warm = state.update < tcfg.warmup_updates
            episode = env.reset(tcfg.batch_size, indices=[0] * tcfg.batch_size if warm else None)
            stats = run_update(worker, optimizer, episode, config,
                               entropy_coef=entropy_coef(tcfg, progress),
                               correlation=exploration_correlation(tcfg, progress),
                               w_split=split_weight(config, progress))
            stats = distributed.mean_over_ranks(stats, ctx)
            _stop_unless_finite(stats, model, state.update, lr, last_checkpoint)
            state.update += 1
            state.episodes += budget.batch
            stopped = distributed.any_rank(should_stop is not None and should_stop(), ctx)
            done = stopped or budget.finished()
            validation, checkpoint = None, None
            # The last update is always validated (with a time budget the final weights, after
            # the low-learning-rate phase, would otherwise never compete for the best model),
            # except after a stop request, which must end soon (a SLURM limit, docker stop).
            due = state.update % tcfg.val_every == 0 or (done and not stopped)
            if val_samples and ctx.is_main and due:
                validation = validate(model, config, val_samples[: tcfg.val_max_images], device,
                                      choose_min_size=tcfg.tune_min_size,
                                      scale=state.training_scale,
                                      choose_depth=tcfg.tune_depth)
                # Inference choices only: the checkpoints written from now on carry them.
                if "min_size" in validation:
                    config = config.replace(min_size=int(validation["min_size"]))
                if "depth" in validation:
                    config = config.replace(depth=int(validation["depth"]))
                if selection_score(validation) > state.best_score:
                    state.best_score = selection_score(validation)
                    save(best_path(out))
            if state.update % tcfg.checkpoint_every == 0 or done:
                checkpoint = last_checkpoint = save(out)
            yield _report(stats, state, budget, lr, validation, checkpoint, done, stopped)
    except (GeneratorExit, KeyboardInterrupt):
        # The caller stopped training (closed the generator, or a second Ctrl-C abandoned the
        # update): keep what was learnt. A crash raises past this and leaves the last periodic
        # checkpoint untouched.
        if _weights_finite(model):
            save(out)
        raise


def load_initial_weights(model: torch.nn.Module, init: str | Path, config: ColorRLConfig) -> None:
    """Load a fine-tune's starting weights into ``model`` (checked like any checkpoint: plain
    data only, every tensor's name and shape against ``config``'s network before loading)."""
    from ..model.bioimage import load_model_file
    from ..model.bundled import resolve_model_path
    from ..model.checkpoint import load_weights
    from ..model.checkpoint_checks import check_model_state

    path = resolve_model_path(init)
    checkpoint = load_model_file(path)  # a checkpoint or a bioimage.io package
    check_model_state(checkpoint.model_state, config, path)
    load_weights(model, checkpoint, path)


def _stop_unless_finite(stats: RolloutStats, model: torch.nn.Module, update: int, lr: float,
                        last_checkpoint: str | None) -> None:
    """Raise TrainingError when the loss or the weights are no longer finite."""
    if math.isfinite(stats.loss) and _weights_finite(model):
        return
    what = (f"The loss became {stats.loss}" if not math.isfinite(stats.loss)
            else "The weights became NaN or infinite")
    raise TrainingError(
        f"{what} at update {update + 1}; training stopped and the last good checkpoint "
        f"({last_checkpoint or 'none was written yet'}) is kept. Lower the learning rate "
        f"(now {lr:g}) or enable gradient clipping (grad_clip)."
    )


def _weights_finite(model: torch.nn.Module) -> bool:
    """True when no weight is NaN or infinite (one max per tensor, one device sync)."""
    with torch.no_grad():
        peaks = [p.detach().abs().amax().float() for p in model.parameters() if p.numel()]
        return not peaks or bool(torch.isfinite(torch.stack(peaks)).all())


def _report(stats: RolloutStats, state: TrainingState, budget: Budget, lr: float,
            validation: dict | None, checkpoint: str | None, final: bool,
            stopped: bool = False) -> TrainingReport:
    total = max(stats.seconds, 1e-9)
    elapsed, progress = budget.elapsed(), budget.progress()
    eta = elapsed * (1.0 - progress) / progress if progress > 0 else None
    return TrainingReport(
        update=state.update,
        episodes=state.episodes,
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
        stopped=stopped,
        agreement=stats.agreement,
        foreground=stats.foreground,
    )
