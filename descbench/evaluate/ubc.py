"""UBC PhotoTour evaluation: FPR95 over the 100K test pairs of a prepared set (docs/protocols.md §3.3).

Only the patches the pairs use are described. Distances are L2 between the descriptors, computed from
the float32 differences in float64.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from descbench.data.ubc import UBCSet
from descbench.errors import DescbenchError
from descbench.progress import progress

log = logging.getLogger(__name__)
from descbench.evaluate.distances import exact_rows
from descbench.evaluate.extract import Extractor
from descbench.evaluate.fpr95 import fpr95

_GATHER = 16384


def pair_table(descriptors: np.ndarray, rows: np.ndarray, labels: np.ndarray, pairs: np.ndarray
               ) -> pd.DataFrame:
    """The tidy per-pair table; ``rows[k]`` is the descriptor row of patch id ``k``'s position."""
    idx1, idx2, is_match = (np.asarray(pairs[:, c], dtype=np.int64) for c in range(3))
    distance = exact_rows(descriptors[rows[idx1]], descriptors[rows[idx2]], "L2")
    return pd.DataFrame({"idx1": idx1, "idx2": idx2, "point1": labels[idx1], "point2": labels[idx2],
                         "is_match": is_match, "distance": distance})


def load_ubc_descriptors(path, n_patches: int, test_set: str) -> np.ndarray:
    """(N, dim) descriptors of a whole UBC set from one .npy or CSV file (',' or ';', no header),
    one row per patch in the set's order; the row count must equal the set's patch count."""
    from pathlib import Path

    from descbench.evaluate.extract import _read_table

    path = Path(path)
    if not path.is_file():
        raise DescbenchError(f"--descriptors {path}: no such file (one .npy or .csv file, one row per "
                             f"patch of {test_set})")
    table = _read_table(path)
    if len(table) != n_patches:
        raise DescbenchError(
            f"--descriptors {path} has {len(table)} rows but UBC set {test_set} has {n_patches} patches; "
            "the file needs one row per patch of the set, in the set's order")
    return table


def evaluate_ubc_descriptors(descriptors: np.ndarray, ubc_set: UBCSet, test_set: str,
                             convention: str = "hardnet", name: str = "descriptors"
                             ) -> tuple[pd.DataFrame, dict]:
    """FPR95 of precomputed descriptors (row k = patch k of the set); returns (pairs table, summary)."""
    pairs = np.asarray(ubc_set.pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 3 or len(pairs) == 0:
        raise DescbenchError(f"UBC set {test_set}: the pairs array must be (M, 3) with M > 0, "
                             f"got {pairs.shape}; run `descbench prepare ubc` again")
    if len(descriptors) != len(ubc_set.patches):
        raise DescbenchError(f"{len(descriptors)} descriptors for the {len(ubc_set.patches)} patches of UBC set "
                             f"{test_set}; give one row per patch, in the set's order")
    if pairs[:, :2].min() < 0 or pairs[:, :2].max() >= len(descriptors):
        raise DescbenchError(f"UBC set {test_set}: pair patch ids exceed the {len(descriptors)} "
                             "patches; run `descbench prepare ubc` again")
    table = pair_table(descriptors, np.arange(len(descriptors)), np.asarray(ubc_set.labels), pairs)
    summary = {
        "fpr95": fpr95(table["distance"].to_numpy(), table["is_match"].to_numpy(), convention),
        "test_set": test_set, "descriptor": name, "convention": convention, "n_pairs": len(table),
    }
    return table, summary


def evaluate_ubc(extractor: Extractor, ubc_set: UBCSet, test_set: str,
                 convention: str = "hardnet") -> tuple[pd.DataFrame, dict]:
    """Describe the patches of the test pairs, score FPR95; returns (pairs table, summary)."""
    pairs = np.asarray(ubc_set.pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 3 or len(pairs) == 0:
        raise DescbenchError(f"UBC set {test_set}: the pairs array must be (M, 3) with M > 0, "
                             f"got {pairs.shape}; run `descbench prepare ubc` again")
    used = np.unique(pairs[:, :2])
    if used[0] < 0 or used[-1] >= len(ubc_set.patches):
        raise DescbenchError(f"UBC set {test_set}: pair patch ids exceed the {len(ubc_set.patches)} "
                             "patches; run `descbench prepare ubc` again")
    descriptors = np.empty((len(used), extractor.dim), dtype=np.float32)
    with progress(total=len(used), desc=f"describe ({extractor.name})", unit="patch", logger=log) as bar:
        for start in range(0, len(used), _GATHER):  # gather from the memory map chunk by chunk
            ids = used[start:start + _GATHER]
            descriptors[start:start + len(ids)] = extractor(np.asarray(ubc_set.patches[ids]), bar)
    rows = np.full(int(used[-1]) + 1, -1, dtype=np.int64)
    rows[used] = np.arange(len(used))
    table = pair_table(descriptors, rows, np.asarray(ubc_set.labels), pairs)
    summary = {
        "fpr95": fpr95(table["distance"].to_numpy(), table["is_match"].to_numpy(), convention),
        "test_set": test_set,
        "descriptor": extractor.name,
        "convention": convention,
        "n_pairs": len(table),
    }
    return table, summary
