"""Ranking metrics of the HPatches benchmark, computed from where the positives fall in a ranking.

A ranked list is summarised by ``before[i]``: the number of negatives ranked before the i-th positive
(positives in rank order, i = 1..K). Items that are neither positive nor negative (MATLAB's ignored
same-sequence distractors) and positives that are never retrieved (python's ``numpos`` extras) simply
do not appear. Precision and recall follow the official helpers (python ``utils/metrics.py``,
VLFeat ``vl_pr``): ``precision = max(tp, 1e-10) / max(tp + fp, 1e-10)``, so the ranking starts at
(recall 0, precision 1), and ``recall = tp / P``.

* ``trapezoid`` (python benchmark): ``np.trapz(precision, recall)`` over all ranks; only ranks where a
  positive arrives add area: ``(prec(r) + prec(r - 1)) / 2 / P``.
* ``trec`` (MATLAB benchmark, ``vl_pr`` ``info.ap``): ``sum of prec(r) at positives / P``.
"""

from __future__ import annotations

import numpy as np

SMALL = 1e-10
AP_KINDS = ("trapezoid", "trec")


def _precision(tp: np.ndarray, n: np.ndarray) -> np.ndarray:
    return np.maximum(tp, SMALL) / np.maximum(n, SMALL)


def average_precision(before: np.ndarray, n_pos, kind: str = "trapezoid") -> np.ndarray:
    """AP over the last axis of ``before`` (negatives before each retrieved positive, rank order).

    ``n_pos`` (scalar or broadcastable to the leading axes) is the number of positives P, which may
    exceed the number of retrieved positives K.
    """
    before = np.asarray(before, dtype=np.float64)
    k = before.shape[-1]
    tp = np.arange(1, k + 1, dtype=np.float64)
    rank = tp + before
    at_hit = _precision(tp, rank)
    if kind == "trec":
        total = at_hit.sum(axis=-1)
    elif kind == "trapezoid":
        total = 0.5 * (at_hit + _precision(tp - 1, rank - 1)).sum(axis=-1)
    else:
        raise ValueError(f"unknown AP kind {kind!r}; use one of {AP_KINDS}")
    return total / np.maximum(np.asarray(n_pos, dtype=np.float64), SMALL)


def negatives_before_positives(is_positive_ranked: np.ndarray) -> np.ndarray:
    """``before`` for a 1-D ranked label list (True = positive, False = negative)."""
    pos_rank = np.flatnonzero(is_positive_ranked)
    return pos_rank - np.arange(pos_rank.size)


def roc_auc(before: np.ndarray, n_pos: int, n_neg: int) -> float:
    """Trapezoid area under the ROC curve (python ``metrics.roc``): for a ranking with only two steps
    (positive up, negative right) it is the fraction of (positive, negative) pairs in order."""
    before = np.asarray(before, dtype=np.float64)
    # each positive adds 1/P of height for the negatives ranked after it
    after = n_neg - before
    return float(after.sum() / max(n_pos, SMALL) / max(n_neg, SMALL))


def stable_rank(distances: np.ndarray) -> np.ndarray:
    """Order of ascending distance; equal distances keep their list order (official stable sort)."""
    return np.argsort(distances, kind="stable")
