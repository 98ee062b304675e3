"""Rewards of ColorRL: hand-computed values, 2D and 3D, and a slow loop reference."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch

from napari_colorrl.core.config import RewardConfig
from napari_colorrl.core.method.rewards import collate_targets, episode_rewards, step_rewards
from napari_colorrl.core.method.steps import max_neighbours, steps_for_neighbours
from napari_colorrl.core.method.targets import choose_subset, prepare_targets

BETA, WS, WM = 0.3, 1.5, 1.0


def cfg(**kw) -> RewardConfig:
    base = dict(beta=BETA, w_split=WS, w_merge=WM, radii=(1,), interior_shrink=1.0)
    base.update(kw)
    return RewardConfig(**base)


def run(labels, config, actions) -> list[dict[str, np.ndarray]]:
    """Per-step parts as numpy (B, *S) for actions (T, *S) of one sample."""
    batch = collate_targets([prepare_targets(labels, config)], "cpu")
    acts = torch.as_tensor(np.asarray(actions)[:, None], dtype=torch.bool)
    return [
        {n: getattr(p, n).numpy()[0] for n in ("foreground", "background", "split", "merge")}
        for p in episode_rewards(batch, acts)
    ]


def two_squares(ndim: int) -> np.ndarray:
    if ndim == 2:
        lab = np.zeros((4, 8), int)
        lab[:, :4], lab[:, 4:] = 1, 2
    else:
        lab = np.zeros((2, 2, 4), int)
        lab[..., :2], lab[..., 2:] = 1, 2
    return lab


# --- T and neighbours ----------------------------------------------------------------------
def test_steps_for_neighbours():
    assert [steps_for_neighbours(n) for n in (0, 1, 2, 3, 5, 9, 15, 17, 18, 33)] == [
        1, 1, 1, 2, 3, 4, 5, 5, 6, 6,
    ]


def ring_of_objects(ndim: int) -> np.ndarray:
    if ndim == 2:
        lab = np.zeros((21, 21), int)
        lab[8:13, 8:13] = 1
        for n, (dy, dx) in enumerate(itertools.product((-6, 0, 6), repeat=2)):
            if dy or dx:
                lab[10 + dy - 1 : 10 + dy + 2, 10 + dx - 1 : 10 + dx + 2] = n + 2
        return lab
    lab = np.zeros((13, 13, 13), int)
    lab[5:8, 5:8, 5:8] = 1
    for n, axis in enumerate(range(3)):
        for s, sign in enumerate((-1, 1)):
            sl = [slice(5, 8)] * 3
            sl[axis] = slice(1, 3) if sign < 0 else slice(10, 12)
            lab[tuple(sl)] = 2 + 2 * n + s
    return lab


@pytest.mark.parametrize("ndim,expected", [(2, 8), (3, 6)])
def test_ring_of_objects_neighbours(ndim, expected):
    lab = ring_of_objects(ndim)
    radius = 4.5 if ndim == 2 else 3
    assert max_neighbours(lab, radius) == expected
    assert max_neighbours(lab, 2) == 0
    targets = prepare_targets(lab, cfg(radii=(radius,)))
    pairs = targets.neighbours[0]
    assert sorted(pairs[pairs[:, 0] == 1, 1].tolist()) == list(range(2, expected + 2))
    if ndim == 2:  # an outer square sees the centre and its two outer neighbours
        assert targets.neighbour_count(0)[2:].tolist() == [3] * 8


# --- exact values on two touching squares --------------------------------------------------
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("form", ["proximity", "instance"])
def test_two_squares_exact(ndim, form):
    lab = two_squares(ndim)
    area = (lab == 1).sum()  # 16 in 2D, 8 in 3D; |F_i| = 4 in both
    n_inr, n_ring, steps = area + 1, 5, 2
    same = np.ones((2, *lab.shape), bool)
    same[1] = False
    parts = run(lab, cfg(split_form=form), same)
    assert np.allclose(parts[0]["foreground"], 1 - BETA)
    for name in ("background", "split", "merge"):
        assert np.all(parts[0][name] == 0)
    if form == "proximity":
        expected = (4 - 4) / n_ring - 4 / (steps * n_ring)  # -0.4
    else:
        expected = -(area / n_inr) / steps
    assert np.allclose(parts[1]["split"], WS * expected)
    assert np.allclose(parts[1]["merge"], WM * area / (steps * n_inr))
    assert np.all(parts[1]["background"] == 0)

    different = same.copy()
    different[1] = lab == 2  # the second square takes color 3, the first keeps 1
    parts = run(lab, cfg(split_form=form), different)
    expected = 4 / n_ring if form == "proximity" else area / n_inr
    assert np.allclose(parts[1]["split"], WS * expected)
    assert np.allclose(parts[1]["merge"], WM * area / (steps * n_inr))


def test_merge_penalty_when_interior_splits():
    lab = np.zeros((4, 4), int)
    lab[:] = 1
    acts = np.ones((2, 4, 4), bool)
    acts[1, :, 2:] = False  # colors 3 (left half) and 1 (right half)
    parts = run(lab, cfg(), acts)
    # s_0 = 16, s_1 = 8, n = 17: 8 / (2 * 17) - (16 - 8) / 17 = -4 / 17
    assert np.allclose(parts[1]["merge"], WM * -4 / 17)


@pytest.mark.parametrize("ndim", [2, 3])
def test_isolated_object_instance_form(ndim):
    shape = (12, 12) if ndim == 2 else (8, 8, 8)
    lab = np.zeros(shape, int)
    lab[(slice(3, 6),) * ndim] = 4
    rng = np.random.default_rng(1)
    acts = rng.random((4, *shape)) < 0.5
    parts = run(lab, cfg(split_form="instance", radii=(2, 3)), acts)
    obj = lab > 0
    assert np.all(parts[0]["split"] == 0)
    for p in parts[1:]:
        assert np.allclose(p["split"][obj], WS * 2 / 3)  # two radii, +1/(T-1) each
        assert np.all(p["split"][~obj] == 0)
    total = sum(p["split"] for p in parts)
    assert np.allclose(total[obj], 2 * WS)


def test_background_only():
    lab = np.zeros((5, 6), int)
    rng = np.random.default_rng(2)
    acts = rng.random((3, 5, 6)) < 0.5
    parts = run(lab, cfg(split_form="instance", radii=(1, 2)), acts)
    assert np.allclose(parts[0]["foreground"], np.where(acts[0], -BETA, BETA))
    colors = np.zeros(lab.shape, int)
    for t, p in enumerate(parts):
        new = colors + acts[t] * 2**t
        assert np.all(p["split"] == 0) and np.all(p["merge"] == 0)
        if t:
            assert np.all(p["foreground"] == 0)
            assert np.allclose(p["background"], np.where((colors == 0) & (new != 0), -BETA, 0))
        colors = new


def test_step0_and_background_penalty_exact():
    lab = np.zeros((2, 4), int)
    lab[0] = 1
    acts = np.array(
        [
            [[1, 0, 1, 0], [0, 1, 0, 1]],
            [[1, 1, 0, 0], [1, 1, 0, 0]],
            [[0, 0, 0, 0], [1, 0, 1, 1]],
        ],
        bool,
    )
    parts = run(lab, cfg(), acts)
    f = 1 - BETA
    assert np.allclose(parts[0]["foreground"], [[f, -f, f, -f], [BETA, -BETA, BETA, -BETA]])
    # background row, c_0 = [0,1,0,1]: turns non-zero at t=1 for pixel 0 only, t=2 pixel 2
    assert np.allclose(parts[1]["background"], [[0, 0, 0, 0], [-BETA, 0, 0, 0]])
    assert np.allclose(parts[2]["background"], [[0, 0, 0, 0], [0, 0, -BETA, 0]])


# --- interiors -----------------------------------------------------------------------------
@pytest.mark.parametrize("ndim", [2, 3])
def test_interior_shrink_area(ndim):
    n = 48 if ndim == 2 else 24
    grid = np.indices((n,) * ndim) - (n - 1) / 2
    obj = (grid**2).sum(0) <= (0.4 * n) ** 2
    lab = obj.astype(int)
    for alpha in (0.5, 0.8):
        targets = prepare_targets(lab, cfg(interior_shrink=alpha))
        inner = targets.interior.reshape(lab.shape) > 0
        assert np.all(obj[inner])
        assert inner.sum() / obj.sum() == pytest.approx(alpha**2, rel=0.1)
        assert targets.interior_size[1] == inner.sum()
    full = prepare_targets(lab, cfg(interior_shrink=1.0))
    assert np.array_equal(full.interior > 0, obj.ravel())
    dot = np.zeros((5, 5), int)
    dot[2, 2] = 3
    assert prepare_targets(dot, cfg(interior_shrink=0.1)).interior_size.tolist() == [0, 1]


# --- subsets, batches, transforms ----------------------------------------------------------
def grid_of_squares(n: int = 4) -> np.ndarray:
    lab = np.zeros((6 * n, 6 * n), int)
    for k, (i, j) in enumerate(itertools.product(range(n), repeat=2)):
        lab[6 * i + 1 : 6 * i + 5, 6 * j + 1 : 6 * j + 5] = k + 1
    return lab


def test_subset_mask():
    lab = grid_of_squares()
    config = cfg(subset=True, subset_min_instances=12)
    targets = prepare_targets(lab, config)
    rng = np.random.default_rng(3)
    masks = [choose_subset(targets, rng, config) for _ in range(2)]
    centres = np.array([np.argwhere(lab == i).mean(0) for i in range(1, 17)])
    for mask in masks:
        covered = [np.mean(mask[lab == i]) for i in range(1, 17)]
        assert set(covered) <= {0.0, 1.0}
        active = [i for i, c in enumerate(covered) if c == 1.0]
        assert len(active) == 1 + math.ceil(15 / 3)
        # some active instance has all active ones among its nearest
        ok = False
        for i in active:
            d = np.linalg.norm(centres - centres[i], axis=1)
            if max(d[active]) <= np.min(np.delete(d, active), initial=np.inf):
                ok = True
        assert ok
        bg = lab == 0
        assert mask[bg].sum() == round(bg.sum() * len(active) / 16)
    assert np.all(choose_subset(targets, rng, cfg()))
    assert np.all(choose_subset(targets, rng, cfg(subset=True, subset_min_instances=16)))
    batch = collate_targets([targets, targets], "cpu", masks=masks)
    assert torch.equal(batch.mask, torch.as_tensor(np.stack(masks)))
    acts = torch.as_tensor(np.random.default_rng(4).random((3, 2, *lab.shape)) < 0.5)
    for p in episode_rewards(batch, acts):
        assert torch.all(p.total[~batch.mask] == 0)
        means = p.means()
        assert means["total"] == pytest.approx(float(p.total[batch.mask].mean()), abs=1e-6)


def random_labels(shape, rng, n=6, block=2) -> np.ndarray:
    small = tuple(math.ceil(s / block) for s in shape)
    lab = np.kron(rng.integers(0, n, small), np.ones((block,) * len(shape), int))
    return lab[tuple(slice(0, s) for s in shape)]


@pytest.mark.parametrize("form", ["proximity", "instance"])
def test_batch_equals_single_samples(form):
    rng = np.random.default_rng(5)
    config = cfg(split_form=form, radii=(1, 3), interior_shrink=0.8)
    labs = [random_labels((10, 12), rng, n=3), random_labels((10, 12), rng, n=8)]
    targets = [prepare_targets(lab, config) for lab in labs]
    assert targets[0].n_instances != targets[1].n_instances
    acts = torch.as_tensor(rng.random((4, 2, 10, 12)) < 0.5)
    both = episode_rewards(collate_targets(targets, "cpu"), acts)
    for b in range(2):
        alone = episode_rewards(collate_targets([targets[b]], "cpu"), acts[:, b : b + 1])
        for p, q in zip(both, alone, strict=True):
            assert torch.allclose(p.total[b], q.total[0], atol=1e-6)
            assert torch.allclose(p.split[b], q.split[0], atol=1e-6)


def canonical(targets):
    rings = []
    for i, q in zip(targets.ring_instance, targets.ring_pixel, strict=True):
        order = np.lexsort((q, i))
        rings.append((i[order].tolist(), q[order].tolist()))
    return (
        targets.shape,
        targets.instance.tolist(),
        targets.interior.tolist(),
        targets.interior_size.tolist(),
        rings,
        [n.tolist() for n in targets.neighbours],
    )


@pytest.mark.parametrize(
    "shape,flips,k,axes",
    [
        ((9, 12), (0,), 0, (0, 1)),
        ((9, 12), (1,), 1, (0, 1)),
        ((9, 12), (0, 1), 3, (-2, -1)),
        ((10, 10), (), 2, (1, 0)),
        ((4, 6, 6), (0, 2), 1, (1, 2)),
    ],
)
def test_transformed_equals_reprepared(shape, flips, k, axes):
    rng = np.random.default_rng(6)
    lab = random_labels(shape, rng, n=7)
    config = cfg(radii=(1, 2), interior_shrink=0.7)
    moved = np.rot90(np.flip(lab, flips) if flips else lab, k=k, axes=axes)
    got = prepare_targets(lab, config).transformed(flips, k, axes)
    assert canonical(got) == canonical(prepare_targets(np.ascontiguousarray(moved), config))


# --- slow reference with loops -------------------------------------------------------------
def reference_targets(lab, alpha, radii):
    """Interiors, rings, neighbours by brute-force distances (plain loops)."""
    shape = lab.shape
    ids = [int(i) for i in np.unique(lab) if i]
    padded = np.pad(lab, 1)
    all_px = [tuple(p) for p in np.argwhere(np.ones(shape, bool))]
    interior, rings = {}, {}
    for i in ids:
        obj = [tuple(p) for p in np.argwhere(lab == i)]
        outside = np.argwhere(padded != i) - 1
        depth = {p: np.sqrt(((outside - p) ** 2).sum(1)).min() for p in obj}
        keep = max(1, round(alpha * alpha * len(obj))) if alpha < 1 else len(obj)
        threshold = sorted(depth.values(), reverse=True)[keep - 1]
        interior[i] = [p for p in obj if depth[p] >= threshold]
        objarr = np.array(obj)
        for r in radii:
            rings[i, r] = [
                q for q in all_px
                if lab[q] not in (0, i) and np.sqrt(((objarr - q) ** 2).sum(1)).min() <= r
            ]
    return ids, interior, rings


def reference_rewards(lab, config, acts):
    """List over t of dicts of parts (arrays of lab.shape), from the formulas, with loops."""
    steps = len(acts)
    ids, interior, rings = reference_targets(lab, config.interior_shrink, config.radii)
    colors = [sum(acts[k].astype(int) << k for k in range(t + 1)) for t in range(steps)]
    owner = {p: i for i in ids for p in interior[i]}
    out = []
    for t in range(steps):
        parts = {n: np.zeros(lab.shape) for n in ("foreground", "background", "split", "merge")}
        c = colors[t]
        cp = colors[t - 1] if t else np.zeros_like(c)
        for p in itertools.product(*map(range, lab.shape)):
            fg, a = lab[p] > 0, bool(acts[t][p])
            if t == 0:
                mag = 1 - config.beta if fg else config.beta
                parts["foreground"][p] = mag if a == fg else -mag
                continue
            if not fg:
                parts["background"][p] = -config.beta if cp[p] == 0 and c[p] != 0 else 0.0
                continue
            inr = interior[lab[p]]
            s_now = sum(c[q] == c[p] for q in inr)
            s_before = sum(cp[q] == cp[p] for q in inr)
            n = len(inr) + 1
            parts["merge"][p] = config.w_merge * (s_now / (steps * n) - (s_before - s_now) / n)
            if p not in owner:
                continue
            i, total = owner[p], 0.0
            for r in config.radii:
                ring = rings[i, r]
                if config.split_form == "proximity":
                    m_now = sum(c[q] == c[p] for q in ring)
                    m_before = sum(cp[q] == cp[p] for q in ring)
                    n = len(ring) + 1
                    total += (m_before - m_now) / n - m_now / (steps * n)
                    continue
                neigh = sorted({int(lab[q]) for q in ring})
                if not neigh:
                    total += 1 / (steps - 1)
                    continue
                m_now = np.mean(
                    [sum(c[q] == c[p] for q in interior[j]) / (len(interior[j]) + 1)
                     for j in neigh]
                )
                m_before = np.mean(
                    [sum(cp[q] == cp[p] for q in interior[j]) / (len(interior[j]) + 1)
                     for j in neigh]
                )
                total += (m_before - m_now) - m_now / steps
            parts["split"][p] = config.w_split * total
        out.append(parts)
    return out


@pytest.mark.parametrize(
    "shape,form,alpha,radii",
    [
        ((11, 12), "instance", 0.8, (1, 3)),
        ((11, 12), "proximity", 0.8, (1, 3)),
        ((5, 6, 6), "instance", 1.0, (1, 2)),
        ((5, 6, 6), "proximity", 0.9, (2,)),
    ],
)
def test_against_loop_reference(shape, form, alpha, radii):
    rng = np.random.default_rng(7)
    lab = random_labels(shape, rng, n=6)
    lab[lab == 5] = 11  # a gap in the ids (relabelled internally)
    config = dataclasses.replace(
        cfg(), split_form=form, interior_shrink=alpha, radii=radii, w_split=2.0, beta=0.25
    )
    # make the policy's coloring partly right so the counts are not trivial
    acts = rng.random((3, *shape)) < 0.5
    acts[0] = (lab > 0) ^ (rng.random(shape) < 0.1)
    got = run(lab, config, acts)
    want = reference_rewards(lab, config, acts)
    for g, w in zip(got, want, strict=True):
        for name in w:
            assert np.allclose(g[name], w[name], atol=1e-5), name


def test_step_rewards_validates_step():
    batch = collate_targets([prepare_targets(two_squares(2), cfg())], "cpu")
    z = torch.zeros((1, 4, 8), dtype=torch.int64)
    with pytest.raises(ValueError, match="outside"):
        step_rewards(batch, z, z, z.bool(), 2, 2)
