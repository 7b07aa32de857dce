"""UBC PhotoTour evaluation: FPR95 over the 100K test pairs of a prepared set (PROTOCOLS.md §3.3).

Only the patches the pairs use are described. Distances are L2 between the descriptors, computed from
the float32 differences in float64.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm import tqdm

from descbench.data.ubc import UBCSet
from descbench.errors import DescbenchError
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
    with tqdm(total=len(used), desc=f"describe ({extractor.name})", unit="patch") as bar:
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
        "n_pairs": int(len(table)),
    }
    return table, summary
