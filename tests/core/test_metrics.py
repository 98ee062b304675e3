"""Metrics on small hand-computed cases (expected values derived by hand in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_colorrl.core import metrics as M
from napari_colorrl.core.metrics import METRIC_NAMES, evaluate, mean_metrics


def approx(x: float) -> object:
    return pytest.approx(x, abs=1e-12)


def two_squares() -> np.ndarray:
    """Two touching 2x2 squares (labels 1 and 2) in a 4x4 image."""
    a = np.zeros((4, 4), dtype=np.uint16)
    a[:2, :2] = 1
    a[:2, 2:] = 2
    return a


def one_rect() -> np.ndarray:
    """One 2x4 rectangle (label 5) covering both squares of ``two_squares``."""
    a = np.zeros((4, 4), dtype=np.int32)
    a[:2, :] = 5
    return a


def row(spans: list[tuple[int, int, int]], width: int = 20) -> np.ndarray:
    """1 x width label image; spans are (label, first col, last col inclusive)."""
    a = np.zeros((1, width), dtype=np.int64)
    for lab, c0, c1 in spans:
        a[0, c0 : c1 + 1] = lab
    return a


def test_metric_names_and_evaluate_keys():
    assert METRIC_NAMES == (
        "sbd", "dic", "abs_dic", "ap50", "ap75", "map", "mwcov", "mucov",
        "avg_fp", "avg_fn", "voi_split", "voi_merge", "arand", "aji",
    )  # fmt: skip
    res = evaluate(two_squares(), two_squares())
    assert tuple(res) == METRIC_NAMES
    assert all(isinstance(v, float) for v in res.values())


def test_identical():
    gt = two_squares()
    r = evaluate(gt, gt)
    for k in ("sbd", "ap50", "ap75", "map", "mwcov", "mucov", "aji"):
        assert r[k] == approx(1.0), k
    for k in ("dic", "abs_dic", "avg_fp", "avg_fn", "voi_split", "voi_merge", "arand"):
        assert r[k] == approx(0.0), k


def test_merge_two_touching_squares():
    r = evaluate(one_rect(), two_squares())
    assert r["dic"] == -1.0 and r["abs_dic"] == 1.0
    # Dice(rect, square) = 2*4 / (8+4) = 2/3 both ways -> SBD = 2/3
    assert r["sbd"] == approx(2 / 3)
    # IoU(rect, square) = 4/8 = 1/2 exactly: one of the two squares is matched at 0.5
    # TP=1, FP=0, FN=1 -> AP50 = 1/2; AP75 = 0; mAP = (1/2)/10
    assert r["ap50"] == approx(1 / 2)
    assert r["ap75"] == approx(0.0)
    assert r["map"] == approx(1 / 20)
    assert r["mucov"] == approx(1 / 2) and r["mwcov"] == approx(1 / 2)
    assert r["avg_fp"] == approx(0.0) and r["avg_fn"] == approx(1 / 2)
    # over gt foreground (8 px): H(pred|gt) = 0; H(gt|pred) = -2 * 4/8 * log2(4/8) = 1 bit
    assert r["voi_split"] == approx(0.0)
    assert r["voi_merge"] == approx(1.0)
    assert r["voi_merge"] > 0
    # sum n^2 = 16+16 = 32, sum a^2 = 32, sum b^2 = 64 -> 1 - 64/96 = 1/3
    assert r["arand"] == approx(1 / 3)
    # each square picks the rect: C = 4+4, U = 8+8 -> 1/2
    assert r["aji"] == approx(1 / 2)


def test_split_one_object_in_two():
    r = evaluate(two_squares(), one_rect())
    assert r["dic"] == 1.0 and r["abs_dic"] == 1.0
    assert r["sbd"] == approx(2 / 3)
    assert r["voi_split"] == approx(1.0)
    assert r["voi_merge"] == approx(0.0)
    assert r["arand"] == approx(1 / 3)  # 1 - 2*32 / (64+32)
    # TP=1 (tie at IoU 1/2), FP=1, FN=0
    assert r["ap50"] == approx(1 / 2)
    assert r["avg_fp"] == approx(1 / 2) and r["avg_fn"] == approx(0.0)
    # rect picks square 1 (IoU 1/2, lowest id on tie): C = 4, U = 8 + unused square 4 -> 1/3
    assert r["aji"] == approx(1 / 3)


def test_missing_object():
    gt = row([(1, 0, 3), (2, 6, 7)])  # areas 4 and 2
    pred = row([(1, 0, 3)])
    r = evaluate(pred, gt)
    assert r["dic"] == -1.0
    # BD(pred,gt) = 1, BD(gt,pred) = (1 + 0)/2 -> 1/2
    assert r["sbd"] == approx(1 / 2)
    assert r["ap50"] == approx(1 / 2)  # TP=1, FN=1
    assert r["avg_fn"] == approx(1 / 2) and r["avg_fp"] == approx(0.0)
    assert r["mucov"] == approx(1 / 2)  # (1 + 0)/2
    assert r["mwcov"] == approx(2 / 3)  # (4*1 + 2*0)/6
    assert r["aji"] == approx(4 / 6)  # C = 4, U = 4 + 2
    # the missed object lies in pred background, which is one segment of its own: no VOI/ARAND
    assert r["voi_split"] == approx(0.0) and r["voi_merge"] == approx(0.0)
    assert r["arand"] == approx(0.0)


def test_extra_object():
    gt = row([(1, 0, 3)])
    pred = row([(1, 0, 3), (2, 8, 11)])
    r = evaluate(pred, gt)
    assert r["dic"] == 1.0
    assert r["sbd"] == approx(1 / 2)  # BD(pred,gt) = (1+0)/2
    assert r["ap50"] == approx(1 / 2)  # TP=1, FP=1
    assert r["avg_fp"] == approx(1 / 2) and r["avg_fn"] == approx(0.0)
    assert r["mucov"] == approx(1.0) and r["mwcov"] == approx(1.0)
    assert r["aji"] == approx(1 / 2)  # C = 4, U = 4 + unused 4
    # outside gt foreground: ignored by VOI and ARAND
    assert r["voi_split"] == 0.0 and r["voi_merge"] == 0.0 and r["arand"] == 0.0


def test_hand_computed_ap_aji_coverage():
    # gt: g1 cols 0-9 (10 px), g2 cols 12-15 (4 px), g3 cols 18-19 (2 px)
    # pred: p1 cols 0-6 (7 px), p3 cols 7-11 (5 px), p2 cols 12-14 (3 px)
    gt = row([(1, 0, 9), (2, 12, 15), (3, 18, 19)])
    pred = row([(1, 0, 6), (3, 7, 11), (2, 12, 14)])
    r = evaluate(pred, gt)
    # IoU: p1-g1 = 7/10, p3-g1 = 3/12 = 1/4, p2-g2 = 3/4
    # AP50: TP 2 (p1-g1, p2-g2), FP 1, FN 1 -> 2/4; AP75: TP 1 -> 1/(1+2+2) = 1/5
    assert r["ap50"] == approx(1 / 2)
    assert r["ap75"] == approx(1 / 5)
    # thresholds .5-.7 -> 1/2 (5 of them), .75 -> 1/5, .8-.95 -> 0: (5/2 + 1/5)/10 = 27/100
    assert r["map"] == approx(27 / 100)
    assert M.ap(pred, gt, 0.7) == approx(1 / 2)
    assert M.ap(pred, gt, 0.8) == approx(0.0)
    # MUCov = (7/10 + 3/4 + 0)/3 = 29/60; MWCov = (10*7/10 + 4*3/4 + 2*0)/16 = 10/16
    assert r["mucov"] == approx(29 / 60)
    assert r["mwcov"] == approx(5 / 8)
    assert r["avg_fp"] == approx(1 / 3) and r["avg_fn"] == approx(1 / 3)
    # AJI: g1->p1 (C 7, U 10), g2->p2 (C 3, U 4), g3 none (U 2), unused p3 (U 5) -> 10/21
    assert r["aji"] == approx(10 / 21)
    # Dice: p1-g1 = 14/17, p2-g2 = 6/7, p3-g1 = 6/15; BD(gt,pred) = (14/17 + 6/7 + 0)/3 is the min
    assert r["sbd"] == approx((14 / 17 + 6 / 7) / 3)
    assert r["sbd"] == approx(200 / 357)
    # gt fg (16 px) pairs (pred,gt): (p1,g1)=7 (p3,g1)=3 (p2,g2)=3 (0,g2)=1 (0,g3)=2;
    # pred marginals there: p1 7, p3 3, p2 3, bg 3
    split = -(7 * math.log2(7 / 10) + 3 * math.log2(3 / 10) + 3 * math.log2(3 / 4)
              + 1 * math.log2(1 / 4)) / 16  # fmt: skip
    merge = -(1 * math.log2(1 / 3) + 2 * math.log2(2 / 3)) / 16
    assert r["voi_split"] == approx(split)
    assert r["voi_merge"] == approx(merge)
    # sum n^2 = 49+9+9+1+4 = 72; sum a^2 = 100+16+4 = 120; sum b^2 = 49+9+9+9 = 76
    # ARAND = 1 - 144/196 = 13/49
    assert r["arand"] == approx(13 / 49)
    # the individual functions agree with evaluate
    for name in METRIC_NAMES:
        assert getattr(M, name)(pred, gt) == approx(r[name]), name


def test_permutation_and_dtype_invariance():
    gt = row([(1, 0, 9), (2, 12, 15), (3, 18, 19)])
    pred = row([(1, 0, 6), (3, 7, 11), (2, 12, 14)])
    ref = evaluate(pred, gt)
    perm_p = np.array([0, 70000, 9, 2**40])  # sparse huge ids -> np.unique path
    perm_g = np.array([0, 3, 1, 2])
    for p, g in [
        (perm_p[pred], perm_g[gt].astype(np.uint8)),
        (perm_p[pred].astype(np.uint64), gt.astype(np.int16)),
        (pred.astype(np.float32), gt),  # integral floats are accepted
    ]:
        res = evaluate(p, g)
        for k in METRIC_NAMES:
            assert res[k] == approx(ref[k]), k


def test_background_only():
    empty = np.zeros((5, 5), dtype=np.uint8)
    r = evaluate(empty, empty)
    for k in ("sbd", "ap50", "ap75", "map", "mwcov", "mucov", "aji"):
        assert r[k] == 1.0, k
    for k in ("dic", "abs_dic", "avg_fp", "avg_fn", "voi_split", "voi_merge", "arand"):
        assert r[k] == 0.0, k

    gt = np.zeros((4, 4), dtype=np.uint8)
    gt[:2] = two_squares()[:2]
    r = evaluate(np.zeros_like(gt), gt)  # nothing predicted
    assert r["sbd"] == 0.0 and r["ap50"] == 0.0 and r["aji"] == 0.0 and r["mucov"] == 0.0
    assert r["dic"] == -2.0 and r["avg_fn"] == 1.0 and r["avg_fp"] == 0.0
    assert r["voi_merge"] == approx(1.0)  # both squares fall in the one background segment
    assert r["arand"] == approx(1 / 3)

    r = evaluate(gt, np.zeros_like(gt))  # nothing in the ground truth
    assert r["sbd"] == 0.0 and r["ap50"] == 0.0 and r["aji"] == 0.0 and r["mwcov"] == 0.0
    assert r["dic"] == 2.0 and r["avg_fp"] == 1.0 and r["avg_fn"] == 0.0
    assert r["voi_split"] == 0.0 and r["voi_merge"] == 0.0 and r["arand"] == 0.0


def test_3d_merge():
    gt = np.zeros((2, 3, 3), dtype=np.uint32)
    gt[0, :2, :2] = 1  # 4 voxels
    gt[1, :2, :2] = 2  # 4 voxels, touching in z
    pred = (gt > 0).astype(np.uint8) * 7
    r = evaluate(pred, gt)
    assert r["dic"] == -1.0
    assert r["sbd"] == approx(2 / 3)
    assert r["voi_merge"] == approx(1.0) and r["voi_split"] == approx(0.0)
    assert r["arand"] == approx(1 / 3)
    assert r["aji"] == approx(1 / 2)
    assert evaluate(gt, gt)["sbd"] == 1.0


def test_ap_low_threshold_uses_assignment():
    # g1 cols 0-9, g2 cols 10-19; p2 cols 0-3 (IoU g1 4/10), p1 cols 4-13 (IoU g1 6/14, g2 4/16)
    gt = row([(1, 0, 9), (2, 10, 19)])
    pred = row([(2, 0, 3), (1, 4, 13)])
    # greedy by IoU would take p1-g1 and leave 1 match; the maximum matching is p1-g2, p2-g1
    assert M.ap(pred, gt, 0.25) == approx(1.0)
    assert M.ap(pred, gt, 0.3) == approx(1 / 3)  # only p1-g1 (3/7) and p2-g1 (2/5): TP 1


def test_shape_mismatch_and_dtype_errors():
    with pytest.raises(ValueError, match="same shape"):
        evaluate(np.zeros((4, 4), int), np.zeros((4, 5), int))
    with pytest.raises(ValueError, match="same shape"):
        M.sbd(np.zeros((2, 4, 4), int), np.zeros((4, 4), int))
    with pytest.raises(TypeError):
        evaluate(np.full((2, 2), 0.5), np.zeros((2, 2), int))


def test_mean_metrics():
    a = evaluate(two_squares(), two_squares())
    b = evaluate(one_rect(), two_squares())
    m = mean_metrics([a, b])
    assert tuple(m) == METRIC_NAMES
    assert m["sbd"] == approx((1 + 2 / 3) / 2)
    assert m["dic"] == approx(-1 / 2)
    assert m["voi_merge"] == approx(1 / 2)
    with pytest.raises(ValueError):
        mean_metrics([])


def _naive(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Loop-per-object reference for SBD, MUCov, MWCov and AJI."""
    ps, gs = [p for p in np.unique(pred) if p], [g for g in np.unique(gt) if g]
    inter = np.array([[np.sum((pred == p) & (gt == g)) for g in gs] for p in ps], float)
    pa = np.array([np.sum(pred == p) for p in ps], float)
    ga = np.array([np.sum(gt == g) for g in gs], float)
    iou = inter / (pa[:, None] + ga[None, :] - inter)
    dice = 2 * inter / (pa[:, None] + ga[None, :])
    best = iou.max(0)
    c = u = 0.0
    used = set()
    for j in range(len(gs)):
        if inter[:, j].max() > 0:
            i = int(np.argmax(iou[:, j]))
            used.add(i)
            c, u = c + inter[i, j], u + ga[j] + pa[i] - inter[i, j]
        else:
            u += ga[j]
    u += sum(pa[i] for i in range(len(ps)) if i not in used)
    return {
        "sbd": min(dice.max(1).mean(), dice.max(0).mean()),
        "mucov": best.mean(),
        "mwcov": (best * ga).sum() / ga.sum(),
        "aji": c / u,
    }


@pytest.mark.parametrize("seed", range(4))
def test_random_against_loop_reference_and_skimage(seed):
    from skimage.measure import label
    from skimage.metrics import variation_of_information

    rng = np.random.default_rng(seed)
    shape = (10, 10) if seed % 2 else (3, 6, 6)
    gt = label(rng.random(shape) > 0.5)
    pred = label(rng.random(shape) > 0.5)
    r = evaluate(pred, gt)
    for k, v in _naive(pred, gt).items():
        assert r[k] == approx(v), k
    m = gt > 0
    # skimage returns [H(gt | pred), H(pred | gt)] in bits; pred 0 shifted to an ordinary id
    h_gt_given_pred, h_pred_given_gt = variation_of_information(pred[m] + 1, gt[m])
    assert r["voi_split"] == approx(h_pred_given_gt)
    assert r["voi_merge"] == approx(h_gt_given_pred)


@pytest.mark.parametrize("seed", range(3))
def test_min_sizes_from_one_table_match_removing_objects(seed):
    """Every metric of ``evaluate_min_sizes`` at each size equals ``evaluate`` of the image
    with the small objects removed (``remove_small``), in 2D and 3D, sizes that drop none,
    some and all predicted objects included."""
    from skimage.measure import label

    from napari_colorrl.core.method.postprocess import remove_small

    rng = np.random.default_rng(seed)
    shape = (24, 24) if seed % 2 == 0 else (4, 10, 10)
    gt = label(rng.random(shape) > 0.45)
    pred = label(rng.random(shape) > 0.45) * 3  # ids need not be sequential
    sizes = [0, 1, 2, 3, 5, 8, 10**6]
    rows = M.evaluate_min_sizes(pred, gt, sizes)
    assert len(rows) == len(sizes)
    for size, got in zip(sizes, rows):
        want = evaluate(remove_small(pred, size), gt)
        assert list(got) == list(METRIC_NAMES)
        for name in METRIC_NAMES:
            assert got[name] == approx(want[name]), (size, name)
    assert rows[-1]["dic"] == -len(np.unique(gt)) + 1  # every predicted object dropped
    only = M.evaluate_min_sizes(pred, gt, [4], ["ap50", "sbd"])
    assert list(only[0]) == ["ap50", "sbd"]
    with pytest.raises(ValueError, match="unknown metric"):
        M.evaluate_min_sizes(pred, gt, [4], ["sbd", "f1"])
