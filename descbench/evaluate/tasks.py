"""HPatches task files, read for evaluation: verification pairs and retrieval query/distractor lists.

The file names, the splits and the generator that writes them live in ``descbench.data.hpatches_tasks``
(task files are data); this module only reads them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from descbench.data.hpatches_tasks import (  # noqa: F401  (the names evaluation reads by)
    RETRIEVAL_COLUMNS, SPLIT_NAMES, VERIF_COLUMNS, VERIF_KINDS, distractors_path, get_split, load_splits,
    queries_path, splits_path, verif_path)
from descbench.errors import DescbenchError


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairTable:
    """A verification pair file: sequence names (``seq1``/``seq2`` index into ``names``), image
    numbers 0..5 (0 = ref) and patch indices, all int64 arrays of one length."""

    names: tuple[str, ...]
    seq1: np.ndarray
    t1: np.ndarray
    idx1: np.ndarray
    seq2: np.ndarray
    t2: np.ndarray
    idx2: np.ndarray

    def __len__(self) -> int:
        return len(self.seq1)


@dataclass(frozen=True)
class PatchList:
    """A retrieval query or distractor file: ref patches ``(names[seq], idx)`` in file order."""

    names: tuple[str, ...]
    seq: np.ndarray
    idx: np.ndarray

    def __len__(self) -> int:
        return len(self.seq)


def _read_csv(path: Path, columns: Sequence[str], split_name: str) -> pd.DataFrame:
    """The task file as a frame: sequence-name columns (``s*``) categorical (parsed into codes by the C
    parser, twice as fast as strings), the others int64."""
    if not path.is_file():
        raise DescbenchError(
            f"task file {path} is missing (split {split_name!r}); copy the official task files "
            "there or regenerate them with `descbench prepare hpatches`")
    try:
        frame = pd.read_csv(path, dtype={c: ("category" if c.startswith("s") else np.int64) for c in columns})
    except (ValueError, pd.errors.ParserError) as exc:
        raise DescbenchError(f"task file {path} cannot be parsed ({exc}); restore the file") from exc
    if tuple(frame.columns) != tuple(columns):
        raise DescbenchError(
            f"task file {path} has columns {list(frame.columns)}, expected {list(columns)}")
    return frame


def _codes(columns: Sequence[pd.Series], path: Path) -> tuple[tuple[str, ...], list[np.ndarray]]:
    """Integer codes into one shared tuple of names for several categorical columns."""
    names = columns[0].cat.categories
    for col in columns[1:]:
        names = names.union(col.cat.categories)
    out = []
    for col in columns:
        codes = col.cat.codes.to_numpy()
        if (codes < 0).any():
            raise DescbenchError(f"task file {path}: row {int(np.argmax(codes < 0)) + 2} has no sequence "
                                 "name; restore the file")
        out.append(names.get_indexer(col.cat.categories).astype(np.int64)[codes])
    return tuple(str(n) for n in names), out


def read_pairs(task_dir: str | os.PathLike, kind: str, split_name: str) -> PairTable:
    """Read ``verif_<kind>_split-<name>.csv`` (kind: pos, neg_intra, neg_inter)."""
    if kind not in VERIF_KINDS:
        raise DescbenchError(f"unknown verification file kind {kind!r}; use one of {VERIF_KINDS}")
    path = verif_path(task_dir, kind, split_name)
    frame = _read_csv(path, VERIF_COLUMNS, split_name)
    names, (s1, s2) = _codes([frame["s1"], frame["s2"]], path)
    t1, t2 = frame["t1"].to_numpy(np.int64), frame["t2"].to_numpy(np.int64)
    if len(frame) and (min(t1.min(), t2.min()) < 0 or max(t1.max(), t2.max()) > 5):
        raise DescbenchError(f"task file {path}: image numbers t1/t2 must lie in 0..5")
    return PairTable(names, s1, t1, frame["idx1"].to_numpy(np.int64), s2, t2,
                     frame["idx2"].to_numpy(np.int64))


def read_patch_list(path: str | os.PathLike, split_name: str) -> PatchList:
    frame = _read_csv(Path(path), RETRIEVAL_COLUMNS, split_name)
    names, (seq,) = _codes([frame["s"]], Path(path))
    return PatchList(names, seq, frame["idx"].to_numpy(np.int64))


def read_queries(task_dir: str | os.PathLike, split_name: str) -> PatchList:
    return read_patch_list(queries_path(task_dir, split_name), split_name)


def read_distractors(task_dir: str | os.PathLike, split_name: str) -> PatchList:
    return read_patch_list(distractors_path(task_dir, split_name), split_name)


@dataclass(frozen=True)
class TaskFiles:
    """The task files one evaluation of a split reads, each read once: the verification pair tables
    (by kind; empty unless verification runs) and the retrieval query and distractor lists (None where
    retrieval does not run and they are absent or unreadable)."""

    task_dir: Path
    split_name: str
    pairs: dict[str, PairTable]
    queries: PatchList | None
    distractors: PatchList | None


def read_task_files(task_dir: str | os.PathLike, split_name: str,
                    tasks: Sequence[str] = ("verification", "retrieval")) -> TaskFiles:
    """Read the files ``tasks`` need (verification and/or retrieval; matching needs none), the three
    large pair files in parallel threads (the C parser releases the GIL). The small retrieval lists are
    read even when retrieval does not run, where they can be: they tell how many patches each
    sequence has (``hpatches.task_lengths``)."""
    from concurrent.futures import ThreadPoolExecutor
    from functools import partial

    def optional(read):
        try:
            return read(task_dir, split_name)
        except DescbenchError:
            return None

    readers = {}
    if "verification" in tasks:
        readers.update({kind: partial(read_pairs, task_dir, kind, split_name) for kind in VERIF_KINDS})
    for name, read in (("queries", read_queries), ("distractors", read_distractors)):
        readers[name] = partial(read, task_dir, split_name) if "retrieval" in tasks else partial(optional, read)
    with ThreadPoolExecutor(max_workers=max(1, min(3, len(readers)))) as pool:
        got = dict(zip(readers, pool.map(lambda reader: reader(), readers.values())))
    return TaskFiles(Path(task_dir), split_name, {kind: got[kind] for kind in VERIF_KINDS if kind in got},
                     got["queries"], got["distractors"])
