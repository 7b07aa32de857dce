"""Descriptor distances: exact where ties and ranks decide a score, fast where they cannot.

The reference value of a distance is computed from the float32 descriptors in float64 directly from
the coordinate differences (``sqrt(sum((a - b)^2))`` for L2, as scipy's ``cdist`` in the official
benchmark). Dense distance matrices are first computed in float32 (BLAS ``A @ B.T`` for L2, torch
``cdist`` for L1) and used only where a rigorous error bound proves the decision (a nearest
neighbour, a negative ranked before a positive) cannot change; everything inside the bound is
recomputed exactly. A degenerate descriptor (many equal distances) is therefore slow, never wrong.
"""

from __future__ import annotations

import numpy as np
import torch

METRICS = ("L2", "L1", "L2sq")
# float32 unit roundoff; the bound below is 4x the worst-case error of a D-term float32 sum
_U32 = 2.0 ** -24


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown distance {metric!r}; use one of {METRICS}")


def exact_rows(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Reference distances between paired rows of ``a`` and ``b`` (float64)."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    if metric == "L1":
        return np.abs(diff).sum(axis=-1)
    sq = np.einsum("...j,...j->...", diff, diff)
    return sq if metric == "L2sq" else np.sqrt(sq)


def paired(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Distances between paired float32 rows, rounded as the official verification computes them.

    scipy's ``euclidean``/``cityblock`` on float32 vectors take the difference in float32; the L2
    norm (BLAS nrm2) is accurate and rounded to float32, which the float64 sum of squares followed
    by a float32 cast reproduces (checked equal on random unit vectors); L1 sums in float32.
    """
    diff = a - b
    if metric == "L1":
        out = np.abs(diff).sum(axis=1)
    else:
        wide = diff.astype(np.float64)
        out = np.einsum("ij,ij->i", wide, wide)
        out = np.sqrt(out).astype(np.float32) if metric == "L2" else out
    return out.astype(np.float64)


def _is_integer(x: np.ndarray) -> bool:
    return bool(np.all(x == np.round(x)))


def _exact_integer_products(A: np.ndarray, B: np.ndarray, metric: str) -> bool:
    """Whether the float32 proxies of these rows are exact: integer values for which every partial
    sum and every proxy stays below 2^24 ((max|a| + max|b|)^2 for L2, max|a|_1 + max|b|_1 for L1)."""
    if A.size == 0 or B.size == 0 or not (_is_integer(A) and _is_integer(B)):
        return False
    if metric == "L1":
        bound = np.abs(A).sum(1).max() + np.abs(B).sum(1).max()
    else:
        bound = (np.sqrt(np.einsum("ij,ij->i", A, A, dtype=np.float64).max())
                 + np.sqrt(np.einsum("ij,ij->i", B, B, dtype=np.float64).max())) ** 2
    return float(bound) < 2.0 ** 24


def squared_or_l1(metric: str) -> str:
    """The reference quantity proxies are compared with: squared L2 for L2/L2sq, L1 for L1."""
    return "L1" if metric == "L1" else "L2sq"


class ApproxMatrix:
    """Distance proxies between rows of ``A`` and ``B`` with a per-row error bound ``tol``.

    ``values[i, j]`` is the squared L2 distance minus ``|a_i|^2`` (L2, L2sq) or the L1 distance,
    computed in float32; two proxies of row i whose reference values are ordered differently lie
    within ``2 * tol[i]`` of each other, and a proxy lies within ``tol[i]`` of its reference value
    (``key``). For integer-valued descriptors small enough that the float32 sums are exact (OpenCV
    SIFT) the float32 proxies are exact integers and ``tol`` is 0.
    """

    def __init__(self, A: np.ndarray, B: np.ndarray, metric: str, b_sq: np.ndarray | None = None):
        check_metric(metric)
        self.metric = metric
        dim = A.shape[1]
        self.exact = _exact_integer_products(A, B, metric)
        if metric == "L1":
            values = torch.cdist(torch.from_numpy(A), torch.from_numpy(B), p=1).numpy()
            scale = np.abs(A).sum(1, dtype=np.float64) + np.abs(B).sum(1, dtype=np.float64).max(initial=0.0)
            self.offset = np.zeros(len(A))
            self.values = values
        else:
            if b_sq is None:
                b_sq = np.einsum("ij,ij->i", B.astype(np.float64), B.astype(np.float64))
            a_sq = np.einsum("ij,ij->i", A.astype(np.float64), A.astype(np.float64))
            values = A @ B.T
            values *= -2.0
            values += b_sq.astype(np.float32)[None, :]
            self.values = values
            self.offset = a_sq
            scale = a_sq + b_sq.max(initial=0.0)
        self.tol = np.zeros(len(A)) if self.exact else 4.0 * (dim + 2) * _U32 * scale + 1e-30

    def key(self, reference: np.ndarray) -> np.ndarray:
        """Reference values (``squared_or_l1`` of the metric, shape (rows of A, ...)) on the proxy
        scale; in exact mode as float32, clipped at 2^24 (above every proxy, so no count changes)."""
        key = reference - self.offset.reshape((-1,) + (1,) * (np.ndim(reference) - 1))
        return np.minimum(key, 2.0 ** 24).astype(np.float32) if self.exact else key


def nearest_neighbours(A: np.ndarray, B: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``A``: the index of its nearest row of ``B`` (ties -> lowest index, as
    ``np.argmin``) and the reference distance to it."""
    approx = ApproxMatrix(A, B, metric)
    return nearest_from_proxy(approx.values, approx.tol, A, B, metric)


def nearest_from_proxy(values: np.ndarray, tol: np.ndarray, A: np.ndarray, B: np.ndarray,
                       metric: str) -> tuple[np.ndarray, np.ndarray]:
    """``nearest_neighbours`` given the proxies ``values`` (rows of A x rows of B) and their bound."""
    nn = values.argmin(axis=1)
    if not np.any(tol):  # exact proxies: argmin already picks the lowest index among exact ties
        return nn, exact_rows(A, B[nn], metric)
    row_min = values.min(axis=1)
    # the exact nearest neighbour's proxy is within 2 * tol of the row minimum
    near = values <= (row_min + 2 * tol.astype(values.dtype))[:, None]
    n_near = near.sum(axis=1)
    unsure = np.flatnonzero(n_near > 1)
    if unsure.size:
        rows, cols = np.nonzero(near[unsure])
        rows = unsure[rows]
        d = exact_rows(A[rows], B[cols], metric)
        order = np.lexsort((cols, d, rows))  # per row: smallest exact distance, then lowest column
        first = np.ones(order.size, dtype=bool)
        first[1:] = rows[order][1:] != rows[order][:-1]
        nn[rows[order][first]] = cols[order][first]
    return nn, exact_rows(A, B[nn], metric)
