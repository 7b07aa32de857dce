"""FPR95: the false-positive rate at 95 % recall of the matching pairs (UBC PhotoTour metric).

Two conventions (docs/protocols.md §3.3):

``hardnet`` (default) follows DagnyT/hardnet ``ErrorRateAt95Recall``: rank the pairs by ascending
distance, find the first rank at which the matches reached so far are >= 0.95·P (so the
``ceil(0.95·P)``-th match, with 0.95·P computed in float64 as HardNet does) and report the fraction
of all non-matches ranked strictly before it. HardNet sorts with numpy's unstable quicksort, so
non-matches tied in distance with that match fall on either side at random. Here ties are broken
deterministically **non-matches first** (the sort key is (distance, is_match)): a non-match tied with
the threshold match counts as a false positive. The result is therefore
``#{non-matches with d <= d_k} / #non-matches`` with d_k the distance of the k = ceil(0.95·P)-th
match, the pessimistic end of HardNet's random range; without ties both agree exactly.

``hynet`` follows yuruntian/HyNet ``cal_fpr95``: sort the match distances, take
``thr = d_pos_sorted[ceil(0.95·P)]`` (0-based, i.e. the next match after HardNet's) and report
``#{non-matches with d <= thr} / #non-matches``.

Both return a fraction in [0, 1], not a percentage.
"""

from __future__ import annotations

import math

import numpy as np

from descbench.errors import DescbenchError

CONVENTIONS = ("hardnet", "hynet")
RECALL_POINT = 0.95


def _validated(distances, is_match) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(distances, dtype=np.float64).ravel()
    labels = np.asarray(is_match).ravel()
    if d.shape != labels.shape:
        raise DescbenchError(
            f"fpr95: {d.size} distances but {labels.size} labels; give one label per pair")
    if not np.all(np.isfinite(d)):
        bad = int(np.count_nonzero(~np.isfinite(d)))
        raise DescbenchError(
            f"fpr95: {bad} distances are NaN or infinite; check the descriptor for NaN/Inf values")
    if labels.dtype == bool:
        labels = labels.astype(np.int64)
    values = np.unique(labels)
    if not np.all(np.isin(values, (0, 1))):
        raise DescbenchError(
            f"fpr95: labels must be 0 (non-match) or 1 (match), got values {values[:10].tolist()}")
    labels = labels.astype(np.int64)
    n_pos = int(labels.sum())
    if n_pos == 0:
        raise DescbenchError("fpr95: no matching pairs (label 1); FPR at 95 % recall is undefined")
    if n_pos == labels.size:
        raise DescbenchError("fpr95: no non-matching pairs (label 0); a false-positive rate is undefined")
    return d, labels


def fpr95(distances, is_match, convention: str = "hardnet") -> float:
    """False-positive rate at 95 % recall of the matches, as a fraction (see the module docstring)."""
    if convention not in CONVENTIONS:
        raise DescbenchError(f"fpr95: unknown convention {convention!r}; use one of {CONVENTIONS}")
    d, labels = _validated(distances, is_match)
    pos = np.sort(d[labels == 1])
    neg = d[labels == 0]
    n_pos = pos.size
    if convention == "hardnet":
        k = math.ceil(RECALL_POINT * n_pos)  # first count c with c >= 0.95 * P, as HardNet's cumsum test
        threshold = pos[k - 1]
    else:
        loc = math.ceil(n_pos * RECALL_POINT)
        if loc >= n_pos:
            raise DescbenchError(
                f"fpr95: the hynet convention needs more matching pairs than {n_pos} "
                f"(it reads the match at 0-based rank ceil(0.95·P) = {loc})")
        threshold = pos[loc]
    return float(np.count_nonzero(neg <= threshold)) / neg.size
