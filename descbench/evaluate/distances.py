"""Descriptor distances: exact where ties and ranks decide a score, fast where they cannot.

The reference value of a distance is the official one: scipy's ``cdist`` of the float32 descriptors
(in float64, the squared coordinate differences summed in coordinate order, ``kernels.reference_pairs``;
equal to cdist bit for bit). Dense distance matrices are first computed as proxies with a rigorous
error bound and used only where the bound proves a decision (a nearest neighbour, a negative ranked
before a positive) cannot change; everything inside the bound is recomputed exactly. A degenerate
descriptor (many equal distances) is therefore slow, never wrong. Proxies:

* matching on the CPU (L2): exact int8 products (``Int8Codes``, ``Int8Products``, ``Int8Nearest``),
  four times the throughput of float32 BLAS; the bound follows from Cauchy-Schwarz on the rounding
  residuals, and one compiled pass over each block of products (``kernels.nearest_from_products``)
  finds every column within the bound of the best, whose reference distances decide;
* retrieval on the CPU (L2): float32 BLAS products (``Closer``, ``kernels.closer_counts``): its
  positives lie among the negatives, where the int8 bound would leave too many to check;
* on a torch device, and for L1: float32 products (``match_block``), float64 for retrieval
  (``count_before``).
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from descbench.evaluate import kernels

METRICS = ("L2", "L1", "L2sq")
# float32 unit roundoff; the bound below is 4x the worst-case error of a D-term float32 sum
_U32 = 2.0 ** -24


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown distance {metric!r}; use one of {METRICS}")


def metric_code(metric: str) -> int:
    """The kernels' code of ``metric``: 0 = L2, 1 = squared L2, 2 = L1."""
    check_metric(metric)
    return {"L2": 0, "L2sq": 1, "L1": 2}[metric]


def exact_pairs(A: np.ndarray, ia: np.ndarray, B: np.ndarray, ib: np.ndarray, metric: str) -> np.ndarray:
    """Reference distances (float64) between the rows ``A[ia]`` and ``B[ib]``: squared differences
    summed in coordinate order, as scipy's ``cdist`` (bit for bit), without copying the rows."""
    A, B = _kernel_rows(A), _kernel_rows(B)
    if A.dtype != B.dtype:
        A, B = A.astype(np.float64), B.astype(np.float64)
    ia = np.ascontiguousarray(ia, dtype=np.int64)
    out = np.empty(len(ia), dtype=np.float64)
    kernels.reference_pairs(A, ia, B, np.ascontiguousarray(ib, dtype=np.int64), metric_code(metric), out)
    return out


def exact_rows(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Reference distances between the rows of ``a`` and ``b`` (shapes (..., D), broadcast against
    each other; ``exact_pairs``' values)."""
    a, b = np.asarray(a), np.asarray(b)
    shape = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    ia = np.broadcast_to(np.arange(int(np.prod(a.shape[:-1]))).reshape(a.shape[:-1]), shape).ravel()
    ib = np.broadcast_to(np.arange(int(np.prod(b.shape[:-1]))).reshape(b.shape[:-1]), shape).ravel()
    return exact_pairs(a.reshape(-1, a.shape[-1]), ia, b.reshape(-1, b.shape[-1]), ib, metric).reshape(shape)


def _kernel_rows(X: np.ndarray) -> np.ndarray:
    """``X`` as a C-contiguous float32 or float64 matrix (the dtypes the kernels are compiled for;
    other dtypes convert exactly to float64)."""
    X = np.asarray(X)
    return np.ascontiguousarray(X if X.dtype in (np.float32, np.float64) else X.astype(np.float64))


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


# ----------------------------------------------------------------------------------------------
# BLAS threads, devices and the blocked kernels of matching and retrieval
# ----------------------------------------------------------------------------------------------
def _openblas():
    """numpy's OpenBLAS (scipy-openblas) as (set, get) of its thread count, or None."""
    import ctypes
    import glob
    import os

    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*"))
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in ("64_", "_64_", ""):
            try:
                setter = getattr(lib, f"scipy_openblas_set_num_threads{suffix}")
                getter = getattr(lib, f"scipy_openblas_get_num_threads{suffix}")
            except AttributeError:
                continue
            setter.argtypes, getter.restype = [ctypes.c_int], ctypes.c_int
            return setter, getter
    return None


_BLAS = None


class single_threaded_blas:
    """Context: numpy's BLAS and torch's operators run each call on the calling thread (the caller
    parallelises over independent blocks instead; on a loaded machine, BLAS and OpenMP threads
    spin-wait for each other). Worker threads call ``torch.set_num_threads(1)`` themselves (OpenMP
    keeps the setting per thread)."""

    def __enter__(self):
        global _BLAS
        if _BLAS is None:
            _BLAS = _openblas() or False
        self.previous = None
        if _BLAS:
            self.previous = _BLAS[1]()
            _BLAS[0](1)
        self.previous_torch = torch.get_num_threads()
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        if _BLAS and self.previous is not None:
            _BLAS[0](self.previous)
        torch.set_num_threads(self.previous_torch)
        return False


def worker_count(threads: int | None = None) -> int:
    """Threads for the blocked kernels: ``threads``, else DESCBENCH_THREADS / OMP_NUM_THREADS, else the
    CPUs this process may use (at most 8)."""
    import os

    if threads is None:
        for var in ("DESCBENCH_THREADS", "OMP_NUM_THREADS"):
            value = os.environ.get(var, "")
            if value.isdigit() and int(value) > 0:
                threads = int(value)
                break
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return max(1, min(8, int(threads)))


def _torch_device(device):
    return None if device is None else torch.device(device)


def augmented(X: np.ndarray, dtype, side: str) -> np.ndarray:
    """``[X, 1]`` (side a) or ``[-2X, |x|^2]`` (side b): their product is ``|b|^2 - 2 a.b``."""
    X = np.asarray(X)
    out = np.empty((len(X), X.shape[1] + 1), dtype=dtype)
    if side == "a":
        out[:, :-1] = X
        out[:, -1] = 1
    else:
        out[:, :-1] = X
        out[:, :-1] *= -2
        out[:, -1] = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    return out


def products(a_aug: np.ndarray, b_aug: np.ndarray, device=None):
    """``a_aug @ b_aug.T`` on the CPU with numpy's BLAS (``device`` None) or with torch on ``device``
    (a torch tensor, left there; inputs may already be tensors on it)."""
    if device is None:
        return a_aug @ b_aug.T
    dev = _torch_device(device)
    a = a_aug if isinstance(a_aug, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a_aug)).to(dev)
    b = b_aug if isinstance(b_aug, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(b_aug)).to(dev)
    return a @ b.T


def match_block(A: np.ndarray, B: np.ndarray, metric: str, a_aug=None, b_aug=None, device=None,
                b_size: float | None = None) -> np.ndarray:
    """Nearest row of ``B`` for every row of ``A`` (ties -> lowest index of the reference distances).

    float32 proxies (L2: one product of the augmented rows; L1: cdist) with the rigorous bound of
    ``ProxyIndex``: a row whose second-smallest proxy lies within twice the bound of its smallest is
    decided by reference distances of all its columns within that window.
    """
    if metric == "L1":
        p = ProxyIndex(B, metric).proxies(A)
        return _nearest_from_proxies(p, A, np.ascontiguousarray(B, dtype=np.float32), metric)
    if a_aug is None:
        a_aug = augmented(A, np.float32, "a")
    if b_aug is None:
        b_aug = augmented(B, np.float32, "b")
    a_sq = np.einsum("ij,ij->i", A, A, dtype=np.float64)
    if b_size is None:
        b_size = float(np.einsum("ij,ij->i", B, B, dtype=np.float64).max(initial=0.0))
    tol = 4.0 * (A.shape[1] + 2) * _U32 * (a_sq + b_size) + 1e-30
    if _is_integer(A) and _is_integer(B) and (np.sqrt(a_sq.max(initial=0.0)) + np.sqrt(b_size)) ** 2 < 2.0 ** 24:
        tol = np.zeros(len(A))
    window = (2 * tol).astype(np.float32)
    values = products(a_aug, b_aug, device)
    rows = np.arange(len(A))
    if device is None:
        nn = values.argmin(axis=1)
        first = values[rows, nn]
        values[rows, nn] = np.inf
        second = values.min(axis=1)
        unsure = np.flatnonzero(second <= first + window) if len(B) > 1 else np.empty(0, np.int64)
        near_values = values[unsure] if unsure.size else None
    else:
        t_rows = torch.arange(len(A), device=values.device)
        t_nn = values.argmin(dim=1)
        t_first = values[t_rows, t_nn]
        values[t_rows, t_nn] = float("inf")
        t_second = values.min(dim=1).values
        nn, first, second = (t.cpu().numpy() for t in (t_nn, t_first, t_second))
        unsure = np.flatnonzero(second <= first + window) if len(B) > 1 else np.empty(0, np.int64)
        near_values = values[torch.from_numpy(unsure).to(values.device)].cpu().numpy() if unsure.size else None
    if unsure.size:
        near = near_values <= (first[unsure] + window[unsure])[:, None]
        near[np.arange(unsure.size), nn[unsure]] = True  # the proxy minimum itself (set to inf above)
        r, cols = np.nonzero(near)
        r = unsure[r]
        d = exact_rows(A[r], B[cols], metric)
        order = np.lexsort((cols, d, r))  # per row: smallest reference distance, then lowest column
        head = np.ones(order.size, dtype=bool)
        head[1:] = r[order][1:] != r[order][:-1]
        nn[r[order][head]] = cols[order][head]
    return nn


def count_before(Q: np.ndarray, B: np.ndarray, metric: str, positive_ref: np.ndarray,
                 positive_d: np.ndarray, limits: np.ndarray, device=None, b_aug=None,
                 b_size: float | None = None) -> np.ndarray:
    """Negatives strictly closer to each query than each of its positives, per block of negatives.

    ``B`` are the negatives in list order; block b holds negatives ``limits[b-1] <= j < limits[b]``.
    ``positive_ref`` (rows, M) holds the positives' reference values (``squared_or_l1``) and
    ``positive_d`` their reference distances. Returns (rows, M, blocks) counts of negatives whose
    reference distance is < the positive's (equal ones rank after the positive).

    float64 proxies (L2: ``|b|^2 - 2 q.b`` from one product; L1: cdist) within ``tol`` of the
    reference values: every block is sorted once and the thresholds ``key -+ tol`` binary-searched;
    only negatives inside ``[key - tol, key + tol]`` are compared by reference distance.
    """
    n_rows, n_thr = positive_ref.shape
    n_blocks = len(limits)
    counts = np.zeros((n_rows, n_thr, n_blocks), dtype=np.int64)
    if n_rows == 0 or n_blocks == 0 or limits[-1] == 0:
        return counts
    dim = Q.shape[1]
    if metric == "L1":
        qd = torch.from_numpy(np.ascontiguousarray(Q, dtype=np.float64))
        bd = torch.from_numpy(np.ascontiguousarray(B[:limits[-1]], dtype=np.float64))
        if device is not None:
            qd, bd = qd.to(_torch_device(device)), bd.to(_torch_device(device))
        values = torch.cdist(qd, bd, p=1)
        offset = np.zeros(n_rows)
        scale = np.abs(Q).sum(1, dtype=np.float64) + (
            b_size if b_size is not None else float(np.abs(B).sum(1, dtype=np.float64).max(initial=0.0)))
    else:
        if b_aug is None:
            b_aug = augmented(B[:limits[-1]], np.float64, "b")
        values = products(augmented(Q, np.float64, "a"), b_aug[:limits[-1]], device)
        offset = np.einsum("ij,ij->i", Q, Q, dtype=np.float64)
        if b_size is None:
            b_size = float(np.einsum("ij,ij->i", B[:limits[-1]], B[:limits[-1]], dtype=np.float64).max(initial=0.0))
        scale = offset + b_size
    # 4x the worst-case rounding of the product plus that of the reference values themselves
    tol = 8.0 * (dim + 2) * 2.0 ** -53 * scale + 1e-300
    keys = positive_ref - offset[:, None]
    lo, hi = keys - tol[:, None], keys + tol[:, None]
    torch_values = values if isinstance(values, torch.Tensor) else torch.from_numpy(values)
    t_lo, t_hi = torch.from_numpy(lo), torch.from_numpy(hi)
    if torch_values.device.type != "cpu":
        t_lo, t_hi = t_lo.to(torch_values.device), t_hi.to(torch_values.device)
    start = 0
    band = []
    for b, stop in enumerate(limits):
        stop = int(stop)
        if stop > start:
            block = torch_values[:, start:stop]
            srt = torch.from_numpy(np.sort(block.numpy(), axis=1)) if block.device.type == "cpu" \
                else torch.sort(block, dim=1).values
            below = torch.searchsorted(srt, t_lo, right=False)  # certainly closer: proxy < key - tol
            upto = torch.searchsorted(srt, t_hi, right=True)
            below, upto = below.cpu().numpy(), upto.cpu().numpy()
            counts[:, :, b] = below
            rows = np.flatnonzero((upto > below).any(axis=1))
            if rows.size:
                band.append((b, start, stop, rows))
        start = stop
    if band:
        host = values.cpu().numpy() if isinstance(values, torch.Tensor) else values
        for b, start, stop, rows in band:
            for lo_r in range(0, rows.size, 64):  # bounded memory even when everything ties
                rr = rows[lo_r:lo_r + 64]
                seg = host[rr, start:stop]
                inside = np.zeros(seg.shape, dtype=bool)
                for m in range(n_thr):
                    inside |= (seg >= lo[rr, m][:, None]) & (seg <= hi[rr, m][:, None])
                r_i, c_i = np.nonzero(inside)
                for s in range(0, r_i.size, 1 << 18):
                    r_s, c_s = r_i[s:s + (1 << 18)], c_i[s:s + (1 << 18)]
                    row = rr[r_s]
                    v = seg[r_s, c_s]
                    d = exact_rows(Q[row], B[start + c_s], metric)
                    hit = (v[:, None] >= lo[row]) & (v[:, None] <= hi[row]) & (d[:, None] < positive_d[row])
                    counts[:, :, b] += np.bincount(
                        np.repeat(row * n_thr, n_thr) + np.tile(np.arange(n_thr), row.size),
                        weights=hit.ravel(), minlength=n_rows * n_thr).reshape(n_rows, n_thr).astype(np.int64)
    return counts


# ----------------------------------------------------------------------------------------------
# int8 codes: the CPU proxies of L2 matching and retrieval
# ----------------------------------------------------------------------------------------------
_Q = 127          # codes lie in [-127, 127]
_FOLD = 64        # |b|^2 spreads (product units) below this go into the bound, not into digit columns
_PRODUCT_BLOCK = 1 << 19  # int32 products per block of matching rows (2 MB: fewer numpy calls)


_SCRATCH = threading.local()


def _scratch(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A per-thread buffer of ``shape`` (its memory reused between calls: fresh large arrays cost page
    faults, often more than the arithmetic done in them)."""
    size = int(np.prod(shape))
    buf = getattr(_SCRATCH, name, None)
    if buf is None or buf.dtype != dtype or buf.size < size:
        buf = np.empty(size, dtype=dtype)
        setattr(_SCRATCH, name, buf)
    return buf[:size].reshape(shape)


class Int8Codes:
    """The rows x of a set as ``scale * q`` (q int8 in [-127, 127], one float32 scale per set), with
    the per-row sizes a rigorous bound of an inner product needs.

    For two sets, a.b = sA sB (qa.qb) + a.eb + ea.(sB qb) with e = x - s q, so by Cauchy-Schwarz
    |a.b - sA sB qa.qb| <= |a| |eb| + |ea| (|b| + |eb|). The integer product is exact (int32 sums of
    at most D 127^2). ``norm`` and ``resid`` are upper bounds of |x| and |e| (their rounding included);
    ``sq`` is |x|^2 within a relative ``sq_err`` (one compiled pass, ``kernels.int8_codes``).
    """

    def __init__(self, X: np.ndarray):
        X = np.ascontiguousarray(X, dtype=np.float32)
        self.dim = X.shape[1]
        top = float(np.abs(X).max(initial=0.0))
        self.scale = float(np.float32(top / _Q)) if top > 0 else 1.0
        self.q = np.empty(X.shape, dtype=np.int8)
        self.sq = np.empty(len(X), dtype=np.float64)
        residual_sq = np.empty(len(X), dtype=np.float64)
        kernels.int8_codes(X, np.float32(1 / self.scale), np.float32(self.scale), self.q, self.sq, residual_sq)
        # float64 sums of D exact squares: within a relative (D + 2) 2^-53 of the exact ones (and so
        # are their square roots, with one more rounding each)
        self.sq_err = (self.dim + 2) * 2.0 ** -52
        grow = 1 + self.sq_err
        self.norm = np.sqrt(self.sq * grow) * (1 + 2.0 ** -52)
        self.resid = np.sqrt(residual_sq * grow) * (1 + 2.0 ** -52)


def _digits(shift: np.ndarray, n_cols: int) -> np.ndarray:
    """Columns (rows of ``shift``, 1 + n_cols) of int8 digits d with d[0] + 127 (d[1] + ... ) = shift."""
    out = np.empty((len(shift), 1 + n_cols), dtype=np.int8)
    high, out[:, 0] = np.divmod(shift, _Q)
    for k in range(n_cols):
        out[:, 1 + k] = np.clip(high - _Q * k, 0, _Q)
    return out


class Int8Products:
    """Exact integer proxies ``V = [qa, 1, 127, ...] . [qb, -digits]`` of the scaled L2 proxy
    ``T = (|a|^2 - |a - b|^2) / (2 sA sB) + base`` (larger is nearer): ``digits`` spell
    ``rint(|b|^2 / (2 sA sB)) - base`` in int8; where those differ by at most ``_FOLD`` (normalised
    descriptors) ``V = qa.qb`` and the spread joins the bound. ``|V - T| <= bound`` (per row of A, a
    float). ``usable`` is False where the integers could overflow int32 (then use the float paths).
    """

    def __init__(self, a: Int8Codes, b: Int8Codes):
        self.units = a.scale * b.scale
        beta = b.sq / (2 * self.units)
        self.base = float(np.floor(beta.min())) if len(beta) else 0.0
        shift = np.rint(beta - self.base).astype(np.int64)
        top = int(shift.max(initial=0))
        dim = a.dim
        self.usable = dim * _Q * _Q + top < 2 ** 31 - 1
        if top <= _FOLD:  # (normalised descriptors) |b|^2 nearly equal: V = qa.qb, the spread bounded
            self.a_codes, self.b_codes = a.q, b.q
            self.base += (top + 0.5) / 2
            digits_error = (top + 0.5) / 2
        else:
            n_cols = -(-(top // _Q) // _Q)
            self.usable = self.usable and n_cols <= dim
            if not self.usable:
                return
            width = -(-(dim + 1 + n_cols) // 8) * 8
            self.b_codes = np.zeros((len(b.q), width), dtype=np.int8)
            self.b_codes[:, :dim] = b.q
            self.b_codes[:, dim:dim + 1 + n_cols] = -_digits(shift, n_cols)
            self.a_codes = np.zeros((len(a.q), width), dtype=np.int8)
            self.a_codes[:, :dim] = a.q
            self.a_codes[:, dim] = 1
            self.a_codes[:, dim + 1:dim + 1 + n_cols] = _Q
            digits_error = 0.5
        b_resid = float(b.resid.max(initial=0.0))
        b_norm = float(b.norm.max(initial=0.0))
        # inner-product bound + rounding of the digits + float32 error of |b|^2 + one unit of slack
        self.bound = ((a.norm * b_resid + a.resid * (b_norm + b_resid)) / self.units * (1 + 2.0 ** -40)
                      + digits_error + float(beta.max(initial=0.0)) * b.sq_err + 1.0)

    def products(self, a_rows, b_codes: torch.Tensor, out: torch.Tensor) -> np.ndarray:
        """V for the A rows ``a_rows`` (a slice or indices) against ``b_codes`` (a torch view of rows
        of ``self.b_codes``), written into ``out`` (int32, reused: fresh arrays cost page faults)."""
        a = torch.from_numpy(np.ascontiguousarray(self.a_codes[a_rows]))
        block = out.view(-1)[:len(a) * len(b_codes)].view(len(a), len(b_codes))  # contiguous
        return torch._int_mm(a, b_codes.T, out=block).numpy()


class Int8Nearest:
    """Nearest neighbours (L2) of the rows of ``A`` among the rows of ``B`` from ``Int8Products``.

    Rows whose second-largest V lies within 2 bound of the largest are decided by reference distances
    of every column in that window (ties -> lowest index, as ``np.argmin`` over the reference
    distances).
    """

    def __init__(self, A: np.ndarray, a: Int8Codes, B: np.ndarray, b: Int8Codes, metric: str):
        self.A, self.B, self.metric = A, B, metric
        self.proxies = Int8Products(a, b)
        self.usable = self.proxies.usable
        if self.usable:
            self.window = np.floor(2 * self.proxies.bound).astype(np.int64)
            self.t_b = torch.from_numpy(self.proxies.b_codes)

    def rows(self, start: int, stop: int, products: torch.Tensor, nn: np.ndarray, distance: np.ndarray
             ) -> None:
        """Nearest neighbours of rows ``start:stop`` of A and the reference distances to them, into
        ``nn`` and ``distance``; ``products`` is an int32 buffer of at least that many rows x len(B)."""
        V = self.proxies.products(slice(start, stop), self.t_b, products)
        kernels.nearest_from_products(V, self.window, self.A, start, self.B, metric_code(self.metric),
                                      nn, distance)


class Closer:
    """Negatives strictly closer to each query than each of its positives (L2), per block of the
    negative list, from float32 products ``P = |b|^2 - 2 q.b`` (``augmented``; proxies of |q - b|^2 -
    |q|^2 within ``tol = 4 (D + 2) u (|q|^2 + max |b|^2)``).

    A negative is closer than a positive of reference squared distance p where P < key = p - |q|^2:
    certainly where P < key - tol, certainly not where P > key + tol, and by reference distances in
    between (equal ones rank after the positive, as the official lists put positives first). Only
    negatives below the farthest positive's key + tol are looked at. (int8 products are faster, but
    their bound is too wide here: the positives lie among the negatives, not apart from them.)
    """

    COLUMNS = 2048  # negatives per product block: 128 queries x 2048 float32 = 1 MB

    def __init__(self, Q: np.ndarray, B: np.ndarray, metric: str):
        self.Q, self.B, self.metric = Q, B, metric
        self.q_aug = augmented(Q, np.float32, "a")
        self.b_aug = augmented(B, np.float32, "b")
        q64 = Q.astype(np.float64)
        self.q_sq = np.einsum("ij,ij->i", q64, q64)
        b_size = float(np.einsum("ij,ij->i", B, B, dtype=np.float64).max(initial=0.0))
        self.tol = 4.0 * (Q.shape[1] + 2) * _U32 * (self.q_sq + b_size) + 1e-30

    def count(self, rows: np.ndarray, negatives: np.ndarray, positive_ref: np.ndarray,
              positive_d: np.ndarray, limits: np.ndarray, out: np.ndarray) -> np.ndarray:
        """(len(rows), M, blocks) counts for queries ``rows`` against the negatives ``B[negatives]`` in
        list order; block b holds list positions ``limits[b-1] <= j < limits[b]``. ``positive_ref``
        (rows, M) are the positives' reference squared distances, ``positive_d`` their reference
        values in ``metric``; ``out`` a float32 buffer of at least len(rows) x COLUMNS."""
        n_rows, n_thr = positive_ref.shape
        n_blocks = len(limits)
        stop = int(limits[-1]) if n_blocks else 0
        if n_rows == 0 or stop == 0:
            return np.zeros((n_rows, n_thr, n_blocks), dtype=np.int64)
        tol = self.tol[rows]
        keys = positive_ref - self.q_sq[rows, None]
        perm = np.argsort(keys, axis=1, kind="stable")
        keys = np.take_along_axis(keys, perm, axis=1)  # ascending per row; perm maps back
        top = np.nextafter((keys[:, -1] + tol).astype(np.float32), np.float32(np.inf))
        q_aug = self.q_aug[rows]
        b_aug = self.b_aug[negatives[:stop]]
        # per (row, block): histogram of how many keys each candidate certainly does not beat
        hist = np.zeros((n_rows * n_blocks, n_thr + 1), dtype=np.int64)
        exact = np.zeros((n_rows * n_blocks, n_thr), dtype=np.int64)
        block_of = np.searchsorted(limits, np.arange(stop), side="right")
        q_rows = np.ascontiguousarray(rows, dtype=np.int64)
        b_rows = np.ascontiguousarray(negatives[:stop], dtype=np.int64)
        positive_d = np.ascontiguousarray(positive_d, dtype=np.float64)
        for c0 in range(0, stop, self.COLUMNS):
            b = b_aug[c0:c0 + self.COLUMNS]
            P = np.matmul(q_aug, b.T, out=out.reshape(-1)[:n_rows * len(b)].reshape(n_rows, len(b)))
            kernels.closer_counts(P, c0, top, keys, tol, block_of, self.Q, q_rows, self.B, b_rows, positive_d,
                                  perm, metric_code(self.metric), hist, exact)
        certain = np.cumsum(hist[:, :n_thr], axis=1)  # candidates with n_hi <= s beat sorted key s
        sorted_counts = (certain + exact).reshape(n_rows, n_blocks, n_thr)
        counts = np.empty((n_rows, n_thr, n_blocks), dtype=np.int64)
        np.put_along_axis(counts, np.broadcast_to(perm[:, :, None], counts.shape),
                          sorted_counts.transpose(0, 2, 1), axis=1)
        return counts


def nearest(A: np.ndarray, B: np.ndarray, metric: str, device=None, a_codes: Int8Codes | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest row of ``B`` for every row of ``A`` (ties -> lowest index of the reference distances)
    and the reference distance to it.

    On the CPU, L2: exact int8 products (``Int8Nearest``) in row blocks whose products fit in the L2
    cache; on ``device``, for L1, or where int8 integers could overflow: float32 products
    (``match_block``). ``a_codes`` are ``Int8Codes(A)`` when the caller reuses them.
    """
    n = len(A)
    distance = np.empty(n, dtype=np.float64)
    if n == 0:
        return np.empty(0, dtype=np.int64), distance
    A, B = _kernel_rows(A), _kernel_rows(B)
    if device is None and metric != "L1":
        kernel = Int8Nearest(A, a_codes if a_codes is not None else Int8Codes(A), B, Int8Codes(B), metric)
        if kernel.usable:
            nn = np.empty(n, dtype=np.int64)
            rows = max(1, min(n, _PRODUCT_BLOCK // max(len(B), 1)))
            products = torch.from_numpy(_scratch("products", (rows * len(B),), np.int32))
            for s in range(0, n, rows):
                kernel.rows(s, min(n, s + rows), products, nn, distance)
            return nn, distance
    a_aug = b_aug = b_size = None
    if metric != "L1":
        a_aug, b_aug = augmented(A, np.float32, "a"), augmented(B, np.float32, "b")
        b_size = float(b_aug[:, -1].max(initial=0.0))
        if device is not None:
            a_aug, b_aug = (torch.from_numpy(x).to(_torch_device(device)) for x in (a_aug, b_aug))
    rows = max(1, min(n, (1 << 19) // max(len(B), 1)))
    nn = np.concatenate([
        match_block(A[s:s + rows], B, metric, a_aug=None if a_aug is None else a_aug[s:s + rows],
                    b_aug=b_aug, device=device, b_size=b_size) for s in range(0, n, rows)])
    return nn, exact_pairs(A, np.arange(n), B, nn, metric)
