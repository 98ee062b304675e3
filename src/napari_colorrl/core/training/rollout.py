"""One actor-critic update, in the three parts to check against the paper: play a batch of
episodes for T steps (:func:`play_episodes`), the actor-critic loss (:func:`actor_critic_loss`),
the optimizer step (:func:`optimizer_step`). :func:`run_update` runs the three and times them.

The rollout keeps its graph, so each state is seen by the network once (no second forward pass
to evaluate the taken actions). Losses are means over the episode's own loss mask.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from ..config import ColorRLConfig, TrainConfig
from ..method.coloring import step_value
from ..method.rewards import expected_step_rewards, step_rewards
from .agreement import code_agreement_loss, code_repair_loss
from .environment import Episode
from .exploration import exploration_uniforms
from .timing import SectionTimer, UpdateClock

PARTS = ("foreground", "background", "split", "merge")


@dataclass
class Rollout:
    """What a batch of episodes played: per step t, (T, B, *S) tensors over the pixels."""

    log_prob: torch.Tensor  # log pi(a_t | s_t) of the sampled actions (with graph)
    value: torch.Tensor  # V(s_t) (with graph)
    entropy: torch.Tensor  # entropy of pi(. | s_t) (with graph)
    reward: torch.Tensor  # r_t, the sum of the four reward parts
    mask: torch.Tensor  # (B, *S) the loss mask of each episode
    part_means: torch.Tensor  # (T, 4) mean of each reward part per step over the mask
    weight: torch.Tensor | None = None  # (B, *S) loss weights (None: the mask, every pixel)
    aux: torch.Tensor | None = None  # auxiliary supervised loss (network.aux_heads), with graph
    agreement: torch.Tensor | None = None  # the code-agreement term (agreement.py), with graph
    foreground: torch.Tensor | None = None  # the supervised foreground term, with graph
    # train.expected_reward: P(a_t = 1) (with graph), and per pixel the expected reward of step
    # t for a_t = 1 minus that for a_t = 0, and its mean under the policy (no graph).
    prob_one: torch.Tensor | None = None
    expected_gain: torch.Tensor | None = None
    expected_reward: torch.Tensor | None = None


@dataclass
class Losses:
    total: torch.Tensor
    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor
    aux: torch.Tensor | None = None
    agreement: torch.Tensor | None = None
    foreground: torch.Tensor | None = None


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
    agreement: float | None = None  # the code-agreement term, when train.agreement_weight > 0
    foreground: float | None = None  # the supervised foreground term (train.foreground_weight)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (..., B, *S) over the pixels where ``mask`` (B, *S) is set, or
    weighted by ``mask`` when it holds weights (``object_weights``)."""
    weight = mask.expand_as(values)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def object_weights(targets, mask: torch.Tensor) -> torch.Tensor:
    """(B, *S) loss weights giving every ground-truth object, and each episode's background,
    the same total weight over its pixels in ``mask``, scaled so the weights sum to the number
    of masked pixels (losses keep the size of a per-pixel mean)."""
    flat = mask.reshape(-1).to(torch.float32)
    slots = targets.instance
    counts = torch.bincount(slots, weights=flat, minlength=targets.n_slots)
    weight = flat / counts[slots].clamp_min(1.0)
    weight = weight * (flat.sum() / weight.sum().clamp_min(1e-12))
    return weight.view(mask.shape).to(mask.dtype)


def has_aux_heads(model: torch.nn.Module) -> bool:
    """Whether ``model`` (or the network inside a DDP wrapper) has auxiliary heads."""
    return bool(getattr(getattr(model, "module", model), "aux_heads", False))


def aux_label_maps(targets) -> tuple[torch.Tensor, torch.Tensor]:
    """(foreground, boundary) float maps (B, *S) of the episode's labels: the targets of the
    auxiliary heads. A boundary pixel is a foreground pixel with a face neighbour of another
    instance or the background (made from the instance slots, no preparation per image)."""
    shape = tuple(targets.mask.shape)
    slots = targets.instance.view(shape)
    foreground = targets.foreground.view(shape)
    boundary = torch.zeros(shape, dtype=torch.bool, device=slots.device)
    for axis in range(1, len(shape)):
        differs = slots.narrow(axis, 1, shape[axis] - 1) != slots.narrow(axis, 0, shape[axis] - 1)
        boundary.narrow(axis, 1, shape[axis] - 1).logical_or_(differs)
        boundary.narrow(axis, 0, shape[axis] - 1).logical_or_(differs)
    return foreground.float(), (boundary & foreground).float()


def aux_loss(logits: torch.Tensor, targets: tuple[torch.Tensor, torch.Tensor],
             mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the foreground and the boundary heads over ``mask``; the rare
    boundary pixels are weighted up by the ratio of the two classes (at most 10x)."""
    foreground, boundary = targets
    fg = F.binary_cross_entropy_with_logits(logits[:, 0], foreground, reduction="none")
    positives = (boundary * mask).sum()
    ratio = ((mask.sum() - positives) / positives.clamp_min(1.0)).clamp(1.0, 10.0)
    bd = F.binary_cross_entropy_with_logits(logits[:, 1], boundary, reduction="none",
                                            pos_weight=ratio)
    return masked_mean(fg, mask) + masked_mean(bd, mask)


def foreground_loss(log_p: torch.Tensor, targets, mask: torch.Tensor) -> torch.Tensor:
    """The supervised foreground term (``train.foreground_weight``; beyond the paper,
    docs/method.md "Training"): the cross-entropy of the policy's own actions where the rewards
    fix the best action whatever the other pixels do, a_0 = 1 on the foreground and 0 on the
    background at step 0, and a_t = 0 on the background at every later step (code 0).

    log_p: (T, B, 2, *S) log pi(. | s_t). A foreground pixel weighs 1 - beta and a background
    pixel beta (twice that, so beta 0.5 is the plain cross-entropy), as in the step-0 reward, so
    the term's threshold is the reward's: its argmax takes a pixel for foreground where the
    pixel's chance of being foreground reaches beta. The step-0 mean over the mask plus the mean
    over the later steps and the masked background pixels.
    """
    beta = targets.config.beta
    foreground = targets.foreground.view(mask.shape)
    weight = torch.where(foreground, 2.0 * (1.0 - beta), 2.0 * beta) * mask
    first = torch.where(foreground, log_p[0, :, 1], log_p[0, :, 0])
    loss = -masked_mean(first, weight)
    if log_p.shape[0] > 1:
        loss = loss - masked_mean(log_p[1:, :, 0], weight * ~foreground)
    return loss


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


def play_episodes(model: torch.nn.Module, episode: Episode, config: ColorRLConfig,
                  reward_timer: SectionTimer | None = None, *,
                  correlation: float | None = None) -> Rollout:
    """Run T coloring steps on a batch of episodes with actions sampled from the policy.

    At step t the network sees the image and the step channels of the actions so far; each pixel
    samples a_t ~ pi(. | s_t) (by default independently; patches or objects together under
    coherent exploration, ``exploration.py``), the color becomes c_t = c_{t-1} + a_t 2^t, and
    the rewards of the step come from the colors (``method.rewards.step_rewards``).
    ``correlation`` replaces ``train.exploration_correlation`` (the trainer's schedule,
    ``exploration_correlation_final``).
    """
    image, steps, precision = episode.image, config.steps, config.train.precision
    batch, spatial = image.shape[0], image.shape[2:]
    channels = torch.zeros((batch, steps, *spatial), dtype=image.dtype, device=image.device)
    prev_colors = torch.zeros((batch, *spatial), dtype=torch.int64, device=image.device)
    mask = episode.targets.mask.to(image.dtype)
    with autocast(image.device, precision):
        cache = model.encode_image(image) if hasattr(model, "encode_image") else None
    log_probs, entropies, values, rewards, part_means = [], [], [], [], []
    use_aux = has_aux_heads(model) and config.train.aux_weight > 0
    aux_targets = aux_label_maps(episode.targets) if use_aux else None
    aux_losses, expected = [], config.train.expected_reward
    scale = config.train.exploration_scale
    if correlation is None:
        correlation = config.train.exploration_correlation
    objects = ((episode.targets.instance, episode.targets.n_slots)
               if config.train.exploration_objects else None)
    agreement = config.train.agreement_weight > 0
    probs, gains, means = [], [], []  # probs: P(a_t = 1), for expected_reward and agreement
    supervised = config.train.foreground_weight > 0
    step_log_p = []  # log pi(. | s_t) per step, for the supervised foreground term
    for t in range(steps):
        with autocast(image.device, precision):
            if use_aux:
                logits, value, aux_logits = model(image, channels, image_features=cache,
                                                  aux=True)
                aux_losses.append(aux_loss(aux_logits.float(), aux_targets, mask))
            else:
                logits, value = model(image, channels, image_features=cache)
        log_p = F.log_softmax(logits.float(), dim=1)
        prob_one = log_p[:, 1].exp()
        if expected or agreement:
            probs.append(prob_one)
        if supervised:
            step_log_p.append(log_p)
        with torch.no_grad():
            uniform = exploration_uniforms(tuple(prob_one.shape), scale, correlation,
                                           prob_one.device, objects)
            action = uniform < prob_one
        log_probs.append(torch.where(action, log_p[:, 1], log_p[:, 0]))
        entropies.append(-(log_p.exp() * log_p).sum(1))
        values.append(value[:, 0].float())
        colors = prev_colors + action.to(torch.int64) * (1 << t)
        with reward_timer or contextlib.nullcontext():
            parts = step_rewards(episode.targets, prev_colors, colors, action, t, steps)
            if expected:
                with torch.no_grad():
                    p_one = prob_one.detach()
                    zero, one = expected_step_rewards(episode.targets, prev_colors, p_one, t,
                                                      steps)
                    gains.append(one.total - zero.total)
                    means.append(zero.total + p_one * gains[-1])
        rewards.append(parts.total.float())
        # Means stay on the device and are read back once per update (one sync, not 4 T).
        part_means.append(torch.stack([masked_mean(getattr(parts, name).float(), mask)
                                       for name in PARTS]))
        channels = channels.clone()  # the old tensor is saved for backward
        channels[:, t] = step_value(action)
        prev_colors = colors
    weight = object_weights(episode.targets, mask) if config.train.object_weighting else None
    aux = torch.stack(aux_losses).mean() if aux_losses else None
    expectation = ((torch.stack(probs), torch.stack(gains), torch.stack(means)) if expected
                   else (None, None, None))
    agreement_loss = (code_repair_loss if config.train.agreement_form == "repair"
                      else code_agreement_loss)
    agreed = agreement_loss(torch.stack(probs), episode.targets) if agreement else None
    taught = (foreground_loss(torch.stack(step_log_p), episode.targets, mask) if supervised
              else None)
    return Rollout(torch.stack(log_probs), torch.stack(values), torch.stack(entropies),
                   torch.stack(rewards), mask, torch.stack(part_means), weight, aux, agreed,
                   taught, *expectation)


def actor_critic_loss(rollout: Rollout, train: TrainConfig, entropy_coef: float) -> Losses:
    """Policy loss -A_t log pi(a_t|s_t) + value_coef (R_t - V(s_t))^2 - entropy_coef H(pi),
    each a mean over the masked pixels and steps; advantages by GAE with gamma = 1.

    With ``train.expected_reward`` the policy loss of step t is
    -(P(a_t = 1) g_t + F_t log pi(a_t|s_t)): g_t, the expected reward of step t for a_t = 1
    minus that for a_t = 0, is the exact gradient of the step's own expected reward; F_t = A_t -
    (r_t - E_pi[r_t]) is the advantage of the later steps alone (its baseline V(s_t) -
    E_pi[r_t] depends on the state only). Normalised advantages divide both by the spread of A.
    The auxiliary heads' loss, the code-agreement term and the supervised foreground term are
    added with their weights.
    """
    value = rollout.value
    weight = rollout.mask if rollout.weight is None else rollout.weight
    with torch.no_grad():
        advantages = gae(rollout.reward, value.detach(), train.gae_lambda)
        returns = advantages + value.detach()
        centre, spread = 0.0, 1.0
        if train.advantage_norm:  # over the loss weights: every pixel, or every object alike
            centre = masked_mean(advantages, weight)
            spread = masked_mean((advantages - centre) ** 2, weight).sqrt() + 1e-6
        if rollout.expected_gain is not None:
            future = advantages - (rollout.reward - rollout.expected_reward)
            if train.advantage_norm:
                future = future - masked_mean(future, weight)
            future, gain = future / spread, rollout.expected_gain / spread
        else:
            advantages = (advantages - centre) / spread
    if rollout.expected_gain is not None:
        policy = -masked_mean(rollout.prob_one * gain + rollout.log_prob * future, weight)
    else:
        policy = -masked_mean(rollout.log_prob * advantages, weight)
    value_loss = masked_mean((returns - value) ** 2, weight)
    entropy = masked_mean(rollout.entropy, weight)
    total = policy + train.value_coef * value_loss - entropy_coef * entropy
    if rollout.aux is not None:
        total = total + train.aux_weight * rollout.aux
    if rollout.agreement is not None:
        total = total + train.agreement_weight * rollout.agreement
    if rollout.foreground is not None:
        total = total + train.foreground_weight * rollout.foreground
    return Losses(total, policy, value_loss, entropy, rollout.aux, rollout.agreement,
                  rollout.foreground)


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   loss: torch.Tensor, grad_clip: float | None) -> bool:
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


def run_update(model: torch.nn.Module, optimizer: torch.optim.Optimizer, episode: Episode,
               config: ColorRLConfig, *, entropy_coef: float,
               correlation: float | None = None, w_split: float | None = None) -> RolloutStats:
    """Play one batch of episodes with sampled actions and apply one A2C update
    (``correlation``: coherent exploration's shared share now, ``play_episodes``; ``w_split``:
    the split weight now, when a schedule moves it from the targets' ``reward.w_split``)."""
    if w_split is not None and w_split != episode.targets.config.w_split:
        rewards = replace(episode.targets.config, w_split=float(w_split))
        episode = replace(episode, targets=replace(episode.targets, config=rewards))
    clock = UpdateClock(episode.image.device)
    model.train()
    rollout = play_episodes(model, episode, config, clock.rewards, correlation=correlation)
    losses = actor_critic_loss(rollout, config.train, entropy_coef)
    optimizer_step(model, optimizer, losses.total, config.train.grad_clip)
    seconds, reward_seconds = clock.stop()
    parts = [sum(column) for column in zip(*rollout.part_means.tolist(), strict=True)]
    reward_parts = dict(zip(PARTS, parts, strict=True))
    return RolloutStats(
        reward=float(sum(reward_parts.values())),
        reward_parts=reward_parts,
        loss=float(losses.total.detach()),
        policy_loss=float(losses.policy.detach()),
        value_loss=float(losses.value.detach()),
        entropy=float(losses.entropy.detach()),
        seconds=seconds + episode.prepare_seconds,
        reward_seconds=reward_seconds,
        network_seconds=seconds - reward_seconds,
        environment_seconds=episode.prepare_seconds,
        agreement=None if losses.agreement is None else float(losses.agreement.detach()),
        foreground=None if losses.foreground is None else float(losses.foreground.detach()),
    )
