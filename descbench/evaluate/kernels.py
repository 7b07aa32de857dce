"""Compiled inner loops of the HPatches tasks (numba, compiled on first use and cached on disk).

The matching and retrieval kernels make one pass over a block of fast proxies (int8 or float32
products, computed by torch/BLAS) while the block is in cache, and compute reference distances for the
few entries the proxies' error bound cannot decide, reading the two descriptors directly (no gathered
copies). Verification has its distance pass, radix sort and merge count here too.

Reference distances sum the squared float64 differences in coordinate order, as scipy's ``cdist``
does (bit for bit: the official benchmark's matching distances). Verification distances take the
difference in float32 and round the norm to float32, as the official verification does. All kernels
release the GIL, so the callers' worker threads run them in parallel.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_OPTIONS = dict(nogil=True, cache=True, boundscheck=False)


@njit(**_OPTIONS)
def _reference(a, b, metric):
    """The reference distance of one pair (metric 0 = L2, 1 = squared L2, 2 = L1): float64 terms
    summed in coordinate order, as scipy's ``cdist``."""
    s = 0.0
    if metric == 2:
        for k in range(a.shape[0]):
            s += abs(np.float64(a[k]) - np.float64(b[k]))
        return s
    for k in range(a.shape[0]):
        d = np.float64(a[k]) - np.float64(b[k])
        s += d * d
    return np.sqrt(s) if metric == 0 else s


@njit(**_OPTIONS)
def _reference4(a0, b0, a1, b1, a2, b2, a3, b3, metric):
    """``_reference`` of four pairs at once: the same sums, interleaved so that four additions are in
    flight (one sum is a chain of dependent additions)."""
    s0 = s1 = s2 = s3 = 0.0
    if metric == 2:
        for k in range(a0.shape[0]):
            s0 += abs(np.float64(a0[k]) - np.float64(b0[k]))
            s1 += abs(np.float64(a1[k]) - np.float64(b1[k]))
            s2 += abs(np.float64(a2[k]) - np.float64(b2[k]))
            s3 += abs(np.float64(a3[k]) - np.float64(b3[k]))
        return s0, s1, s2, s3
    for k in range(a0.shape[0]):
        d0 = np.float64(a0[k]) - np.float64(b0[k])
        d1 = np.float64(a1[k]) - np.float64(b1[k])
        d2 = np.float64(a2[k]) - np.float64(b2[k])
        d3 = np.float64(a3[k]) - np.float64(b3[k])
        s0 += d0 * d0
        s1 += d1 * d1
        s2 += d2 * d2
        s3 += d3 * d3
    if metric == 0:
        return np.sqrt(s0), np.sqrt(s1), np.sqrt(s2), np.sqrt(s3)
    return s0, s1, s2, s3


@njit(**_OPTIONS)
def reference_pairs(A, ia, B, ib, metric, out):
    """``out[p]`` = the reference distance of ``A[ia[p]]`` and ``B[ib[p]]``."""
    n = ia.shape[0]
    p = 0
    while p + 4 <= n:
        out[p], out[p + 1], out[p + 2], out[p + 3] = _reference4(
            A[ia[p]], B[ib[p]], A[ia[p + 1]], B[ib[p + 1]], A[ia[p + 2]], B[ib[p + 2]],
            A[ia[p + 3]], B[ib[p + 3]], metric)
        p += 4
    for q in range(p, n):
        out[q] = _reference(A[ia[q]], B[ib[q]], metric)


@njit(**_OPTIONS)
def nearest_from_products(V, window, A, row0, B, metric, nn, distance):
    """Nearest rows of ``B`` for rows ``row0 .. row0 + len(V)`` of ``A`` from integer proxies ``V``
    (larger is nearer, each within ``window[row] / 2`` of an exact affine map of the squared distance).

    Per row: the largest proxy; every column within ``window`` of it may be the nearest, and the
    smallest reference distance among them decides (ties: lowest column, as ``argmin``).
    Writes ``nn[row]`` and the reference distance ``distance[row]``.
    """
    n, m = V.shape
    counts = np.empty(n + 1, dtype=np.int64)  # row i's candidates: pairs counts[i] .. counts[i + 1]
    ia = np.empty(n * 4, dtype=np.int64)
    ib = np.empty(n * 4, dtype=np.int64)
    total = 0
    counts[0] = 0
    for i in range(n):
        row = V[i]
        best = row[0]
        for j in range(1, m):
            best = max(best, row[j])
        # how many columns lie within the window, and the sum of their indices (vectorised passes;
        # int32 arithmetic, the threshold clamped so that it cannot wrap around)
        threshold = np.int32(max(np.int64(best) - window[row0 + i], -2147483648))
        inside = np.int32(0)
        index_sum = np.int32(0)
        for j in range(m):
            hit = np.int32(row[j] >= threshold)
            inside += hit
            index_sum += hit * np.int32(j)
        if total + inside > ia.shape[0]:
            grow = max(2 * ia.shape[0], total + inside)
            ia = np.concatenate((ia, np.empty(grow - ia.shape[0], dtype=np.int64)))
            ib = np.concatenate((ib, np.empty(grow - ib.shape[0], dtype=np.int64)))
        ia[total:total + inside] = row0 + i
        if inside == 1:  # the maximum alone: its index is the sum
            ib[total] = index_sum
        else:
            k = total
            for j in range(m):
                if row[j] >= threshold:
                    ib[k] = j
                    k += 1
        total += inside
        counts[i + 1] = total
    d = np.empty(total, dtype=np.float64)
    reference_pairs(A, ia[:total], B, ib[:total], metric, d)
    for i in range(n):
        best = counts[i]
        for c in range(counts[i] + 1, counts[i + 1]):  # ascending columns: a tie keeps the lower one
            if d[c] < d[best]:
                best = c
        nn[row0 + i] = ib[best]
        distance[row0 + i] = d[best]


@njit(**_OPTIONS)
def _block_sum32(x, start, n):
    """numpy's float32 sum of a block of at most 128: eight running sums, combined pairwise."""
    if n < 8:
        s = np.float32(0.0)
        for k in range(start, start + n):
            s += x[k]
        return s
    r = x[start:start + 8].copy()
    k = 8
    while k < n - n % 8:
        for lane in range(8):
            r[lane] += x[start + k + lane]
        k += 8
    s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    for q in range(k, n):
        s += x[start + q]
    return s


@njit(**_OPTIONS)
def _pairwise_sum32(x, n):
    """numpy's float32 ``sum`` of ``x[:n]``, bit for bit: blocks of at most 128 (``_block_sum32``),
    larger ranges halved (the left half a multiple of 8) and the halves' sums added. The recursion
    runs on explicit stacks (numba cannot cache recursive functions)."""
    todo_start = np.empty(64, dtype=np.int64)
    todo_n = np.empty(64, dtype=np.int64)
    todo_combine = np.empty(64, dtype=np.bool_)
    sums = np.empty(64, dtype=np.float32)
    todo_start[0], todo_n[0], todo_combine[0] = 0, n, False
    depth, done = 1, 0
    while depth:
        depth -= 1
        start, size = todo_start[depth], todo_n[depth]
        if todo_combine[depth]:
            done -= 1
            sums[done - 1] = sums[done - 1] + sums[done]
        elif size <= 128:
            sums[done] = _block_sum32(x, start, size)
            done += 1
        else:
            half = size // 2
            half -= half % 8
            # evaluated in the order left, right, then their sum
            todo_start[depth], todo_n[depth], todo_combine[depth] = start, size, True
            todo_start[depth + 1], todo_n[depth + 1], todo_combine[depth + 1] = start + half, size - half, False
            todo_start[depth + 2], todo_n[depth + 2], todo_combine[depth + 2] = start, half, False
            depth += 3
    return sums[0]


@njit(fastmath={"reassoc", "contract"}, **_OPTIONS)
def _sum_squared_differences32(a, b):
    """sum((a - b)^2) of float32 rows, the differences in float32 and the squares (exact) summed in
    float64 in any order (vectorised): the order changes the float32 rounding of the L2 norm only in
    double-rounding cases, of probability about 1e-8 per pair."""
    s = 0.0
    for k in range(a.shape[0]):
        d = np.float64(a[k] - b[k])
        s += d * d
    return s


@njit(**_OPTIONS)
def _verification_distance(a, b, metric, scratch):
    """One verification distance as the official code rounds it: the difference in float32; L2: its
    norm from float64 squares, rounded to float32; L1: numpy's float32 sum of its absolute values;
    squared L2 (MATLAB): the float64 sum of squares."""
    dim = a.shape[0]
    if metric == 2:
        for k in range(dim):
            scratch[k] = abs(a[k] - b[k])
        return np.float64(_pairwise_sum32(scratch, dim))
    total = _sum_squared_differences32(a, b)
    return np.float64(np.float32(np.sqrt(total))) if metric == 0 else total


@intrinsic
def _prefetch(typingctx, array, image, row, column):
    """Hint the CPU to fetch the cache line of ``array[image, row, column]`` (a 3-D array) into
    cache; no effect on results."""
    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, view, list(args[1:]))
        byte_pointer = ir.IntType(8).as_pointer()
        int32 = ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, int32, int32, int32]),
            "llvm.prefetch.p0")
        # read, high temporal locality, data cache
        builder.call(prefetch, [builder.bitcast(pointer, byte_pointer), ir.Constant(int32, 0),
                                ir.Constant(int32, 3), ir.Constant(int32, 1)])
        return context.get_dummy_value()

    return types.void(array, image, row, column), codegen


_AHEAD = 8  # verification pairs between a prefetch and the pair's distances


@njit(**_OPTIONS)
def verification_distances(data, p1, t1, p2, t2, bases, metric, start, stop, out):
    """Distances of pairs ``start:stop`` at every level: pair k joins image ``t1[k]`` row ``p1[k]``
    and image ``t2[k]`` row ``p2[k]`` of ``data`` (images, rows, dim), where image number t of level
    L is ``data[0]`` for t = 0 and ``data[bases[L] + t]`` otherwise; into ``out[L, k]``.

    Pairs sorted by first row stream those rows through the cache; the rows of the pair ``_AHEAD``
    places later are prefetched, so that many memory reads are in flight.
    """
    scratch = np.empty(data.shape[2], dtype=np.float32)
    dim = data.shape[2]
    for k in range(start, stop):
        f = k + _AHEAD
        if f < stop:
            for level in range(bases.shape[0]):
                image1 = 0 if t1[f] == 0 else bases[level] + t1[f]
                image2 = 0 if t2[f] == 0 else bases[level] + t2[f]
                for column in range(0, dim, 16):  # 16 float32: one 64-byte line
                    _prefetch(data, image1, p1[f], column)
                    _prefetch(data, image2, p2[f], column)
        for level in range(bases.shape[0]):
            image1 = 0 if t1[k] == 0 else bases[level] + t1[k]
            image2 = 0 if t2[k] == 0 else bases[level] + t2[k]
            out[level, k] = _verification_distance(data[image1, p1[k]], data[image2, p2[k]], metric, scratch)


@njit(**_OPTIONS)
def sort_pairs(p1, t1, p2, t2, n_rows):
    """The pairs ``(p1, t1, p2, t2)`` in stable ascending order of ``p1`` (rows ``0 .. n_rows - 1``)
    and that order (file rows): a counting sort that reads the pairs in file order and writes each
    to its place (``np.argsort(p1, kind="stable")`` and four gathers, in linear time)."""
    counts = np.zeros(n_rows + 1, dtype=np.int64)
    for key in p1:
        counts[key + 1] += 1
    for b in range(n_rows):
        counts[b + 1] += counts[b]
    n = p1.shape[0]
    order = np.empty(n, dtype=np.int64)
    s1 = np.empty(n, dtype=np.int64)
    u1 = np.empty(n, dtype=np.int64)
    s2 = np.empty(n, dtype=np.int64)
    u2 = np.empty(n, dtype=np.int64)
    for i in range(n):
        at = counts[p1[i]]
        counts[p1[i]] += 1
        order[at], s1[at], u1[at], s2[at], u2[at] = i, p1[i], t1[i], p2[i], t2[i]
    return order, s1, u1, s2, u2


_DIGIT = 11  # bits per radix-sort pass


@njit(**_OPTIONS)
def sort_nonnegative(values):
    """``np.sort`` of float64 values that are all >= +0.0 (distances), by a radix sort of their bit
    patterns (which order such floats as integers); passes whose digit is one value throughout (the
    zero low bits of float32 distances, the common exponent) are skipped."""
    n = values.shape[0]
    keys = values.view(np.uint64).copy()
    spare = np.empty_like(keys)
    n_buckets = 1 << _DIGIT
    mask = np.uint64(n_buckets - 1)
    counts = np.zeros(n_buckets, dtype=np.int64)
    for shift in range(0, 64, _DIGIT):
        step = np.uint64(shift)
        counts[:] = 0
        for key in keys:
            counts[(key >> step) & mask] += 1
        if counts.max() == n:
            continue
        total = 0
        for b in range(n_buckets):
            c = counts[b]
            counts[b] = total
            total += c
        for key in keys:
            digit = (key >> step) & mask
            spare[counts[digit]] = key
            counts[digit] += 1
        keys, spare = spare, keys
    return keys.view(np.float64)


@njit(**_OPTIONS)
def negatives_before(sorted_negatives, sorted_positives, positives_first):
    """For each positive (ascending), the negatives ranked before it when both lists merge by a stable
    sort: those strictly smaller (positives first on ties) or not larger (negatives first);
    ``np.searchsorted`` in one linear pass."""
    out = np.empty(sorted_positives.shape[0], dtype=np.int64)
    j = 0
    n = sorted_negatives.shape[0]
    for i in range(sorted_positives.shape[0]):
        p = sorted_positives[i]
        if positives_first:
            while j < n and sorted_negatives[j] < p:
                j += 1
        else:
            while j < n and sorted_negatives[j] <= p:
                j += 1
        out[i] = j
    return out


@njit(**_OPTIONS)
def closer_counts(P, c0, top, keys, tol, block_of, Q, q_rows, B, b_rows, positive_d, perm, metric, hist,
                  exact):
    """Retrieval: which negatives beat which positives, from float32 proxies ``P`` (queries x
    negatives ``c0 ..``; proxy of |q - b|^2 - |q|^2 within ``tol[row]``).

    ``keys[row]`` are the positives' reference squared distances minus |q|^2, ascending (``perm[row]``
    maps them back to the columns of ``positive_d``). A negative with proxy v beats sorted key s
    certainly where v + tol < key, certainly not where v - tol >= key; in between its reference
    distance decides (equal ranks after the positive). Per cell (row x pool block of the negative's
    list position, ``block_of``): ``hist[cell, h]`` counts the negatives that certainly beat exactly
    the keys from h on; ``exact[cell, s]`` the undecided ones that beat key s. Only negatives with
    ``v <= top[row]`` (below the farthest key + tol) can beat any.
    """
    n_rows, n_cols = P.shape
    n_blocks = hist.shape[0] // n_rows
    n_keys = keys.shape[1]
    for r in range(n_rows):
        limit = top[r]
        for c in range(n_cols):
            if P[r, c] > limit:
                continue
            v = np.float64(P[r, c])
            high, low = v + tol[r], v - tol[r]
            n_hi = 0
            n_lo = 0
            for s in range(n_keys):
                n_hi += keys[r, s] <= high
                n_lo += keys[r, s] < low
            cell = r * n_blocks + block_of[c0 + c]
            hist[cell, n_hi] += 1
            if n_lo < n_hi:
                d = _reference(Q[q_rows[r]], B[b_rows[c0 + c]], metric)
                for s in range(n_lo, n_hi):
                    if d < positive_d[r, perm[r, s]]:
                        exact[cell, s] += 1


@njit(fastmath={"reassoc", "contract"}, **_OPTIONS)
def int8_codes(X, inverse, scale, q, squares, residual_squares):
    """``q = clip(rint(X * inverse), -127, 127)`` (float32 product, as numpy), ``squares`` = |x|^2 and
    ``residual_squares`` = |x - scale q|^2 per row, summed in float64 in any order (vectorised: each
    square of a float32, and each residual x - scale q, is exact in float64, so any order of the sum
    is within a relative (D - 1) 2^-53 of the exact value)."""
    n, dim = X.shape
    codes = np.empty(dim, dtype=np.float32)
    for i in range(n):
        for k in range(dim):
            codes[k] = min(max(np.rint(X[i, k] * inverse), np.float32(-127.0)), np.float32(127.0))
        sq = 0.0
        rsq = 0.0
        for k in range(dim):
            q[i, k] = np.int8(codes[k])
            x = np.float64(X[i, k])
            e = x - np.float64(scale) * np.float64(codes[k])
            sq += x * x
            rsq += e * e
        squares[i] = sq
        residual_squares[i] = rsq
