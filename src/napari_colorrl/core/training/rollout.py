"""One actor-critic update: run a batch of episodes for T steps, compute the loss, step Adam.

The rollout keeps its graph, so each state is seen by the network once (no second forward pass
to evaluate the taken actions). Losses are means over the episode's own loss mask.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from napari_colorrl.core.config import ColorRLConfig
from napari_colorrl.core.method.coloring import step_value
from napari_colorrl.core.method.rewards import step_rewards
from napari_colorrl.core.training.environment import Episode

PARTS = ("foreground", "background", "split", "merge")
PPO_CLIP = 0.2


@dataclass
class RolloutStats:
    """Scalars of one update (reward parts: mean per masked pixel, summed over steps)."""

    reward: float
    reward_parts: dict[str, float]
    loss: float
    policy_loss: float
    value_loss: float
    entropy: float
    seconds: float
    reward_seconds: float
    network_seconds: float
    environment_seconds: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _SectionTimer:
    """Seconds spent in the marked sections of an update, without a sync inside the step loop.

    On a CUDA device each section is a pair of timing events read once at the end (after the
    update's final sync); elsewhere ``time.perf_counter`` around the (synchronous) work.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.marks: list[tuple[object, object]] = []
        self._start: object = None

    def _now(self) -> object:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self.device))
            return event
        return time.perf_counter()

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> None:
        self.marks.append((self._start, self._now()))

    def seconds(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return sum(a.elapsed_time(b) for a, b in self.marks) / 1000.0  # type: ignore[attr-defined]
        return float(sum(b - a for a, b in self.marks))  # type: ignore[operator]


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (..., B, *S) over the pixels where ``mask`` (B, *S) is set."""
    weight = mask.expand_as(values)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def gae(rewards: torch.Tensor, values: torch.Tensor, lam: float) -> torch.Tensor:
    """Generalized advantages over the T steps, gamma = 1, V after the last step = 0.

    rewards, values: (T, B, *S). With lam = 1 this is (sum of remaining rewards) - V_t.
    """
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        next_value = values[t + 1] if t + 1 < rewards.shape[0] else torch.zeros_like(values[t])
        delta = rewards[t] + next_value - values[t]
        running = delta + lam * running
        advantages[t] = running
    return advantages


def autocast(device: torch.device, precision: str):
    """The context the training rollout's network passes run in: ``torch.autocast`` in bfloat16
    for ``precision == "bfloat16"`` (convolutions and matrix products in bfloat16, norms and
    everything after the heads in float32), else a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


def _encode(model: torch.nn.Module, image: torch.Tensor, precision: str) -> torch.Tensor | None:
    if not hasattr(model, "encode_image"):
        return None
    with autocast(image.device, precision):
        return model.encode_image(image)


def _forward(model: torch.nn.Module, image: torch.Tensor, channels: torch.Tensor,
             cache: torch.Tensor | None, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    with autocast(image.device, precision):
        return model(image, channels, image_features=cache)


def _evaluate(
    model: torch.nn.Module, image: torch.Tensor, states: list[torch.Tensor],
    actions: list[torch.Tensor], precision: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probabilities of the taken actions, values and entropies, (T, B, *S), recomputed."""
    cache = _encode(model, image, precision)
    log_probs, values, entropies = [], [], []
    for channels, action in zip(states, actions):
        logits, value = _forward(model, image, channels, cache, precision)
        log_p = F.log_softmax(logits.float(), dim=1)
        log_probs.append(torch.where(action, log_p[:, 1], log_p[:, 0]))
        entropies.append(-(log_p.exp() * log_p).sum(1))
        values.append(value[:, 0].float())
    return torch.stack(log_probs), torch.stack(values), torch.stack(entropies)


def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
          grad_clip: float | None) -> bool:
    """One optimizer step on ``loss``; False (and no step) when the loss or gradients are not
    finite.

    Under DistributedDataParallel every rank runs the backward pass even when its own loss is
    NaN: the gradient all-reduce inside it is collective, and a rank that skipped it would leave
    the others waiting forever. The NaN then reaches every rank's averaged gradients, so every
    rank makes the same decision (no step), and the trainer stops them all together.
    """
    optimizer.zero_grad(set_to_none=True)
    finite = bool(torch.isfinite(loss))
    if not finite and not any(isinstance(m, torch.nn.parallel.DistributedDataParallel)
                              for m in model.modules()):
        return False
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                          grad_clip if grad_clip else float("inf"))
    if not (finite and bool(torch.isfinite(norm))):
        optimizer.zero_grad(set_to_none=True)
        return False
    optimizer.step()
    return True


def run_update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    episode: Episode,
    config: ColorRLConfig,
    *,
    entropy_coef: float,
) -> RolloutStats:
    """Play one batch of episodes with sampled actions and apply one A2C update.

    With ``config.train.update_epochs`` > 1 the same episodes are reused for further updates
    with the PPO clipped surrogate (ratio to the acting policy clipped to 1 +- 0.2), an option
    that trades extra network passes for fewer environment resets.
    """
    device = episode.image.device
    steps = config.steps
    tcfg = config.train
    model.train()
    start = time.perf_counter()
    reward_timer = _SectionTimer(device)
    image = episode.image
    batch, spatial = image.shape[0], image.shape[2:]
    channels = torch.zeros((batch, steps, *spatial), dtype=image.dtype, device=device)
    prev_colors = torch.zeros((batch, *spatial), dtype=torch.int64, device=device)
    cache = _encode(model, image, tcfg.precision)
    log_probs, entropies, values, rewards = [], [], [], []
    states, actions = [], []
    # The mean of each reward part per step stays on the device and is read back once per
    # update (one sync instead of 4 T inside the loop).
    part_means: list[torch.Tensor] = []
    mask = episode.targets.mask.to(image.dtype)
    for t in range(steps):
        logits, value = _forward(model, image, channels, cache, tcfg.precision)
        log_p = F.log_softmax(logits.float(), dim=1)
        prob_one = log_p[:, 1].exp()
        with torch.no_grad():
            action = torch.rand_like(prob_one) < prob_one
        log_probs.append(torch.where(action, log_p[:, 1], log_p[:, 0]))
        entropies.append(-(log_p.exp() * log_p).sum(1))
        values.append(value[:, 0].float())
        states.append(channels)
        actions.append(action)
        colors = prev_colors + action.to(torch.int64) * (1 << t)
        reward_timer.start()
        parts = step_rewards(episode.targets, prev_colors, colors, action, t, steps)
        reward_timer.stop()
        rewards.append(parts.total.float())
        part_means.append(torch.stack([masked_mean(getattr(parts, name).float(), mask)
                                       for name in PARTS]))
        channels = channels.clone()  # the old tensor is saved for backward
        channels[:, t] = step_value(action)
        prev_colors = colors

    log_prob = torch.stack(log_probs)
    entropy = torch.stack(entropies)
    value = torch.stack(values)
    reward = torch.stack(rewards)
    with torch.no_grad():
        advantages = gae(reward, value.detach(), tcfg.gae_lambda)
        returns = advantages + value.detach()
        if tcfg.advantage_norm:
            selected = advantages[mask.expand_as(advantages).bool()]
            advantages = (advantages - selected.mean()) / (selected.std() + 1e-6)
    policy_loss = -masked_mean(log_prob * advantages, mask)
    value_loss = masked_mean((returns - value) ** 2, mask)
    entropy_mean = masked_mean(entropy, mask)
    loss = policy_loss + tcfg.value_coef * value_loss - entropy_coef * entropy_mean
    stepped = _step(model, optimizer, loss, tcfg.grad_clip)
    old_log_prob = log_prob.detach()
    for _ in range(1, max(1, tcfg.update_epochs)):
        if not stepped:  # the same decision on every rank (see _step)
            break
        new_log_prob, new_value, new_entropy = _evaluate(model, image, states, actions,
                                                         tcfg.precision)
        ratio = torch.exp(new_log_prob - old_log_prob)
        surrogate = torch.minimum(ratio * advantages,
                                  torch.clamp(ratio, 1 - PPO_CLIP, 1 + PPO_CLIP) * advantages)
        loss = (-masked_mean(surrogate, mask)
                + tcfg.value_coef * masked_mean((returns - new_value) ** 2, mask)
                - entropy_coef * masked_mean(new_entropy, mask))
        stepped = _step(model, optimizer, loss, tcfg.grad_clip)
    _sync(device)
    seconds = time.perf_counter() - start
    reward_seconds = min(reward_timer.seconds(), seconds)
    reward_parts = dict.fromkeys(PARTS, 0.0)
    for row in torch.stack(part_means).tolist():
        for name, value in zip(PARTS, row, strict=True):
            reward_parts[name] += value
    return RolloutStats(
        reward=float(sum(reward_parts.values())),
        reward_parts=reward_parts,
        loss=float(loss.detach()),
        policy_loss=float(policy_loss.detach()),
        value_loss=float(value_loss.detach()),
        entropy=float(entropy_mean.detach()),
        seconds=seconds + episode.prepare_seconds,
        reward_seconds=reward_seconds,
        network_seconds=seconds - reward_seconds,
        environment_seconds=episode.prepare_seconds,
    )
