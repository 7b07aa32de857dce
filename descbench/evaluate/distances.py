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
        return np.abs(diff).sum(axis=1).astype(np.float64)
    out = np.einsum("ij,ij->i", diff, diff, dtype=np.float64)
    return np.sqrt(out).astype(np.float32).astype(np.float64) if metric == "L2" else out


def _is_integer(x: np.ndarray) -> bool:
    return bool(np.all(x == np.round(x)))


def squared_or_l1(metric: str) -> str:
    """The reference quantity proxies stand for: squared L2 for L2/L2sq, L1 for L1."""
    return "L1" if metric == "L1" else "L2sq"


class Proxies:
    """Proxies ``values`` (rows of A x rows of B, float32) of the reference values minus ``offset``
    (|a|^2 for L2, 0 for L1), each within ``tol[row]`` of it; ``exact`` when ``tol`` is 0."""

    def __init__(self, values: np.ndarray, tol: np.ndarray, offset: np.ndarray, exact: bool):
        self.values, self.tol, self.offset, self.exact = values, tol, offset, exact

    def key(self, reference: np.ndarray) -> np.ndarray:
        """Reference values (``squared_or_l1``, shape (rows of A, ...)) on the proxy scale."""
        return reference - self.offset.reshape((-1,) + (1,) * (np.ndim(reference) - 1))


class ProxyIndex:
    """Fast float32 distance proxies from the rows of ``A`` to the fixed rows ``B``.

    L2: one BLAS product ``[A, 1] @ [-2B, |b|^2].T`` gives ``|b|^2 - 2 a.b`` = squared distance minus
    ``|a|^2``. L1: torch ``cdist``. The error of a proxy is below ``tol = 4 (D + 2) u scale`` with u the
    float32 unit roundoff and scale ``|a|^2 + max |b|^2`` (L1: ``|a|_1 + max |b|_1``), twice the
    worst-case rounding bound of a (D + 1)-term float32 sum. Integer-valued descriptors whose partial
    sums stay below 2^24 (OpenCV SIFT) give exact proxies: ``tol`` is 0.
    """

    def __init__(self, B: np.ndarray, metric: str, b_sq: np.ndarray | None = None):
        check_metric(metric)
        self.B = np.ascontiguousarray(B, dtype=np.float32)
        self.metric = metric
        self.dim = B.shape[1]
        self.b_integer = _is_integer(self.B)
        if metric == "L1":
            self.b_size = float(np.abs(self.B).sum(1, dtype=np.float64).max(initial=0.0))
        else:
            if b_sq is None:
                b_sq = np.einsum("ij,ij->i", self.B, self.B, dtype=np.float64)
            self.b_size = float(b_sq.max(initial=0.0))
            self.b_aug = np.empty((len(self.B), self.dim + 1), dtype=np.float32)
            np.multiply(self.B, -2.0, out=self.b_aug[:, :-1])
            self.b_aug[:, -1] = b_sq

    def proxies(self, A: np.ndarray) -> Proxies:
        A = np.ascontiguousarray(A, dtype=np.float32)
        integer = self.b_integer and _is_integer(A)
        if self.metric == "L1":
            values = torch.cdist(torch.from_numpy(A), torch.from_numpy(self.B), p=1).numpy()
            a_size = np.abs(A).sum(1, dtype=np.float64)
            exact = integer and float(a_size.max(initial=0.0)) + self.b_size < 2.0 ** 24
            offset = np.zeros(len(A))
            scale = a_size + self.b_size
        else:
            a_aug = np.ones((len(A), self.dim + 1), dtype=np.float32)
            a_aug[:, :-1] = A
            values = a_aug @ self.b_aug.T
            a_sq = np.einsum("ij,ij->i", A, A, dtype=np.float64)
            exact = integer and (np.sqrt(a_sq.max(initial=0.0)) + np.sqrt(self.b_size)) ** 2 < 2.0 ** 24
            offset = a_sq
            scale = a_sq + self.b_size
        tol = np.zeros(len(A)) if exact else 4.0 * (self.dim + 2) * _U32 * scale + 1e-30
        return Proxies(values, tol, offset, exact)


def nearest_neighbours(A: np.ndarray, B: np.ndarray, metric: str, chunk: int = 512
                       ) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``A``: the index of its nearest row of ``B`` (ties -> lowest index, as
    ``np.argmin`` over the reference distances) and the reference distance to it."""
    index = ProxyIndex(B, metric)
    nn = np.empty(len(A), dtype=np.int64)
    for start in range(0, len(A), chunk):  # row blocks keep the proxy block in cache
        rows = slice(start, start + chunk)
        nn[rows] = _nearest_from_proxies(index.proxies(A[rows]), A[rows], index.B, metric)
    return nn, exact_rows(A, B[nn], metric)


def _nearest_from_proxies(p: Proxies, A: np.ndarray, B: np.ndarray, metric: str) -> np.ndarray:
    values = p.values
    nn = values.argmin(axis=1)
    if p.exact:  # exact proxies: argmin already picks the lowest index among exact ties
        return nn
    row_min = values[np.arange(len(values)), nn]
    # the exact nearest neighbour's proxy is within 2 * tol of the row minimum
    near = values <= (row_min + 2 * p.tol.astype(np.float32))[:, None]
    unsure = np.flatnonzero(np.count_nonzero(near, axis=1) > 1)
    if unsure.size:
        rows, cols = np.nonzero(near[unsure])
        rows = unsure[rows]
        d = exact_rows(A[rows], B[cols], metric)
        order = np.lexsort((cols, d, rows))  # per row: smallest exact distance, then lowest column
        first = np.ones(order.size, dtype=bool)
        first[1:] = rows[order][1:] != rows[order][:-1]
        nn[rows[order][first]] = cols[order][first]
    return nn


def count_closer(p: Proxies, A: np.ndarray, B: np.ndarray, metric: str, reference: np.ndarray,
                 positive_d: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Negatives strictly closer than each positive, per block of negatives.

    ``B`` are the negatives in list order, ``p`` the proxies from the rows of ``A`` to them,
    ``reference`` (rows, M) the positives' reference values (``squared_or_l1``) and ``positive_d``
    their reference distances; block b holds negatives ``limits[b-1] <= j < limits[b]`` (limits[-1]
    = 0). Returns (rows, M, blocks) counts of negatives with distance < the positive's (equal ones
    rank after the positive, as the official lists put positives first). Only proxies below the
    largest threshold are inspected; those within the error bound of a threshold are decided with
    reference distances.
    """
    n_rows, n_thr = reference.shape
    n_blocks = len(limits)
    keys = p.key(reference)
    lo = keys if p.exact else keys - p.tol[:, None]
    hi = keys if p.exact else keys + p.tol[:, None]
    top = np.nextafter(hi.max(axis=1).astype(np.float32), np.float32(np.inf))
    values = p.values[:, :limits[-1]] if len(limits) else p.values[:, :0]
    row, col = np.nonzero(values <= top[:, None])
    v = values[row, col].astype(np.float64)
    cell = row * n_blocks + np.searchsorted(limits, col, side="right")
    counts = np.zeros((n_rows, n_thr, n_blocks), dtype=np.int64)
    less = v[:, None] < lo[row]  # (candidates, thresholds): certainly closer
    for m in range(n_thr):
        counts[:, m, :] = np.bincount(cell, weights=less[:, m], minlength=n_rows * n_blocks
                                      ).reshape(n_rows, n_blocks)
    if not p.exact:
        cand, thr = np.nonzero(~less & (v[:, None] <= hi[row]))
        if cand.size:
            d = exact_rows(A[row[cand]], B[col[cand]], metric)
            closer = d < positive_d[row[cand], thr]
            np.add.at(counts, (row[cand][closer], thr[closer], (cell[cand] % n_blocks)[closer]), 1)
    return counts
