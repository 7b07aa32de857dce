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
    """Distances between paired float32 rows computed in float32 (the official verification computes
    them in float32 too, with scipy ``euclidean`` on float32 vectors); returned as float64."""
    diff = a - b
    if metric == "L1":
        out = np.abs(diff).sum(axis=1)
    else:
        out = np.einsum("ij,ij->i", diff, diff)
        if metric == "L2":
            out = np.sqrt(out)
    return out.astype(np.float64)


class ApproxMatrix:
    """Float32 distance proxies between rows of ``A`` and ``B`` with a per-row error bound.

    ``values[i, j]`` approximates the squared L2 distance minus ``|a_i|^2`` (L2, L2sq) or the L1
    distance; any two proxies of row i whose exact counterparts are ordered differently lie within
    ``tol[i]`` of each other. ``exact_key`` maps a reference distance to the proxy's scale.
    """

    def __init__(self, A: np.ndarray, B: np.ndarray, metric: str, b_sq: np.ndarray | None = None):
        check_metric(metric)
        self.metric = metric
        dim = A.shape[1]
        if metric == "L1":
            self.values = torch.cdist(torch.from_numpy(A), torch.from_numpy(B), p=1).numpy()
            scale = np.abs(A).sum(1, dtype=np.float64) + np.abs(B).sum(1, dtype=np.float64).max(initial=0.0)
            self.offset = np.zeros(len(A))
        else:
            if b_sq is None:
                b_sq = np.einsum("ij,ij->i", B.astype(np.float64), B.astype(np.float64))
            a_sq = np.einsum("ij,ij->i", A.astype(np.float64), A.astype(np.float64))
            gram = A @ B.T
            gram *= -2.0
            gram += b_sq.astype(np.float32)[None, :]
            self.values = gram
            self.offset = a_sq
            scale = a_sq + b_sq.max(initial=0.0)
        self.tol = 4.0 * (dim + 2) * _U32 * scale + 1e-30

    def key(self, exact: np.ndarray, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Reference distances (float64, shape (rows, ...)) on the proxy's scale."""
        if self.metric == "L1":
            return exact
        sq = exact if self.metric == "L2sq" else exact ** 2
        return sq - self.offset[rows].reshape((-1,) + (1,) * (np.ndim(exact) - 1))


def nearest_neighbours(A: np.ndarray, B: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``A``: the index of its nearest row of ``B`` (ties -> lowest index, as
    ``np.argmin``) and the reference distance to it."""
    approx = ApproxMatrix(A, B, metric)
    return nearest_from_proxy(approx.values, approx.tol, A, B, metric)


def nearest_from_proxy(values: np.ndarray, tol: np.ndarray, A: np.ndarray, B: np.ndarray,
                       metric: str) -> tuple[np.ndarray, np.ndarray]:
    """``nearest_neighbours`` given the proxies ``values`` (rows of A x rows of B) and their bound."""
    row_min = values.min(axis=1)
    # the exact nearest neighbour's proxy is within 2 * tol of the row minimum
    near = values <= (row_min + 2 * tol.astype(np.float32))[:, None]
    n_near = near.sum(axis=1)
    nn = values.argmin(axis=1)
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
