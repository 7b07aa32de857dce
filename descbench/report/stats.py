"""Paired significance tests and confidence intervals for comparing descriptors.

Why these: scores of two descriptors on the same benchmark are paired (same pairs, same sequences),
and their units are clustered (many pairs share a 3D point; many patches share a sequence). So every
comparison gets one test that respects that dependence: UBC FPR95 a *paired cluster bootstrap* over 3D
points (p = (k+1)/(B+1) from the null-centred resamples), HPatches a Wilcoxon signed-rank test over
sequences, and, where both methods have at least three seeds, a paired t-test over seeds instead.
Intervals come from the same cluster bootstrap (HPatches: sequences resampled within illumination /
viewpoint). Holm's step-down correction controls the family-wise error within each table; ``holm_floor``
says whether a table's tests can reach significance at all (a bootstrap of B resamples cannot give p below
1/(B+1), a Wilcoxon test over n sequences not below 2/2^n).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from descbench.errors import DescbenchError

RECALL_POINT = 0.95
LEVELS = ("easy", "hard", "tough")


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values (step-down, monotone, capped at 1); NaN entries stay NaN, uncounted."""
    p = np.asarray(pvalues, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return adjusted
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, (m - rank) * p[idx])
        adjusted[idx] = min(1.0, running)
    return adjusted


def weighted_fpr95(order: np.ndarray, is_match: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """FPR95 (HardNet convention) of one ranking under many pair weightings at once.

    ``order`` sorts the pairs by (distance, is_match) - non-matches first among ties, as
    descbench.evaluate.fpr95 does; ``weights`` is (B, M) in the original pair order. With unit
    weights this equals fpr95(..., convention="hardnet").
    """
    w = weights[:, order]
    y = is_match[order].astype(bool)
    pos_w = np.where(y, w, 0.0)
    neg_w = w - pos_w
    cum_pos = np.cumsum(pos_w, axis=1)
    cum_neg = np.cumsum(neg_w, axis=1)
    total_pos = cum_pos[:, -1]
    total_neg = cum_neg[:, -1]
    reached = cum_pos >= RECALL_POINT * total_pos[:, None] - 1e-9 * total_pos[:, None]
    first = np.argmax(reached, axis=1)
    rows = np.arange(len(w))
    with np.errstate(invalid="ignore", divide="ignore"):
        return cum_neg[rows, first] / total_neg


def ranking(distances: np.ndarray, is_match: np.ndarray) -> np.ndarray:
    """The pair order weighted_fpr95 expects: by distance, non-matches first among ties."""
    return np.lexsort((np.asarray(is_match), np.asarray(distances)))


@dataclass
class UBCGroup:
    """One UBC pair list (one test scene) and the distance vectors of every descriptor run on it.

    ``distances`` holds one vector per run (a method, train set and seed) in the pair list's order;
    ``ubc_bootstrap`` scores all of them under the same resamples of the scene's 3D points, so any two
    runs can be compared pairwise afterwards.
    """

    point1: np.ndarray
    point2: np.ndarray
    is_match: np.ndarray
    distances: list[np.ndarray] = field(default_factory=list)


def _pair_weights(point1, point2, is_match, rng, n_boot):
    """Cluster-bootstrap pair weights: 3D points drawn with replacement.

    A matching pair belongs to one point and gets that point's draw count; a non-matching pair links
    two points and gets the product of their counts (the two-way "product" bootstrap).
    """
    points, inverse = np.unique(np.concatenate([point1, point2]), return_inverse=True)
    idx1, idx2 = inverse[: len(point1)], inverse[len(point1):]
    n = len(points)
    counts = np.empty((n_boot, n), dtype=np.float64)
    for b in range(n_boot):
        counts[b] = np.bincount(rng.integers(0, n, size=n), minlength=n)
    same = np.asarray(is_match).astype(bool) | (idx1 == idx2)
    return np.where(same, counts[:, idx1], counts[:, idx1] * counts[:, idx2])


def ubc_bootstrap(group: UBCGroup, n_boot: int, rng: np.random.Generator, chunk: int = 32) -> np.ndarray:
    """(n_boot, runs) FPR95 of every run of ``group`` under the same 3D-point resamples."""
    if not group.distances:
        raise DescbenchError("UBC bootstrap: no descriptor run to score")
    orders = [ranking(d, group.is_match) for d in group.distances]
    out = np.empty((n_boot, len(orders)))
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        weights = _pair_weights(group.point1, group.point2, group.is_match, rng, size)
        for k, order in enumerate(orders):
            out[start:start + size, k] = weighted_fpr95(order, group.is_match, weights)
    return out


def stratified_sequence_weights(categories: np.ndarray, n_boot: int,
                                rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_seq) draw counts: sequences resampled with replacement within each category."""
    categories = np.asarray(categories)
    weights = np.zeros((n_boot, len(categories)))
    for cat in np.unique(categories):
        members = np.flatnonzero(categories == cat)
        draws = rng.integers(0, len(members), size=(n_boot, len(members)))
        for b in range(n_boot):
            weights[b, members] = np.bincount(draws[b], minlength=len(members))
    return weights


def matching_aggregate(per_seq_level: np.ndarray, categories: np.ndarray,
                       weights: np.ndarray) -> np.ndarray:
    """HPatches matching mAP under sequence weights: mean over (category, level) of the weighted mean
    over that category's sequences. ``per_seq_level`` is (n_seq, 3) (mean AP over images)."""
    parts = []
    for cat in np.unique(categories):
        members = categories == cat
        w = weights[:, members]
        parts.append((w @ per_seq_level[members]) / w.sum(axis=1, keepdims=True))
    return np.mean(np.stack(parts, axis=1), axis=(1, 2))


def retrieval_aggregate(ap_sum: np.ndarray, ap_count: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """HPatches retrieval mAP under sequence weights: mean over (level, pool) of the weighted mean over
    queries. ``ap_sum``/``ap_count`` are (n_seq, n_level, n_pool) sums and counts of query APs."""
    num = np.einsum("bs,slp->blp", weights, ap_sum)
    den = np.einsum("bs,slp->blp", weights, ap_count)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(num / den, axis=(1, 2))


def percentile_interval(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_pvalue(samples: np.ndarray, observed: float) -> float:
    """Two-sided bootstrap p-value of "no difference": p = (k + 1) / (B + 1), where k counts the
    resampled differences at least as far from the observed one as the observed one is from zero
    (the resamples centred on the null, Davison & Hinkley 1997, §4.4). Never below 1/(B + 1)."""
    samples = samples[np.isfinite(samples)]
    if samples.size == 0 or not np.isfinite(observed):
        return float("nan")
    k = int(np.count_nonzero(np.abs(samples - observed) >= abs(observed)))
    return (k + 1) / (samples.size + 1)


def bootstrap_min_p(n_boot: int) -> float:
    """The smallest p ``bootstrap_pvalue`` can give with ``n_boot`` resamples."""
    return 1.0 / (n_boot + 1)


def wilcoxon_min_p(n_pairs: int) -> float:
    """The smallest two-sided exact Wilcoxon signed-rank p over ``n_pairs`` pairs: every difference of
    one sign, 2 / 2^n."""
    return 2.0 / 2.0 ** n_pairs


def holm_floor(min_pvalues) -> np.ndarray:
    """The smallest Holm-adjusted p each test of a family can reach, given the smallest raw p each test
    can give (0 where unbounded, e.g. a t-test).

    For test i, the tests whose floor is at least i's (i included), S_i, all have p >= floor_i; the
    first of them in Holm's order is multiplied by at least |S_i|, and i's adjusted p is at least that
    product, so it is >= |S_i| * floor_i.
    """
    floors = np.asarray(min_pvalues, dtype=np.float64)
    if floors.size == 0:
        return floors
    at_least = (floors[None, :] >= floors[:, None]).sum(axis=1)
    return np.minimum(1.0, at_least * floors)


def wilcoxon_paired(a, b) -> tuple[float, float]:
    """Wilcoxon signed-rank (two-sided) of paired values; identical inputs give statistic 0, p 1."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not np.any(a - b):
        return 0.0, 1.0
    result = sps.wilcoxon(a, b, alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def paired_t(a, b) -> tuple[float, float]:
    """Paired t-test over seeds; NaN when fewer than two pairs or no variation in the differences."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = a - b
    if diff.size < 2 or np.allclose(diff, diff[0]):
        return float("nan"), float("nan")
    result = sps.ttest_rel(a, b)
    return float(result.statistic), float(result.pvalue)
