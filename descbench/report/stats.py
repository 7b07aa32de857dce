"""Paired significance tests and confidence intervals for comparing descriptors.

Why these: scores of two descriptors on the same benchmark are paired (same pairs, same sequences),
and their units are clustered (many pairs share a 3D point; many patches share a sequence), so
intervals come from a *paired cluster bootstrap* (UBC: 3D points resampled; HPatches: sequences
resampled within illumination / viewpoint), per-sequence differences get a Wilcoxon signed-rank test,
UBC decisions at each descriptor's own 95 %-recall threshold get an exact McNemar test, and several
seeds get a paired test over seeds. Holm's step-down correction controls the family-wise error within
each table.
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


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b and c (binomial, p = 1/2)."""
    if b < 0 or c < 0:
        raise DescbenchError(f"McNemar: discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * sps.binom.cdf(min(b, c), n, 0.5)))


def false_positives_at_recall(distances: np.ndarray, is_match: np.ndarray) -> np.ndarray:
    """Which non-matching pairs a descriptor accepts at its own 95 %-recall threshold.

    The threshold is the distance of the ceil(0.95·P)-th closest match (the HardNet FPR95 convention,
    descbench.evaluate.fpr95); a non-match is accepted when its distance is <= that threshold, so the
    mean of the result over the non-matches is FPR95.
    """
    is_match = np.asarray(is_match).astype(bool)
    positives = np.sort(np.asarray(distances, dtype=np.float64)[is_match])
    if positives.size == 0 or is_match.all():
        raise DescbenchError("McNemar: the pair list needs both matching and non-matching pairs")
    threshold = positives[int(np.ceil(RECALL_POINT * positives.size)) - 1]
    return np.asarray(distances)[~is_match] <= threshold


def mcnemar_negatives(dist_a, dist_b, is_match) -> tuple[int, int, float]:
    """Exact McNemar on the non-matching pairs: b = accepted by A only, c = accepted by B only."""
    fp_a = false_positives_at_recall(dist_a, is_match)
    fp_b = false_positives_at_recall(dist_b, is_match)
    b = int(np.count_nonzero(fp_a & ~fp_b))
    c = int(np.count_nonzero(~fp_a & fp_b))
    return b, c, mcnemar_exact(b, c)


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
    """One UBC pair list (one test scene) and the paired distance vectors to compare on it.

    ``comparisons`` holds (distances of A, distances of B) for every (train set, seed) tested on this
    scene; the bootstrap statistic is the mean of FPR95(A) - FPR95(B) over every comparison of every
    group.
    """

    point1: np.ndarray
    point2: np.ndarray
    is_match: np.ndarray
    comparisons: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


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


def ubc_bootstrap(groups: list[UBCGroup], n_boot: int, rng: np.random.Generator,
                  chunk: int = 32) -> np.ndarray:
    """Bootstrap distribution (n_boot,) of the mean FPR95 difference A - B over all comparisons."""
    if not any(g.comparisons for g in groups):
        raise DescbenchError("UBC bootstrap: nothing to compare")
    total = np.zeros(n_boot)
    count = 0
    for group in groups:
        if not group.comparisons:
            continue
        orders = [(ranking(a, group.is_match), ranking(b, group.is_match)) for a, b in group.comparisons]
        for start in range(0, n_boot, chunk):
            size = min(chunk, n_boot - start)
            weights = _pair_weights(group.point1, group.point2, group.is_match, rng, size)
            for order_a, order_b in orders:
                total[start:start + size] += (weighted_fpr95(order_a, group.is_match, weights)
                                              - weighted_fpr95(order_b, group.is_match, weights))
        count += len(group.comparisons)
    return total / count


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


def bootstrap_pvalue(samples: np.ndarray) -> float:
    """Two-sided p-value of "no difference" by inverting the percentile interval."""
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan")
    below = np.mean(samples <= 0)
    above = np.mean(samples >= 0)
    return float(min(1.0, 2 * min(below, above)))


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
