"""Instance segmentation metrics (CVPPP, KITTI, CREMI/EM, nuclei), numpy/scipy only.

Every metric is derived from one sparse contingency table (overlap counts of each pair of
predicted and ground-truth ids that touch), built once per image pair by :class:`_Overlap`;
``evaluate`` computes all of them from a single table, and ``evaluate_min_sizes`` the
metrics at every candidate minimum object size from one.

Conventions: label 0 is background, every other value is one object (ids need not be
sequential); ``pred`` and ``gt`` are integer arrays of the same shape, 2D or 3D (any nD works).
"Dice" of two objects is ``2|A∩B| / (|A| + |B|)``, "IoU" is ``|A∩B| / |A∪B|``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from scipy.optimize import linear_sum_assignment

METRIC_NAMES: tuple[str, ...] = (
    "sbd", "dic", "abs_dic", "ap50", "ap75", "map", "mwcov", "mucov",
    "avg_fp", "avg_fn", "voi_split", "voi_merge", "arand", "aji",
)  # fmt: skip

#: IoU thresholds averaged by :func:`map` (0.5, 0.55, ..., 0.95; rounded so 0.55 is exact).
AP_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


def _as_labels(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool or np.issubdtype(a.dtype, np.integer):
        return a
    if np.issubdtype(a.dtype, np.floating) and np.all(np.mod(a, 1) == 0):
        return a.astype(np.int64)
    raise TypeError(f"{name} must be an integer label array, got dtype {a.dtype}")


def _relabel(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Map the ids of a flat label array to 0..n-1 with 0 -> 0; return (new ids, n)."""
    if x.dtype == bool:
        x = x.view(np.uint8)
    if x.size and x.min() >= 0 and int(x.max()) < max(2**20, 4 * x.size):
        present = np.bincount(x.astype(np.intp, copy=False))  # O(N) lookup table
        present[0] = 1
        present = present > 0
        lut = np.cumsum(present) - 1
        return lut[x], int(present.sum())
    ids, inv = np.unique(x, return_inverse=True)
    inv = inv.ravel()
    if ids.size == 0 or ids[0] != 0:
        if ids.size and 0 in ids:  # negative ids present: move 0 to the front
            zero = int(np.searchsorted(ids, 0))
            inv = np.where(inv == zero, 0, inv + (inv < zero))
            return inv, int(ids.size)
        return inv + 1, int(ids.size) + 1
    return inv, int(ids.size)


class _Overlap:
    """Sparse contingency table of ``pred`` x ``gt`` plus object areas and pair IoUs.

    Index 0 is background on both sides. ``pp, gg, nn``: every (pred, gt) index pair with a
    non-zero overlap and its pixel count; ``op, og, on, iou``: the same restricted to object
    pairs (both indices > 0).
    """

    def __init__(self, pred: np.ndarray, gt: np.ndarray) -> None:
        pred, gt = _as_labels(pred, "pred"), _as_labels(gt, "gt")
        if pred.shape != gt.shape:
            raise ValueError(
                f"pred and gt must have the same shape, got {pred.shape} and {gt.shape}"
            )
        p, n_p = _relabel(pred.ravel())
        g, n_g = _relabel(gt.ravel())
        self._set_table(p.astype(np.int64) * n_g + g, None, n_p, n_g)

    def _set_table(self, key: np.ndarray, weights: np.ndarray | None, n_p: int,
                   n_g: int) -> None:
        """The table from the pair keys ``pred * n_g + gt``: one per pixel, or (with
        ``weights``) one per table entry, entries of the same pair summed."""
        if n_p * n_g <= max(2**22, 2 * key.size):
            counts = np.bincount(key, weights=weights, minlength=n_p * n_g)
            keys = np.flatnonzero(counts)
            counts = counts[keys]
        elif weights is None:
            keys, counts = np.unique(key, return_counts=True)
        else:
            keys, inverse = np.unique(key, return_inverse=True)
            counts = np.bincount(inverse.ravel(), weights=weights)
        self.pp, self.gg, self.nn = keys // n_g, keys % n_g, counts.astype(np.int64)
        self.area_p = np.bincount(self.pp, weights=self.nn, minlength=n_p)
        self.area_g = np.bincount(self.gg, weights=self.nn, minlength=n_g)
        self.n_pred, self.n_gt = n_p - 1, n_g - 1
        obj = (self.pp > 0) & (self.gg > 0)
        self.op, self.og, self.on = self.pp[obj], self.gg[obj], self.nn[obj].astype(float)
        self.iou = self.on / (self.area_p[self.op] + self.area_g[self.og] - self.on)
        self._tp: dict[float, int] = {}
        self._voi: tuple[float, float] | None = None

    def without_small_pred(self, min_size: int) -> _Overlap:
        """The table of ``remove_small(pred, min_size)``: every predicted object smaller than
        ``min_size`` pixels becomes background, the rest keep their overlaps (ids compacted)."""
        keep = self.area_p >= max(int(min_size), 1)
        keep[0] = True
        new_id = np.where(keep, np.cumsum(keep) - 1, 0)  # dropped objects: background
        n_p, n_g = int(keep.sum()), self.n_gt + 1
        out = _Overlap.__new__(_Overlap)
        out._set_table(new_id[self.pp] * n_g + self.gg, self.nn.astype(float), n_p, n_g)
        return out

    # -- helpers -------------------------------------------------------------------------

    def _best_per(self, side: str) -> np.ndarray:
        """Best IoU of each object of ``side`` ("pred" or "gt") with any object of the other."""
        idx, n = (self.op, self.n_pred) if side == "pred" else (self.og, self.n_gt)
        best = np.zeros(n + 1)
        np.maximum.at(best, idx, self.iou)
        return best[1:]

    def n_matches(self, threshold: float) -> int:
        """Size of a maximum one-to-one matching of objects with IoU >= ``threshold``."""
        if threshold not in self._tp:
            self._tp[threshold] = self._match(threshold)
        return self._tp[threshold]

    def _match(self, threshold: float) -> int:
        ok = self.iou >= threshold
        mp, mg = self.op[ok], self.og[ok]
        _, ip, cp = np.unique(mp, return_inverse=True, return_counts=True)
        _, ig, cg = np.unique(mg, return_inverse=True, return_counts=True)
        if (cp <= 1).all() and (cg <= 1).all():  # always the case for threshold > 0.5
            return int(mp.size)
        # Ties (IoU == 0.5 exactly, or threshold < 0.5): maximum-cardinality assignment on the
        # objects that have a candidate; IoU only breaks ties between equally large matchings.
        cost = np.zeros((cp.size, cg.size))
        cost[ip.ravel(), ig.ravel()] = -1.0 - self.iou[ok] / (mp.size + 1)
        rows, cols = linear_sum_assignment(cost)
        return int((cost[rows, cols] < 0).sum())

    def _fg_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Counts over gt-foreground pixels: pair counts, their pred/gt indices, pred marginal."""
        fg = self.gg > 0
        nn, pp, gg = self.nn[fg].astype(float), self.pp[fg], self.gg[fg]
        marg_p = np.bincount(pp, weights=nn, minlength=self.n_pred + 1)
        return nn, pp, gg, marg_p

    # -- metrics -------------------------------------------------------------------------

    def sbd(self) -> float:
        if self.n_pred == 0 and self.n_gt == 0:
            return 1.0
        if self.n_pred == 0 or self.n_gt == 0:
            return 0.0
        # Dice = 2 IoU / (1 + IoU) is monotone in IoU, so the best Dice is that of the best IoU.
        best = (self._best_per("pred"), self._best_per("gt"))
        return min(float(np.mean(2 * b / (1 + b))) for b in best)

    def dic(self) -> float:
        return float(self.n_pred - self.n_gt)

    def ap(self, threshold: float) -> float:
        if self.n_pred == 0 and self.n_gt == 0:
            return 1.0
        tp = self.n_matches(threshold)
        return tp / (self.n_pred + self.n_gt - tp)

    def map(self) -> float:
        return float(np.mean([self.ap(t) for t in AP_THRESHOLDS]))

    def coverage(self, weighted: bool) -> float:
        if self.n_gt == 0:
            return 1.0 if self.n_pred == 0 else 0.0
        best = self._best_per("gt")
        if weighted:
            area = self.area_g[1:]
            return float((area * best).sum() / area.sum())
        return float(best.mean())

    def avg_fp(self) -> float:
        return 0.0 if self.n_pred == 0 else 1.0 - self.n_matches(0.5) / self.n_pred

    def avg_fn(self) -> float:
        return 0.0 if self.n_gt == 0 else 1.0 - self.n_matches(0.5) / self.n_gt

    def voi(self) -> tuple[float, float]:
        if self._voi is None:
            nn, pp, gg, marg_p = self._fg_table()
            total = nn.sum()
            if total == 0:
                self._voi = (0.0, 0.0)
            else:
                split = -float((nn * np.log2(nn / self.area_g[gg])).sum() / total)
                merge = -float((nn * np.log2(nn / marg_p[pp])).sum() / total)
                self._voi = (max(split, 0.0), max(merge, 0.0))
        return self._voi

    def arand(self) -> float:
        nn, _, _, marg_p = self._fg_table()
        if nn.size == 0:
            return 0.0
        sum_ab = (nn**2).sum()
        sum_a = (self.area_g[1:] ** 2).sum()
        sum_b = (marg_p**2).sum()
        return max(0.0, float(1.0 - 2.0 * sum_ab / (sum_a + sum_b)))

    def aji(self) -> float:
        if self.n_pred == 0 and self.n_gt == 0:
            return 1.0
        # Best pred of each gt object: sort pairs by gt, IoU, then -pred id (lowest id on ties).
        order = np.lexsort((-self.op, self.iou, self.og))
        og = self.og[order]
        last = np.ones(og.size, dtype=bool)
        last[:-1] = og[1:] != og[:-1]
        best = order[last]  # one pair per gt object that touches any pred object
        inter = self.on[best].sum()
        union = self.area_g[1:].sum() + (self.area_p[self.op[best]] - self.on[best]).sum()
        used = np.zeros(self.n_pred + 1, dtype=bool)
        used[self.op[best]] = True
        union += self.area_p[1:][~used[1:]].sum()
        return float(inter / union) if union > 0 else 1.0


# -- public API ----------------------------------------------------------------------------


def sbd(pred: np.ndarray, gt: np.ndarray) -> float:
    """Symmetric best Dice (CVPPP): ``min(BD(pred, gt), BD(gt, pred))``.

    ``BD(a, b) = 1/M sum_i max_j Dice(a_i, b_j)`` over the M objects ``a_i`` of ``a``.
    Both images empty (no objects): 1.0; exactly one empty: 0.0.
    """
    return _Overlap(pred, gt).sbd()


def dic(pred: np.ndarray, gt: np.ndarray) -> float:
    """Difference in count: ``#objects(pred) - #objects(gt)`` (signed)."""
    return _Overlap(pred, gt).dic()


def abs_dic(pred: np.ndarray, gt: np.ndarray) -> float:
    """``|DiC|`` = ``|#objects(pred) - #objects(gt)|``."""
    return abs(_Overlap(pred, gt).dic())


def ap(pred: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> float:
    """Average precision as in DSB2018 / StarDist: ``TP / (TP + FP + FN)``.

    TP is the size of a maximum one-to-one matching of pred and gt objects with
    ``IoU >= threshold`` (unique for threshold > 0.5; ties resolved by linear assignment);
    FP = #pred - TP, FN = #gt - TP. Both images empty: 1.0.
    """
    return _Overlap(pred, gt).ap(threshold)


def ap50(pred: np.ndarray, gt: np.ndarray) -> float:
    """:func:`ap` at IoU threshold 0.5."""
    return _Overlap(pred, gt).ap(0.5)


def ap75(pred: np.ndarray, gt: np.ndarray) -> float:
    """:func:`ap` at IoU threshold 0.75."""
    return _Overlap(pred, gt).ap(0.75)


def map(pred: np.ndarray, gt: np.ndarray) -> float:  # shadows the builtin: the metric's usual name
    """Mean of :func:`ap` over the IoU thresholds 0.5, 0.55, ..., 0.95."""
    return _Overlap(pred, gt).map()


def mwcov(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean weighted coverage (Ren & Zemel, KITTI).

    ``sum_i |G_i| max_j IoU(G_i, P_j) / sum_i |G_i|`` over gt objects ``G_i``.
    No gt objects: 1.0 if pred has none either, else 0.0.
    """
    return _Overlap(pred, gt).coverage(weighted=True)


def mucov(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean unweighted coverage (Ren & Zemel, KITTI).

    ``1/N sum_i max_j IoU(G_i, P_j)`` over the N gt objects. No gt objects: 1.0 if pred has
    none either, else 0.0.
    """
    return _Overlap(pred, gt).coverage(weighted=False)


def avg_fp(pred: np.ndarray, gt: np.ndarray) -> float:
    """Average false positive rate (Ren & Zemel): share of pred objects left unmatched.

    Matching: maximum one-to-one matching at IoU >= 0.5 (as :func:`ap`). ``1 - TP / #pred``;
    0.0 when pred has no objects.
    """
    return _Overlap(pred, gt).avg_fp()


def avg_fn(pred: np.ndarray, gt: np.ndarray) -> float:
    """Average false negative rate (Ren & Zemel): share of gt objects left unmatched.

    Matching as :func:`avg_fp`. ``1 - TP / #gt``; 0.0 when gt has no objects.
    """
    return _Overlap(pred, gt).avg_fn()


def voi_split(pred: np.ndarray, gt: np.ndarray) -> float:
    """VOI split (CREMI): conditional entropy ``H(pred | gt)`` in bits (log2).

    Computed over the pixels where ``gt != 0``; pred background 0 is an ordinary segment
    there. Grows when one gt object is split into several pred segments. 0.0 if gt is empty.
    """
    return _Overlap(pred, gt).voi()[0]


def voi_merge(pred: np.ndarray, gt: np.ndarray) -> float:
    """VOI merge (CREMI): conditional entropy ``H(gt | pred)`` in bits (log2).

    Computed over the pixels where ``gt != 0``; pred background 0 is an ordinary segment
    there. Grows when several gt objects fall into one pred segment. 0.0 if gt is empty.
    """
    return _Overlap(pred, gt).voi()[1]


def arand(pred: np.ndarray, gt: np.ndarray) -> float:
    """Adapted Rand error (CREMI/SNEMI3D): ``1 - F`` of Rand precision and recall.

    Over the pixels where ``gt != 0``, with ``n_ij`` the overlap of pred segment i (pred 0
    counts as one segment) and gt object j, ``a_j``/``b_i`` the gt/pred marginals:
    precision = ``sum n_ij^2 / sum b_i^2``, recall = ``sum n_ij^2 / sum a_j^2``, so
    ``arand = 1 - 2 sum n_ij^2 / (sum a_j^2 + sum b_i^2)``. 0.0 if gt is empty.
    (CREMI's reference code instead counts pred-0 pixels as near-singletons.)
    """
    return _Overlap(pred, gt).arand()


def aji(pred: np.ndarray, gt: np.ndarray) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017).

    For each gt object ``G_i`` take the pred object ``P_j*`` of highest IoU (lowest id on ties;
    none if it touches no pred object); ``C = sum_i |G_i ∩ P_j*|``,
    ``U = sum_i |G_i ∪ P_j*| + sum |P_k|`` over pred objects never chosen. AJI = C / U.
    Both empty: 1.0.
    """
    return _Overlap(pred, gt).aji()


_FROM_TABLE = {
    "sbd": _Overlap.sbd,
    "dic": _Overlap.dic,
    "abs_dic": lambda ov: abs(ov.dic()),
    "ap50": lambda ov: ov.ap(0.5),
    "ap75": lambda ov: ov.ap(0.75),
    "map": _Overlap.map,
    "mwcov": lambda ov: ov.coverage(weighted=True),
    "mucov": lambda ov: ov.coverage(weighted=False),
    "avg_fp": _Overlap.avg_fp,
    "avg_fn": _Overlap.avg_fn,
    "voi_split": lambda ov: ov.voi()[0],
    "voi_merge": lambda ov: ov.voi()[1],
    "arand": _Overlap.arand,
    "aji": _Overlap.aji,
}


def _metrics(table: _Overlap, names: tuple[str, ...]) -> dict[str, float]:
    unknown = [name for name in names if name not in _FROM_TABLE]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRIC_NAMES)}")
    return {name: _FROM_TABLE[name](table) for name in names}


def evaluate(pred: np.ndarray, gt: np.ndarray,
             names: Iterable[str] = METRIC_NAMES) -> dict[str, float]:
    """The metrics ``names`` (all of :data:`METRIC_NAMES` by default), from one contingency
    table."""
    return _metrics(_Overlap(pred, gt), tuple(names))


def evaluate_min_sizes(pred: np.ndarray, gt: np.ndarray, min_sizes: Iterable[int],
                       names: Iterable[str] = METRIC_NAMES) -> list[dict[str, float]]:
    """The metrics ``names`` of ``remove_small(pred, s)`` (``method.postprocess``) for every
    size s in ``min_sizes``, from one contingency table: dropping a predicted object moves
    its overlaps to the background and leaves every other pair as it is, so no image is
    filtered or counted again per size."""
    table = _Overlap(pred, gt)
    return [_metrics(table.without_small_pred(size), tuple(names)) for size in min_sizes]


def mean_metrics(results: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over several images (keys in first-seen order; NaN ignored)."""
    results = list(results)
    if not results:
        raise ValueError("mean_metrics needs at least one result")
    keys = list(dict.fromkeys(k for r in results for k in r))
    out: dict[str, float] = {}
    for k in keys:
        vals = np.array([float(r[k]) for r in results if k in r], dtype=float)
        out[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    return out
