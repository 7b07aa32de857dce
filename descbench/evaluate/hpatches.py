"""HPatches verification, matching and retrieval, as the official benchmark computes them.

Two conventions (docs/protocols.md §1.6-1.9):

``python`` (default; the numbers HardNet-family papers report) follows hpatches-benchmark
``python/utils/tasks.py`` + ``metrics.py``: L2 (or L1) distance; trapezoidal AP starting at
(recall 0, precision 1); stable sorts; verification lists negatives first (ties count against the
descriptor), retrieval lists positives first; verification balanced = ROC AUC over all pairs,
imbalanced = AP over all negatives + the first 20 % of the positives; matching over the split's test
sequences with every ref patch a positive; retrieval pools of 5 positives + the first k - 5
distractors from other sequences in file order, k in {100, 500, 1000, 5000, 10000, 15000, 20000}.

``matlab`` follows ``matlab/+bench``: squared L2 (or L1); TREC AP (vl_pr ``info.ap``); positives listed
first everywhere; imbalanced = the first floor(0.2 * #neg) positives; matching over every sequence
present (the split is ignored); retrieval over all distractors with those from the query's sequence
ignored (neither true nor false positives). Its balanced verification score is the trapezoid ROC AUC
with positives first (not compared with VLFeat's ``vl_roc``).

Paper aggregates (``summarise``): verification = mean of the 6 imbalanced APs (inter/intra x E/H/T);
matching = mean of the 6 (illumination/viewpoint x E/H/T) cells, each the mean over its sequences of
the mean over images 1..5; retrieval = mean over E/H/T of the mean over the pool sizes.

Distances: see ``distances.py``. Verification distances are the official ones bit for bit (scipy's
per-pair euclidean / cityblock of the float32 descriptors: float32 differences, float32-rounded norm);
matching and retrieval decisions are exact with respect to the official float64 distances (scipy
``cdist``, reproduced bit for bit): fast proxies decide wherever their rigorous error bound can,
reference distances everywhere else (ties, near-ties), so degenerate descriptors are slower, never
wrong. The inner loops are compiled (``kernels.py``, numba): verification computes the three levels in
one prefetching pass over the pairs ordered by first patch, radix-sorts each list and counts the
negatives before each positive in one merge; matching finds nearest neighbours from exact int8
products on the CPU (float32 on a torch device) with one pass over each block of products; retrieval
counts, per query, the distractors closer than each positive within every pool from float32 products.
Cross-checked against the official python code on generated data (docs/protocols.md §0): all per-cell
numbers agree to 2.2e-16; the tests check every cell against a plain float64 path on data full of
exact ties and near-ties.

Levels are named easy/hard/tough; categories illumination (``i_*``) / viewpoint (``v_*``).
"""

from __future__ import annotations

import logging
import mmap
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from descbench.errors import DescbenchError
from descbench.progress import progress
from descbench.evaluate import distances as dist
from descbench.evaluate import kernels
from descbench.evaluate import tasks as taskfiles
from descbench.evaluate.ranking import (
    average_precision,
    negatives_before_positives,
    roc_auc,
    stable_rank,
)
from descbench.fileio import atomic_dir, write_csv, write_json

log = logging.getLogger(__name__)

IMAGE_TYPES = ("ref",) + tuple(f"{lvl}{k}" for lvl in "eht" for k in range(1, 6))
LEVELS = ("easy", "hard", "tough")
LEVEL_BASE = {"easy": 0, "hard": 5, "tough": 10}  # image type index of level L, image k: base + k
NEGATIVES = ("inter", "intra")
PROTOCOLS = ("balanced", "imbalanced")
POOL_SIZES = (100, 500, 1000, 5000, 10000, 15000, 20000)
N_POSITIVES_RETRIEVAL = 5
CONVENTIONS = ("python", "matlab")
TASKS = ("verification", "matching", "retrieval")
_QUERY_BLOCK = 128  # retrieval queries per product block
_DEGENERACY_SAMPLE = 20000   # ref descriptors looked at by HPatchesDescriptors.degeneracy
_DEGENERATE_SHARE = 0.10     # one vector shared by this fraction of them
_DEGENERATE_DISTINCT = 0.5   # fewer distinct vectors than this fraction
_COLLAPSED_SPREAD = 1e-4     # typical distance between two descriptors / their norm


@dataclass(frozen=True)
class Convention:
    name: str
    metric: str
    ap_kind: str
    positives_first: bool


def convention_for(name: str, distance: str = "L2") -> Convention:
    """The scoring rules of ``name`` with ``distance`` L2 or L1 (MATLAB's L2 is the squared one)."""
    if name not in CONVENTIONS:
        raise DescbenchError(f"unknown convention {name!r}; use one of {', '.join(CONVENTIONS)}")
    if distance not in ("L2", "L1"):
        raise DescbenchError(f"unknown distance {distance!r}; use L2 or L1")
    if name == "python":
        return Convention(name, distance, "trapezoid", positives_first=False)
    return Convention(name, "L2sq" if distance == "L2" else "L1", "trec", positives_first=True)


# ----------------------------------------------------------------------------------------------
# descriptors
# ----------------------------------------------------------------------------------------------
class HPatchesDescriptors:
    """Descriptors of every patch of every sequence, stacked for vectorised lookups.

    ``data`` is float32 (16, total, dim): image-major, so each image type of a sequence is one
    contiguous (N, dim) block; image types in ``IMAGE_TYPES`` order. Sequence ``names[k]`` owns rows
    ``offsets[k]:offsets[k + 1]``. ``from_dir`` fills it straight from descriptor files (one copy of
    the data in memory).
    """

    def __init__(self, per_sequence: Mapping[str, np.ndarray] | None = None, *,
                 lengths: Mapping[str, int] | None = None, dim: int | None = None):
        if lengths is not None:  # an empty container to fill with ``put``
            self._layout(dict(lengths), dim)
            return
        if not per_sequence:
            raise DescbenchError("no descriptors given: the descriptor set has no sequences")
        dims = set()
        for name, arr in per_sequence.items():
            if arr.ndim != 3 or arr.shape[0] != len(IMAGE_TYPES):
                raise DescbenchError(
                    f"descriptors of sequence {name}: expected shape (16, N, dim) in the order "
                    f"{','.join(IMAGE_TYPES)}, got {arr.shape}")
            dims.add(arr.shape[2])
        if len(dims) != 1:
            raise DescbenchError(f"descriptors have different dimensions across sequences: {sorted(dims)}")
        self._layout({name: arr.shape[1] for name, arr in per_sequence.items()}, dims.pop())
        for name, arr in per_sequence.items():
            for image in range(len(IMAGE_TYPES)):
                self.put(name, image, arr[image])

    def _layout(self, lengths: dict[str, int], dim: int | None) -> None:
        if not lengths:
            raise DescbenchError("no descriptors given: the descriptor set has no sequences")
        if dim is None or dim < 1:
            raise DescbenchError("descriptors have dimension 0; every descriptor needs at least one value")
        self.names = tuple(sorted(lengths))
        self.dim = int(dim)
        self.offsets = np.concatenate([[0], np.cumsum([lengths[n] for n in self.names])]).astype(np.int64)
        self.data = _anonymous_pages((len(IMAGE_TYPES), int(self.offsets[-1]), self.dim))
        self.index = {name: k for k, name in enumerate(self.names)}

    def put(self, name: str, image: int, table: np.ndarray, origin: str | None = None) -> None:
        """Copy the (N, dim) descriptors of one image type of sequence ``name`` into place."""
        k = self.index[name]
        block = self.data[image, self.offsets[k]:self.offsets[k + 1]]
        if table.shape != block.shape:
            raise DescbenchError(f"{origin or name}: expected {block.shape[0]} x {block.shape[1]} "
                                 f"descriptors, got {' x '.join(map(str, table.shape))}")
        with np.errstate(over="ignore", invalid="ignore"):
            block[...] = table
        if not np.isfinite(block).all():
            raise DescbenchError(
                f"descriptors of sequence {name} contain NaN or Inf ({origin or IMAGE_TYPES[image]}); fix "
                "the descriptor (e.g. normalise with an epsilon)")

    @classmethod
    def from_dir(cls, path: str | os.PathLike, expected_lengths: Mapping[str, int] | None = None
                 ) -> HPatchesDescriptors:
        """Read ``<path>/<seq>/<type>.npy|.csv`` for every sequence folder into one container.

        .npy files are memory-mapped for their shapes and copied once into place; .csv files (',' or
        ';', no header, as the official benchmark reads them) are line-counted first, then parsed with
        the C parser into place. ``expected_lengths`` (sequence -> patches the task files need) checks
        N. Files are found by ``extract.descriptor_files``; unreadable ones get ``extract``'s clear errors.
        """
        from descbench.evaluate import extract

        files = extract.descriptor_files(path)
        shapes: dict[str, tuple[int, int]] = {}
        for name, found in files.items():
            seq_shapes = {_table_shape(f, extract) for f in found}
            if len(seq_shapes) != 1:
                raise DescbenchError(f"descriptor files in {found[0].parent} disagree in shape: "
                                     f"{sorted(seq_shapes)}")
            shapes[name] = seq_shapes.pop()
        dims = {d for _, d in shapes.values()}
        if len(dims) != 1:
            raise DescbenchError(f"descriptors have different dimensions across sequences: {sorted(dims)}")
        if expected_lengths is not None:
            check_lengths({n: s[0] for n, s in shapes.items()}, expected_lengths, str(path))
        desc = cls(lengths={n: s[0] for n, s in shapes.items()}, dim=dims.pop())
        for name, found in progress(files.items(), total=len(files), desc="read descriptors",
                                    unit="seq", leave=False, logger=log):
            for image, f in enumerate(found):
                if not desc.read_npy(name, image, f):
                    desc.put(name, image, _read_fast(f, extract), str(f))
        return desc

    def read_npy(self, name: str, image: int, f: Path) -> bool:
        """Read a C-order float32 .npy of the block's shape straight into place (one copy, no
        temporary); False where the file needs the general path (``put``)."""
        k = self.index[name]
        block = self.data[image, self.offsets[k]:self.offsets[k + 1]]
        header = _npy_header(f) if f.suffix == ".npy" else None
        if header is None or header[0] != block.shape or header[1] != np.dtype("<f4") or header[2]:
            return False
        with open(f, "rb") as fh:
            fh.seek(header[3])
            got = fh.readinto(memoryview(block).cast("B"))
        if got != block.nbytes:
            raise DescbenchError(
                f"descriptor file {f} is cut short: its header promises {block.shape[0]} x {block.shape[1]} "
                f"float32 ({block.nbytes} bytes of data) but it holds {got}; write the file again")
        if not np.isfinite(block).all():
            raise DescbenchError(
                f"descriptors of sequence {name} contain NaN or Inf ({f}); fix the descriptor (e.g. "
                "normalise with an epsilon)")
        return True

    def __len__(self) -> int:
        return len(self.names)

    def length(self, name: str) -> int:
        k = self.index[name]
        return int(self.offsets[k + 1] - self.offsets[k])

    def sequence(self, name: str, image: int) -> np.ndarray:
        """(N, dim) descriptors of one image type of one sequence (a contiguous view)."""
        k = self.index[name]
        return self.data[image, self.offsets[k]:self.offsets[k + 1]]

    def degeneracy(self) -> str | None:
        """Why the ref descriptors look degenerate, or None. A warning only (the scores stand).

        Exact ties decide the official tie rules (python retrieval lists positives first, so a
        constant descriptor scores retrieval mAP 1), so near-degenerate output is caught too: on an
        evenly spaced sample of the ref descriptors, one vector shared by >= 10 % of them, fewer than
        half of them distinct, or a typical distance between two of them below 1e-4 of their norm.
        """
        ref = self.data[0]
        n = len(ref)
        if n < 2:
            return None
        take = np.unique(np.linspace(0, n - 1, min(n, _DEGENERACY_SAMPLE)).round().astype(np.int64))
        sample = np.ascontiguousarray(ref[take]) + np.float32(0)  # + 0 turns -0.0 into 0.0
        m = len(sample)
        _, counts = np.unique(sample.view(np.dtype((np.void, sample.strides[0]))).ravel(),
                              return_counts=True)
        largest, distinct = counts.max() / m, len(counts) / m
        if largest >= _DEGENERATE_SHARE:
            what = ("all the ref descriptors are identical" if len(counts) == 1 else
                    f"{100 * largest:.1f} % of the ref descriptors (sample of {m}) are one and the same vector")
        elif distinct < _DEGENERATE_DISTINCT:
            what = f"only {100 * distinct:.1f} % of the ref descriptors (sample of {m}) are distinct"
        else:
            s64 = sample.astype(np.float64)
            spread = float(np.median(np.linalg.norm(s64 - s64[(np.arange(m) + m // 2) % m], axis=1)))
            scale = float(np.median(np.linalg.norm(s64, axis=1)))
            if not spread <= _COLLAPSED_SPREAD * scale:
                return None
            what = (f"the ref descriptors have collapsed: two of them differ by {spread:.3g} (median over a "
                    f"sample of {m} pairs), {spread / scale:.1e} of their norm {scale:.3g}")
        return (f"degenerate descriptor: {what}. Ties and float32 rounding then decide the scores (the "
                "official python convention lists positives first in retrieval, so a constant descriptor "
                "scores retrieval mAP 1); check the descriptor before trusting its numbers")

    def rows(self, names: Sequence[str], seq_codes: np.ndarray, idx: np.ndarray, origin: str) -> np.ndarray:
        """Global rows of (names[seq_codes], idx); missing sequences or out-of-range idx are errors."""
        missing = [n for n in names if n not in self.index]
        if missing:
            raise DescbenchError(
                f"{origin} refers to sequences without descriptors: {', '.join(missing[:5])}"
                f"{' …' if len(missing) > 5 else ''}; compute descriptors for every sequence")
        k = np.array([self.index[n] for n in names], dtype=np.int64)[seq_codes]
        n = self.offsets[k + 1] - self.offsets[k]
        bad = np.flatnonzero((idx < 0) | (idx >= n))
        if bad.size:
            r = bad[0]
            raise DescbenchError(
                f"{origin}: patch index {idx[r]} is out of range for sequence {self.names[k[r]]} "
                f"with {n[r]} descriptors; the descriptors do not match the task files' patches")
        return self.offsets[k] + idx


def _anonymous_pages(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised float32 array in anonymous memory of 4 KB pages, populated in one call.

    ``np.empty`` of this size asks for transparent huge pages, whose allocation (memory compaction)
    cost 2-4 s of kernel time for the 1.3 GB of the full HPatches set on a busy machine; populating
    4 KB pages at once costs about 0.5 s.
    """
    nbytes = int(np.prod(shape)) * 4
    if nbytes == 0 or not hasattr(mmap, "MAP_ANONYMOUS"):
        return np.empty(shape, dtype=np.float32)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    return np.frombuffer(mmap.mmap(-1, nbytes, flags=flags), dtype=np.float32).reshape(shape)


def _npy_header(f: Path) -> tuple[tuple, np.dtype, bool, int] | None:
    """(shape, dtype, fortran order, data offset) of a .npy file from its header, or None."""
    try:
        with open(f, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read is None:
                return None
            shape, fortran, dtype = read(fh)
            return tuple(shape), dtype, bool(fortran), fh.tell()
    except (ValueError, EOFError, OSError):
        return None


def _table_shape(f: Path, extract) -> tuple[int, int]:
    """(rows, columns) of a descriptor file without parsing it (odd files: extract's reader)."""
    if f.suffix == ".npy":
        header = _npy_header(f)
        if header is None or len(header[0]) != 2 or header[1].kind not in "fiu" or header[0][1] < 2:
            return extract._read_table(f).shape  # raises its clear error
        return int(header[0][0]), int(header[0][1])
    raw = f.read_bytes()
    first = raw.split(b"\n", 1)[0]
    text = first.decode("utf-8", "replace")
    cols = text.count(";" if ";" in text else ",") + 1
    if cols < 2 or not raw.strip() or b"\n\n" in raw.strip():
        return extract._read_table(f).shape
    return raw.count(b"\n") + (0 if raw.endswith(b"\n") else 1), cols


def _read_fast(f: Path, extract) -> np.ndarray:
    """The (N, dim) table of one descriptor file: memory-mapped .npy, or the C CSV parser."""
    if f.suffix == ".npy":
        try:
            arr = np.load(f, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:  # a whole header over data cut short
            raise DescbenchError(f"cannot read descriptor file {f} ({exc}); write the file again") from exc
        return arr if arr.dtype == np.float32 else np.asarray(arr, dtype=np.float64)
    try:
        with open(f, "rb") as fh:
            first = fh.readline()
        sep = ";" if b";" in first else ","
        return pd.read_csv(f, header=None, sep=sep, dtype=np.float32, engine="c").to_numpy()
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return extract._read_table(f)  # the clear error


def check_lengths(found: Mapping[str, int], expected: Mapping[str, int], origin: str) -> None:
    """Descriptors per sequence against the task files (``expected``: sequence -> 1 + the largest
    patch index the task files use there)."""
    missing = sorted(set(expected) - set(found))
    if missing:
        raise DescbenchError(
            f"{origin} has no descriptors for sequences {', '.join(missing[:5])}"
            f"{' …' if len(missing) > 5 else ''} that the task files use; compute descriptors for every "
            "sequence")
    short = sorted(n for n in expected if found[n] < expected[n])
    if short:
        n = short[0]
        raise DescbenchError(
            f"{origin}/{n}: {found[n]} descriptors per file, but the task files use patch index "
            f"{expected[n] - 1} of that sequence (>= {expected[n]} patches needed; {len(short)} "
            "sequence(s) too short): the descriptors come from other patches than the task files")


def task_lengths(files: taskfiles.TaskFiles) -> dict[str, int]:
    """Sequence -> 1 + the largest patch index of it in the task files read (``files``): the patches
    each sequence must at least have."""
    need: dict[str, int] = {}

    def add(names, seq, idx):
        if len(idx) == 0:
            return
        top = np.full(len(names), -1, dtype=np.int64)
        np.maximum.at(top, seq, idx)
        for n, t in zip(names, top):
            if t >= 0:
                need[n] = max(need.get(n, 0), int(t) + 1)

    for lst in (files.queries, files.distractors):
        if lst is not None:
            add(lst.names, lst.seq, lst.idx)
    for t in files.pairs.values():
        add(t.names, t.seq1, t.idx1)
        add(t.names, t.seq2, t.idx2)
    return need


def _image(t: np.ndarray, level: str) -> np.ndarray:
    """Image type index of task-file image numbers t (0 = ref, k = k-th target of ``level``)."""
    return np.where(t == 0, 0, LEVEL_BASE[level] + t)


def _category(name: str) -> str:
    return "illumination" if name.startswith("i_") else "viewpoint" if name.startswith("v_") else "other"


# ----------------------------------------------------------------------------------------------
# verification
# ----------------------------------------------------------------------------------------------
def _verification_distances(desc: HPatchesDescriptors, rows: Mapping[str, tuple],
                            tables: Mapping[str, taskfiles.PairTable], metric: str,
                            threads: int | None = None
                            ) -> tuple[dict[tuple[str, str], np.ndarray], dict[str, np.ndarray]]:
    """Distances of every pair file at every level, keyed (level, kind), in the order ``orders[kind]``
    of the file's rows (sorted by first row; every score but the imbalanced one ignores the order,
    that one keeps the positives at file rows < n).

    One compiled pass over the pairs computes all three levels, reading the descriptors in place; the
    pairs split into one contiguous range per worker thread.
    """
    bases = np.array([LEVEL_BASE[level] for level in LEVELS], dtype=np.int64)
    code = dist.metric_code(metric)
    out, orders = {}, {}
    for kind, table in tables.items():
        order, p1, t1, p2, t2 = kernels.sort_pairs(*(np.ascontiguousarray(x, dtype=np.int64) for x in (
            rows[kind][0], table.t1, rows[kind][1], table.t2)), desc.data.shape[1])
        d = np.empty((len(LEVELS), len(table)), dtype=np.float64)
        _in_parts(lambda lo, hi: kernels.verification_distances(desc.data, p1, t1, p2, t2, bases, code, lo,
                                                                 hi, d), len(table), threads)
        out.update({(level, kind): d[k] for k, level in enumerate(LEVELS)})
        orders[kind] = order
    return out, orders


def _in_parts(fn, n: int, threads: int | None) -> None:
    """``fn(lo, hi)`` over one contiguous part of ``range(n)`` per worker thread (``_parallel``)."""
    edges = np.linspace(0, n, dist.worker_count(threads) + 1).astype(np.int64)
    parts = [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]
    _parallel(lambda part: fn(*part), parts, threads)


def verification(desc: HPatchesDescriptors, files: taskfiles.TaskFiles, convention: Convention,
                 threads: int | None = None) -> pd.DataFrame:
    """Rows (level, negatives, protocol, value): balanced = ROC AUC, imbalanced = AP."""
    tables = files.pairs
    rows = {}
    for kind, table in tables.items():
        origin = str(taskfiles.verif_path(files.task_dir, kind, files.split_name))
        rows[kind] = (desc.rows(table.names, table.seq1, table.idx1, origin),
                      desc.rows(table.names, table.seq2, table.idx2, origin))
    n_pos = len(tables["pos"])
    distances, orders = _verification_distances(desc, rows, tables, convention.metric, threads)
    # python lists [negatives, positives] and keeps the first int(0.2 P) positives; MATLAB lists
    # [positives, negatives] and keeps the first floor(0.2 N) positives
    n_keep = {kind: int(np.floor(len(tables[kind]) * 0.2)) if convention.positives_first else int(n_pos * 0.2)
              for kind in ("neg_inter", "neg_intra")}
    for kind in n_keep:
        if len(tables[kind]) != n_pos and convention.name == "python":
            log.warning("verification: %d negatives but %d positives; the official python code assumes "
                        "equal counts (it labels the list as if they were)", len(tables[kind]), n_pos)
    lists = {}
    for level in LEVELS:
        lists[level, "pos"] = distances[level, "pos"]
        for kind in n_keep:
            lists[level, kind] = distances[level, kind]
            # the positives the imbalanced score keeps (one list where both kinds keep as many)
            lists[level, "kept", n_keep[kind]] = distances[level, "pos"][orders["pos"] < n_keep[kind]]
    # radix sorts, in parallel threads (they release the GIL)
    sorted_lists = dict(zip(lists, _parallel(kernels.sort_nonnegative, list(lists.values()), threads)))
    records = []
    for level in LEVELS:
        sorted_pos = sorted_lists[level, "pos"]
        for negatives in NEGATIVES:
            kind = f"neg_{negatives}"
            sorted_neg = sorted_lists[level, kind]
            before = kernels.negatives_before(sorted_neg, sorted_pos, convention.positives_first)
            records.append((level, negatives, "balanced", roc_auc(before, n_pos, len(sorted_neg))))
            before = kernels.negatives_before(sorted_neg, sorted_lists[level, "kept", n_keep[kind]],
                                              convention.positives_first)
            ap = average_precision(before, n_keep[kind], convention.ap_kind)
            records.append((level, negatives, "imbalanced", float(ap)))
    return pd.DataFrame.from_records(records, columns=["level", "negatives", "protocol", "value"])


# ----------------------------------------------------------------------------------------------
# matching
# ----------------------------------------------------------------------------------------------
def _parallel(fn, items: Sequence, threads: int | None) -> list:
    """``[fn(x) for x in items]`` on ``threads`` worker threads, each with single-threaded BLAS (numpy
    releases the GIL in BLAS, sorts and reductions)."""
    workers = dist.worker_count(threads)
    with dist.single_threaded_blas():
        if workers == 1 or len(items) < 2:
            return [fn(x) for x in items]

        def run(x):
            torch.set_num_threads(1)  # per thread (OpenMP), as the BLAS above
            return fn(x)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(run, items))


def matching(desc: HPatchesDescriptors, sequences: Sequence[str], convention: Convention,
             device=None, threads: int | None = None) -> pd.DataFrame:
    """Rows (sequence, category, level, image, ap, sr) for ref vs image 1..5 of every level.

    Nearest neighbours from blocked int8 products on the CPU, float32 products on ``device`` (a torch
    device) when given (``dist.nearest``: exact with respect to the float64 reference distances);
    sequences run in parallel threads.
    """
    missing = [s for s in sequences if s not in desc.index]
    if missing:
        raise DescbenchError(
            f"matching: no descriptors for sequences {', '.join(missing[:5])}"
            f"{' …' if len(missing) > 5 else ''}; compute descriptors for every test sequence")
    metric = convention.metric

    def one(seq: str) -> list[tuple]:
        ref = desc.sequence(seq, 0)
        n = len(ref)
        truth = np.arange(n)
        ref_codes = dist.Int8Codes(ref) if device is None and metric != "L1" else None
        out = []
        for level in LEVELS:
            for k in range(1, 6):
                target = desc.sequence(seq, LEVEL_BASE[level] + k)
                nn, d = dist.nearest(ref, target, metric, device=device, a_codes=ref_codes)
                correct = nn == truth
                before = negatives_before_positives(correct[stable_rank(d)])
                ap = average_precision(before, n, convention.ap_kind)
                out.append((seq, _category(seq), level, k, float(ap), float(correct.mean())))
        return out

    # largest first, so the last thread is not left with a big sequence alone
    order = sorted(sequences, key=lambda s: -desc.length(s))
    done = dict(zip(order, _parallel(one, order, threads)))
    records = [r for seq in sequences for r in done[seq]]
    return pd.DataFrame.from_records(
        records, columns=["sequence", "category", "level", "image", "ap", "sr"])


# ----------------------------------------------------------------------------------------------
# retrieval
# ----------------------------------------------------------------------------------------------
def retrieval(desc: HPatchesDescriptors, files: taskfiles.TaskFiles, convention: Convention, device=None,
              threads: int | None = None) -> pd.DataFrame:
    """Rows (query, sequence, idx, level, pool, ap): one per query, level and pool size.

    Per query sequence, against the distractors of other sequences: on the CPU (L2) float32 products,
    the distractors below the farthest positive counted against the 15 sorted positive distances
    (``dist.Closer``); on a device or for L1, float64 products with each pool block sorted once
    (``dist.count_before``). Both exact with respect to the float64 reference distances; query
    sequences run in parallel threads.
    """
    queries, distractors = files.queries, files.distractors
    q_rows = desc.rows(queries.names, queries.seq, queries.idx,
                       str(taskfiles.queries_path(files.task_dir, files.split_name)))
    d_rows = desc.rows(distractors.names, distractors.seq, distractors.idx,
                       str(taskfiles.distractors_path(files.task_dir, files.split_name)))
    q_seq = np.array([desc.index[n] for n in queries.names], dtype=np.int64)[queries.seq]
    d_seq = np.array([desc.index[n] for n in distractors.names], dtype=np.int64)[distractors.seq]
    d_desc = np.ascontiguousarray(desc.data[0, d_rows])
    n_dist = len(d_rows)
    pools = POOL_SIZES if convention.name == "python" else (n_dist + N_POSITIVES_RETRIEVAL,)
    metric = convention.metric

    # positives: the query patch in images 1..5 of each level -> (Q, 3 levels x 5)
    q_desc = np.ascontiguousarray(desc.data[0, q_rows])
    images = np.array([LEVEL_BASE[lv] + k for lv in LEVELS for k in range(1, 6)])
    pos_desc = desc.data[images[None, :], q_rows[:, None]]  # (Q, 15, dim), no copy of the rest
    pos_ref = dist.exact_rows(q_desc[:, None, :], pos_desc, dist.squared_or_l1(metric))
    pos_d = np.sqrt(pos_ref) if metric == "L2" else pos_ref

    ap = np.empty((len(q_rows), len(LEVELS), len(pools)), dtype=np.float64)

    closer = dist.Closer(q_desc, d_desc, metric) if device is None and metric != "L1" else None
    d_aug = dist.augmented(d_desc, np.float64, "b") if metric != "L1" and closer is None else None

    def one(seq: int) -> None:
        members = np.flatnonzero(q_seq == seq)
        keep = d_seq != seq  # the official code drops distractors of the query's own sequence
        limits = np.array([min(p - N_POSITIVES_RETRIEVAL, int(keep.sum())) for p in pools])
        if closer is not None:
            negatives = np.flatnonzero(keep)
            out = np.empty((_QUERY_BLOCK, closer.COLUMNS), dtype=np.float32)
        else:
            b = np.ascontiguousarray(d_desc[keep])
            b_aug = None if d_aug is None else np.ascontiguousarray(d_aug[keep])
            if device is not None and b_aug is not None:
                b_aug = torch.from_numpy(b_aug).to(device)
        for start in range(0, len(members), _QUERY_BLOCK):
            qs = members[start:start + _QUERY_BLOCK]
            if closer is not None:
                counts = closer.count(qs, negatives, pos_ref[qs], pos_d[qs], limits, out)
            else:
                counts = dist.count_before(q_desc[qs], b, metric, pos_ref[qs], pos_d[qs], limits,
                                           device=device, b_aug=b_aug)
            before = np.cumsum(counts, axis=2).reshape(len(qs), len(LEVELS), N_POSITIVES_RETRIEVAL, -1)
            before = np.sort(before, axis=2).transpose(0, 1, 3, 2)  # (q, level, pool, positive)
            ap[qs] = average_precision(before, N_POSITIVES_RETRIEVAL, convention.ap_kind)

    seqs = sorted(np.unique(q_seq).tolist(), key=lambda k: -int(np.count_nonzero(q_seq == k)))
    _parallel(one, seqs, threads)
    n_q, n_l, n_p = ap.shape
    return pd.DataFrame({
        "query": np.repeat(np.arange(n_q), n_l * n_p),
        "sequence": np.repeat(np.asarray(queries.names, dtype=object)[queries.seq], n_l * n_p),
        "idx": np.repeat(queries.idx, n_l * n_p),
        "level": np.tile(np.repeat(np.array(LEVELS, dtype=object), n_p), n_q),
        "pool": np.tile(np.array(pools if convention.name == "python" else (n_dist,)), n_q * n_l),
        "ap": ap.ravel(),
    })


# ----------------------------------------------------------------------------------------------
# aggregation and the whole evaluation
# ----------------------------------------------------------------------------------------------
def summarise(results: Mapping[str, pd.DataFrame]) -> dict:
    """Paper aggregates (fractions) plus E/H/T separately, from the tidy tables present."""
    summary: dict = {"levels": {}}
    if "verification" in results:
        imb = results["verification"].query("protocol == 'imbalanced'")
        summary["verification"] = float(imb["value"].mean())
        summary["levels"]["verification"] = {lv: float(g["value"].mean()) for lv, g in imb.groupby("level")}
    if "matching" in results:
        m = results["matching"]
        per_seq = m.groupby(["level", "category", "sequence"])["ap"].mean()
        cells = per_seq.groupby(level=["level", "category"]).mean()
        summary["matching"] = float(cells.mean())
        summary["levels"]["matching"] = {lv: float(c.mean()) for lv, c in cells.groupby(level="level")}
        summary["matching_categories"] = {
            f"{lv}/{cat}": float(v) for (lv, cat), v in cells.items()}
    if "retrieval" in results:
        r = results["retrieval"]
        per_pool = r.groupby(["level", "pool"])["ap"].mean()
        per_level = per_pool.groupby(level="level").mean()
        summary["retrieval"] = float(per_level.mean())
        summary["levels"]["retrieval"] = {lv: float(v) for lv, v in per_level.items()}
        summary["retrieval_pools"] = {f"{lv}/{pool}": float(v) for (lv, pool), v in per_pool.items()}
    return summary


def evaluate(desc: HPatchesDescriptors, task_dir: str | os.PathLike, split_name: str,
             convention: Convention, tasks: Sequence[str] = TASKS, device=None,
             threads: int | None = None, files: taskfiles.TaskFiles | None = None
             ) -> tuple[dict[str, pd.DataFrame], dict]:
    """Run ``tasks`` on split ``split_name``; returns the tidy tables and the summary. ``files`` are
    the split's task files when the caller has read them already (``taskfiles.read_task_files``)."""
    splits = taskfiles.load_splits(task_dir)
    split = taskfiles.get_split(splits, split_name, str(taskfiles.splits_path(task_dir)))
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise DescbenchError(f"unknown task(s) {unknown}; use any of {', '.join(TASKS)}")
    if files is None:
        files = taskfiles.read_task_files(task_dir, split["name"], tasks)
    warning = desc.degeneracy()
    if warning:
        log.warning("%s", warning)  # once per evaluation
    results: dict[str, pd.DataFrame] = {}
    if "verification" in tasks:
        results["verification"] = verification(desc, files, convention, threads=threads)
    if "matching" in tasks:
        seqs = list(split["test"]) if convention.name == "python" else list(desc.names)
        results["matching"] = matching(desc, seqs, convention, device=device, threads=threads)
    if "retrieval" in tasks:
        results["retrieval"] = retrieval(desc, files, convention, device=device, threads=threads)
    summary = summarise(results)
    summary["split"] = split_name
    summary["convention"] = convention.name
    summary["distance"] = convention.metric
    return results, summary


RESULT_FILES = tuple(f"{task}.csv" for task in TASKS) + ("summary.json",)


def check_replaceable(out_dir: str | os.PathLike, result_files: Sequence[str], kind: str) -> None:
    """``out_dir`` may be replaced by a new result set: it is absent, or a folder holding nothing but
    files of an earlier ``kind`` result set (``result_files``). Anything else is an error, so writing
    a result never deletes the user's files."""
    out_dir = Path(out_dir)
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_symlink() or not out_dir.is_dir():
        raise DescbenchError(f"--out {out_dir} exists and is not a folder; choose a folder for the "
                             f"{kind} results")

    def ours(entry: Path) -> bool:  # a result file, or the staging leftover of one (killed writer)
        if entry.is_symlink():
            return False
        if entry.name in result_files:
            return entry.is_file()
        return entry.name.endswith(".tmp") and any(entry.name.startswith(f".{f}.") for f in result_files)

    foreign = sorted(p.name + ("/" if p.is_dir() else "") for p in out_dir.iterdir() if not ours(p))
    if foreign:
        raise DescbenchError(
            f"--out {out_dir} holds files that are not {kind} results ({', '.join(foreign[:5])}"
            f"{' …' if len(foreign) > 5 else ''}); the result set replaces the whole folder, so choose a "
            f"new or empty folder (a result folder holds only {', '.join(result_files)})")


def write_result_set(out_dir: str | os.PathLike, tables: Mapping[str, pd.DataFrame], summary: Mapping,
                     result_files: Sequence[str], kind: str) -> None:
    """Write ``<name>.csv`` per table and ``summary.json`` into a staging folder next to ``out_dir``
    and rename it into place once all are written: a failure leaves the old set (or none), never a
    partial one. A folder from an earlier run is replaced (its stale files go with it)."""
    check_replaceable(out_dir, result_files, kind)
    with atomic_dir(out_dir) as staging:
        for name, frame in tables.items():
            write_csv(staging / f"{name}.csv", frame)
        write_json(staging / "summary.json", summary)


def write_results(out_dir: str | os.PathLike, results: Mapping[str, pd.DataFrame], summary: dict) -> None:
    """The HPatches result set ``<task>.csv`` + ``summary.json``, written atomically as one folder."""
    write_result_set(out_dir, results, summary, RESULT_FILES, "HPatches")


def format_summary(summary: Mapping) -> str:
    """The paper aggregates and E/H/T as a small text table (values x 100)."""
    lines = [f"HPatches split {summary.get('split')} ({summary.get('convention')} convention), "
             f"descriptor {summary.get('descriptor', '?')}"]
    lines.append(f"{'task':14s} {'mean':>7s} " + " ".join(f"{lv:>7s}" for lv in LEVELS))
    for task in TASKS:
        if task in summary:
            levels = summary["levels"].get(task, {})
            lines.append(f"{task:14s} {100 * summary[task]:7.2f} "
                         + " ".join(f"{100 * levels.get(lv, float('nan')):7.2f}" for lv in LEVELS))
    return "\n".join(lines)
