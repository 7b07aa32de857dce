"""HPatches task files: their names, the splits, and regeneration with the official generator rules.

The official files (hpatches-benchmark ``tasks/``) were written by ``gen_verif`` and ``gen_retrieval``
(python/utils/tasks.py) with the legacy NumPy ``RandomState`` seeded with 42. ``write_task_files``
follows the same rules and draws the same random numbers in the same order, so for the same
per-sequence patch counts (and, for retrieval, the same ref pixels) it writes the same files
(docs/protocols.md §1.4):

verification (one seed-42 stream per split): ``s = choice(test, n)``; per row
``(i, j) = choice(arange(N_s), 2, replace=False)`` (= ``permutation(N_s)[:2]``); per row
``(ta, tb) = choice(arange(5), 2, replace=False)``; ``s' = choice(test, n)``; ``k = randint(N_s')``.
Positives ``(s, ta, i, s, tb, i)``, intra negatives ``(s, ta, i, s, tb, j)``, inter negatives
``(s, ta, i, s', tb, k)``.

retrieval (a fresh seed-42 stream): ``4·Nq`` query candidates ``(choice(test), randint(N_s))``, then
``10·Nd`` distractor candidates the same way; keep ref patches whose pixel std is > 10; drop duplicate
(s, idx); the first Nq queries; distractors that are not one of those queries, the first Nd.

The per-row permutation is the only per-row loop; it must consume the stream exactly as the
generator does (about 20 µs a row, ~25 s for the official 10^6 pairs).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from descbench.errors import DescbenchError
from descbench.fileio import write_csv
from descbench.progress import progress

log = logging.getLogger(__name__)

SEED = 42
STD_THRESHOLD = 10.0
VERIF_KINDS = ("pos", "neg_intra", "neg_inter")
VERIF_COLUMNS = ("s1", "t1", "idx1", "s2", "t2", "idx2")
RETRIEVAL_COLUMNS = ("s", "idx")
SPLIT_NAMES = ("a", "b", "c", "illum", "view", "full")


def verif_path(task_dir: str | os.PathLike, kind: str, split_name: str) -> Path:
    return Path(task_dir) / f"verif_{kind}_split-{split_name}.csv"


def queries_path(task_dir: str | os.PathLike, split_name: str) -> Path:
    return Path(task_dir) / f"retr_queries_split-{split_name}.csv"


def distractors_path(task_dir: str | os.PathLike, split_name: str) -> Path:
    return Path(task_dir) / f"retr_distractors_split-{split_name}.csv"


# ----------------------------------------------------------------------------------------------
# splits
# ----------------------------------------------------------------------------------------------
def splits_path(task_dir: str | os.PathLike) -> Path:
    """``splits.json`` directly in the task folder, or in ``splits/`` as in the official repository."""
    task_dir = Path(task_dir)
    for candidate in (task_dir / "splits.json", task_dir / "splits" / "splits.json"):
        if candidate.is_file():
            return candidate
    raise DescbenchError(
        f"no splits.json in {task_dir} (nor in {task_dir / 'splits'}); run `descbench prepare "
        "hpatches` or copy the official tasks/splits/splits.json there")


def load_splits(task_dir: str | os.PathLike) -> dict[str, dict]:
    """The splits by name: each a dict with ``name``, ``test`` and (a, b, c only) ``train``."""
    from descbench.data.hpatches import read_splits

    splits = read_splits(splits_path(task_dir),
                         "restore the official file (descbench download hpatches-tasks --data DATA)")
    for key, split in splits.items():
        split.setdefault("name", key)
    return splits


def get_split(splits: Mapping[str, dict], name: str, origin: str = "splits.json") -> dict:
    if name not in splits:
        raise DescbenchError(f"unknown split {name!r} in {origin}; known splits: {', '.join(splits)}")
    return splits[name]


# ----------------------------------------------------------------------------------------------
# generation
# ----------------------------------------------------------------------------------------------
def _lengths(refs: Mapping[str, np.ndarray], test: Sequence[str], split_name: str) -> np.ndarray:
    missing = [s for s in test if s not in refs]
    if missing:
        raise DescbenchError(
            f"split {split_name!r} lists sequences without patches: {', '.join(missing[:5])}"
            f"{' …' if len(missing) > 5 else ''}; give the ref patches of every test sequence")
    lengths = np.array([len(refs[s]) for s in test], dtype=np.int64)
    if np.any(lengths < 2):
        raise DescbenchError(
            f"split {split_name!r}: every test sequence needs >= 2 patches for verification pairs")
    return lengths


def generate_verification(test: Sequence[str], lengths: np.ndarray, n_pairs: int
                          ) -> dict[str, tuple[np.ndarray, ...]]:
    """The three verification tables as column tuples (s1, t1, idx1, s2, t2, idx2), seed-42 rules."""
    test_arr = np.asarray(list(test), dtype=object)
    rs = np.random.RandomState(SEED)
    seq = rs.choice(len(test_arr), n_pairs)
    idx = np.empty((n_pairs, 2), dtype=np.int64)
    for row, n in enumerate(progress(lengths[seq], desc="verification pairs", unit="pair",
                                     mininterval=2.0, leave=False, logger=log)):
        idx[row] = rs.permutation(n)[:2]
    types = np.empty((n_pairs, 2), dtype=np.int64)
    for row in range(n_pairs):
        types[row] = rs.permutation(5)[:2]
    seq_inter = rs.choice(len(test_arr), n_pairs)
    # an array ``high`` draws element by element from the stream, like the per-row ``randint(k)``
    idx_inter = rs.randint(0, lengths[seq_inter]).astype(np.int64)
    s1 = test_arr[seq]
    return {
        "pos": (s1, types[:, 0], idx[:, 0], s1, types[:, 1], idx[:, 0]),
        "neg_intra": (s1, types[:, 0], idx[:, 0], s1, types[:, 1], idx[:, 1]),
        "neg_inter": (s1, types[:, 0], idx[:, 0], test_arr[seq_inter], types[:, 1], idx_inter),
    }


def _ref_std(refs: Mapping[str, np.ndarray], test_arr: np.ndarray, seq: np.ndarray,
             idx: np.ndarray) -> np.ndarray:
    """Pixel std of each drawn ref patch, equal to the generator's ``np.std(patch)``.

    Computed batched per sequence; values within 1e-9 of the threshold are recomputed patch by patch
    with ``np.std`` so that the > 10 decision is exactly the generator's.
    """
    std = np.empty(len(seq), dtype=np.float64)
    for k in np.unique(seq):
        rows = np.flatnonzero(seq == k)
        patches = np.asarray(refs[test_arr[k]])[idx[rows]]
        std[rows] = patches.reshape(len(rows), -1).std(axis=1)
    close = np.flatnonzero(np.abs(std - STD_THRESHOLD) < 1e-9)
    for row in close:
        std[row] = np.std(np.asarray(refs[test_arr[seq[row]]][idx[row]]))
    return std


def generate_retrieval(refs: Mapping[str, np.ndarray], test: Sequence[str], lengths: np.ndarray,
                       n_queries: int, n_distractors: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(queries, distractors) as DataFrames with columns s, idx, seed-42 rules."""
    test_arr = np.asarray(list(test), dtype=object)
    rs = np.random.RandomState(SEED)
    q_seq = rs.choice(len(test_arr), 4 * n_queries)
    q_idx = rs.randint(0, lengths[q_seq]).astype(np.int64)
    d_seq = rs.choice(len(test_arr), 10 * n_distractors)
    d_idx = rs.randint(0, lengths[d_seq]).astype(np.int64)

    q_keep = _ref_std(refs, test_arr, q_seq, q_idx) > STD_THRESHOLD
    d_keep = _ref_std(refs, test_arr, d_seq, d_idx) > STD_THRESHOLD
    queries = pd.DataFrame({"s": test_arr[q_seq[q_keep]], "idx": q_idx[q_keep]})
    distractors = pd.DataFrame({"s": test_arr[d_seq[d_keep]], "idx": d_idx[d_keep]})
    queries = queries.drop_duplicates().head(n_queries).reset_index(drop=True)
    distractors = distractors.drop_duplicates()
    is_query = pd.MultiIndex.from_frame(distractors).isin(pd.MultiIndex.from_frame(queries))
    distractors = distractors[~is_query].head(n_distractors).reset_index(drop=True)
    return queries, distractors


def write_task_files(out_dir: str | os.PathLike, refs: Mapping[str, np.ndarray],
                     splits: Mapping[str, dict], n_pairs: int, n_queries: int,
                     n_distractors: int) -> None:
    """Write the five task csvs of every split in ``splits`` into ``out_dir`` (official names).

    ``refs`` maps each sequence to its ref patches (N, 65, 65) uint8; the file names use each split's
    ``name`` (falling back to its key), as the official code does.
    """
    for n, what in ((n_pairs, "n_pairs"), (n_queries, "n_queries"), (n_distractors, "n_distractors")):
        if int(n) != n or n < 1:
            raise DescbenchError(f"write_task_files: {what} must be a positive integer, got {n!r}")
    out_dir = Path(out_dir)
    for key, split in splits.items():
        name = split.get("name", key)
        test = list(split["test"])
        if not test:
            raise DescbenchError(f"split {name!r} has an empty test list")
        lengths = _lengths(refs, test, name)
        log.info("task files for split %s: %d test sequences", name, len(test))
        for kind, columns in generate_verification(test, lengths, int(n_pairs)).items():
            write_csv(verif_path(out_dir, kind, name), pd.DataFrame(dict(zip(VERIF_COLUMNS, columns))))
        queries, distractors = generate_retrieval(refs, test, lengths, int(n_queries), int(n_distractors))
        write_csv(queries_path(out_dir, name), queries)
        write_csv(distractors_path(out_dir, name), distractors)


