"""UBC PhotoTour evaluation: FPR95 over the 100K test pairs of a prepared set (docs/protocols.md §3.3) and
the "revisited" mAP over all its patches (§5, ``descbench.evaluate.revisited``).

FPR95 alone describes only the patches the pairs use. Distances are L2 between the descriptors, computed from
the float32 differences in float64.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from descbench.data.ubc import UBCSet, fix_hint
from descbench.errors import DescbenchError
from descbench.evaluate import revisited
from descbench.evaluate.distances import exact_rows
from descbench.evaluate.extract import Extractor
from descbench.evaluate.fpr95 import fpr95
from descbench.progress import progress

log = logging.getLogger(__name__)

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
        raise DescbenchError(f"--descriptor-files {path}: no such file (one .npy or .csv file, one row per "
                             f"patch of {test_set})")
    table = _read_table(path)
    if len(table) != n_patches:
        raise DescbenchError(
            f"--descriptor-files {path} has {len(table)} rows but UBC set {test_set} has {n_patches} patches; "
            "the file needs one row per patch of the set, in the set's order")
    return table


METRICS = ("fpr95", "revisited-map")


def select_metrics(requested: str | None, data_root, test_set: str, n_patches: int
                   ) -> tuple[list[str], np.ndarray | None, str | None]:
    """The metrics to compute, the image ids the revisited mAP needs, and why it is skipped (or None).

    ``requested`` is a comma list of ``METRICS``; None means all of them, the revisited mAP only where
    the set's raw folder has its image index (``interest.txt``). A metric asked for by name must be
    computable.
    """
    names = list(METRICS) if requested is None else [m.strip() for m in requested.split(",") if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise DescbenchError(f"--metric {requested!r}: use a comma list of {', '.join(METRICS)}")
    names = [m for m in METRICS if m in names]  # FPR95 first, each once
    if "revisited-map" not in names:
        return names, None, None
    image_ids = revisited.load_image_index(data_root, test_set, n_patches)
    if image_ids is not None:
        return names, image_ids, None
    path = revisited.image_index_path(data_root, test_set)
    if requested is not None:
        raise DescbenchError(f"--metric revisited-map needs the image index {path} (the set's raw "
                             f"interest.txt), which is missing; {fix_hint(data_root, test_set)}, or "
                             "leave the metric out")
    return [m for m in names if m != "revisited-map"], None, f"no image index ({path} is missing)"


def _check_pairs(ubc_set: UBCSet, test_set: str) -> np.ndarray:
    pairs = np.asarray(ubc_set.pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 3 or len(pairs) == 0:
        raise DescbenchError(f"UBC set {test_set}: the pairs array must be (M, 3) with M > 0, "
                             f"got {pairs.shape}; run `descbench prepare ubc` again")
    if pairs[:, :2].min() < 0 or pairs[:, :2].max() >= len(ubc_set.patches):
        raise DescbenchError(f"UBC set {test_set}: pair patch ids exceed the {len(ubc_set.patches)} "
                             "patches; run `descbench prepare ubc` again")
    return pairs


def _score(descriptors: np.ndarray, rows: np.ndarray, ubc_set: UBCSet, test_set: str, name: str,
           convention: str, metrics: list[str], image_ids: np.ndarray | None, skipped: str | None
           ) -> tuple[dict[str, pd.DataFrame], dict]:
    """The tables and the summary of ``metrics``; ``rows[k]`` is the descriptor row of patch ``k``."""
    labels = np.asarray(ubc_set.labels)
    tables: dict[str, pd.DataFrame] = {}
    summary: dict = {"test_set": test_set, "descriptor": name, "metrics": metrics}
    if "fpr95" in metrics:
        table = pair_table(descriptors, rows, labels, np.asarray(ubc_set.pairs))
        tables["pairs"] = table
        summary.update(fpr95=fpr95(table["distance"].to_numpy(), table["is_match"].to_numpy(), convention),
                       convention=convention, n_pairs=len(table))
    if "revisited-map" in metrics:
        value, per_image = revisited.revisited_map(descriptors, labels, image_ids)  # all patches, in order
        tables["revisited"] = per_image
        scored = per_image["n_pairs"] > 0
        summary["revisited_map"] = value
        summary["revisited"] = {"protocol": revisited.PACKAGE, "n_images": int(scored.sum()),
                                "n_images_without_pairs": int((~scored).sum()),
                                "n_pairs": int(per_image["n_pairs"].sum()),
                                "n_correct": int(per_image["n_correct"].sum())}
    else:
        summary["revisited_map"] = None
        if skipped:
            summary["revisited_skipped"] = skipped
    return tables, summary


def evaluate_ubc_descriptors(descriptors: np.ndarray, ubc_set: UBCSet, test_set: str,
                             convention: str = "hardnet", name: str = "descriptors",
                             metrics: list[str] = ("fpr95",), image_ids: np.ndarray | None = None,
                             skipped: str | None = None) -> tuple[dict[str, pd.DataFrame], dict]:
    """``metrics`` of precomputed descriptors (row k = patch k of the set); returns (tables, summary):
    ``pairs`` (FPR95's per-pair table) and ``revisited`` (per-image APs), as computed."""
    _check_pairs(ubc_set, test_set)
    if len(descriptors) != len(ubc_set.patches):
        raise DescbenchError(f"{len(descriptors)} descriptors for the {len(ubc_set.patches)} patches of UBC set "
                             f"{test_set}; give one row per patch, in the set's order")
    return _score(descriptors, np.arange(len(descriptors)), ubc_set, test_set, name, convention, list(metrics),
                  image_ids, skipped)


def evaluate_ubc(extractor: Extractor, ubc_set: UBCSet, test_set: str, convention: str = "hardnet",
                 metrics: list[str] = ("fpr95",), image_ids: np.ndarray | None = None,
                 skipped: str | None = None) -> tuple[dict[str, pd.DataFrame], dict]:
    """Describe the patches the metrics need (FPR95: those of the test pairs; the revisited mAP: all)
    and score them; returns (tables, summary) as ``evaluate_ubc_descriptors``."""
    pairs = _check_pairs(ubc_set, test_set)
    n = len(ubc_set.patches)
    used = np.arange(n) if "revisited-map" in metrics else np.unique(pairs[:, :2])
    descriptors = np.empty((len(used), extractor.dim), dtype=np.float32)
    with progress(total=len(used), desc=f"describe ({extractor.name})", unit="patch", logger=log) as bar:
        for start in range(0, len(used), _GATHER):  # gather from the memory map chunk by chunk
            ids = used[start:start + _GATHER]
            descriptors[start:start + len(ids)] = extractor(np.asarray(ubc_set.patches[ids]), bar)
    rows = np.full(int(used[-1]) + 1, -1, dtype=np.int64)
    rows[used] = np.arange(len(used))
    return _score(descriptors, rows, ubc_set, test_set, extractor.name, convention, list(metrics), image_ids,
                  skipped)
