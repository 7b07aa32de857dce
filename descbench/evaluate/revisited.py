"""UBC PhotoTour "revisited": mean over images of the AP of SNN-ratio-ranked matches (docs/protocols.md §5).

The protocol is the one of ``evaluate_mAP_snn_based`` in brown_phototour_revisited 0.3.0 (numpy backend,
Euclidean distance), re-implemented here, quirks included, so that its numbers can be compared with the
published ones:

* Patches are grouped by the reference image id, the first column of the set's raw ``interest.txt``.
  Everything below happens inside one group: queries and candidates come from the same image.
* Every ordered pair (a, p) of different patches of one 3D point is an anchor-positive pair.
* Each anchor has one negative n(a): in a group of more than ``SEARCH_MIN`` patches the first
  ``SEARCH_BLOCK * floor(NN / SEARCH_BLOCK)`` anchors (in patch order) get the argmin over the group of
  ``d + PENALTY * [same 3D point] + PENALTY * [itself]`` (the hardest negative while distances stay below
  ``PENALTY``); every other anchor, and every anchor of a smaller group, gets the group's first patch.
* A pair is correct when ``d(a, p) <= d(a, n(a))``; its score is ``1 - min / max`` of the two distances
  (``0 / 0`` counts as ratio 1). The group's AP is scikit-learn's ``average_precision_score``: tied
  scores form one threshold, and a group without a correct pair has AP 0 (scikit-learn >= 1.1).
* The result is the plain mean of the group APs, over the groups that have anchor-positive pairs (the
  package fails on a group without any).

Distances are L2 between the float32 descriptors, taken from the float64 differences (as the package does
on the float64 copies it stores). The hardest-negative search runs on float32 BLAS proxies with the
rigorous error bound of :mod:`descbench.evaluate.distances`; every decision inside the bound is made on
the reference distances, so the result does not depend on the BLAS or the thread count.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from descbench.data.ubc import fix_hint, raw_set_dir
from descbench.errors import DescbenchError
from descbench.evaluate.distances import ProxyIndex, _nearest_from_proxies, exact_rows
from descbench.progress import progress

log = logging.getLogger(__name__)

PACKAGE = "brown_phototour_revisited 0.3.0"
IMAGE_INDEX_FILE = "interest.txt"
SEARCH_MIN = 1000
SEARCH_BLOCK = 128
PENALTY = 1000.0
PER_IMAGE_COLUMNS = ("image_id", "n_patches", "n_searched", "n_pairs", "n_correct", "ap")
_BLOCK_ELEMENTS = 1 << 22  # proxy entries per block of the negative search (16 MiB of float32)
_PAIR_CHUNK = 1 << 16  # pairs per chunk of the reference distances


# ------------------------------------------------------------------------------------ image index
def image_index_path(data_root: str | Path, set_name: str) -> Path:
    return raw_set_dir(data_root, set_name) / IMAGE_INDEX_FILE


def read_image_index(path: Path, n_patches: int, fix: str) -> np.ndarray:
    """The reference image id of every patch: the first integer of each line of ``interest.txt``
    (the other columns, x, y, orientation and scale, are not needed)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # numpy warns on an empty file; its length is checked
            ids = np.loadtxt(path, dtype=np.int64, usecols=0, ndmin=1, comments=None)
    except ValueError:
        ids = _scan_first_column(path, fix)
    if len(ids) != n_patches:
        raise DescbenchError(f"{path} has {len(ids)} lines but the set has {n_patches} patches (one line per "
                             f"patch, in patch order); the file is damaged, {fix}")
    return ids


def _scan_first_column(path: Path, fix: str) -> np.ndarray:
    """Line by line (only after the fast reader failed), to name the first bad line."""
    ids = []
    with open(path, encoding="ascii", errors="replace") as fh:
        for line_no, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                ids.append(int(fields[0]))
            except ValueError:
                raise DescbenchError(f"{path}, line {line_no}: {fields[0]!r} is not an integer image id "
                                     f"({line.strip()!r}); the file is damaged, {fix}") from None
    return np.array(ids, dtype=np.int64)


def load_image_index(data_root: str | Path, set_name: str, n_patches: int) -> np.ndarray | None:
    """The image ids of a set from its raw folder, or None when the set has no ``interest.txt``."""
    path = image_index_path(data_root, set_name)
    if not path.is_file():
        return None
    return read_image_index(path, n_patches, fix_hint(data_root, set_name))


# ------------------------------------------------------------------------------------ the metric
def _ordered_pairs(labels: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (anchor, positive) patch index pairs with equal group and label and anchor != positive."""
    order = np.lexsort((np.arange(len(labels)), labels, group))
    key_change = (labels[order][1:] != labels[order][:-1]) | (group[order][1:] != group[order][:-1])
    starts = np.flatnonzero(np.r_[True, key_change])
    sizes = np.diff(np.r_[starts, len(order)])
    keep = sizes >= 2
    starts, sizes = starts[keep], sizes[keep]
    per_run = sizes * (sizes - 1)
    run = np.repeat(np.arange(len(sizes)), per_run)
    local = np.arange(int(per_run.sum())) - np.repeat(np.cumsum(per_run) - per_run, per_run)
    others = sizes[run] - 1
    a, p = np.divmod(local, others)
    p += p >= a  # skip the anchor itself
    return order[starts[run] + a], order[starts[run] + p]


def _hardest_negatives(desc: np.ndarray, labels: np.ndarray, n_anchors: int) -> np.ndarray:
    """For the first ``n_anchors`` rows of a group: the argmin over the group of
    ``d + PENALTY * [same label] + PENALTY * [itself]`` (lowest index among equal values), as local indices."""
    index = ProxyIndex(desc, "L2")
    out = np.empty(n_anchors, dtype=np.int64)
    rows_per_block = max(1, _BLOCK_ELEMENTS // len(desc))
    for start in range(0, n_anchors, rows_per_block):
        rows = np.arange(start, min(start + rows_per_block, n_anchors))
        proxies = index.proxies(desc[rows])
        same = labels[rows][:, None] == labels[None, :]
        proxies.values[same] = np.inf  # positives and the anchor itself are no negatives
        nearest = _nearest_from_proxies(proxies, desc[rows], index.B, "L2")
        # a penalised positive (or the anchor) can only win where no negative is closer than PENALTY
        no_negative = same.all(axis=1)
        d_nearest = exact_rows(desc[rows], desc[nearest], "L2")
        for r in np.flatnonzero(no_negative | (d_nearest >= PENALTY)):
            d = exact_rows(desc[rows[r]][None, :], desc, "L2") + PENALTY * (labels == labels[rows[r]])
            d[rows[r]] += PENALTY
            nearest[r] = int(np.argmin(d))
        out[rows] = nearest
    return out


def _negatives(desc: np.ndarray, labels: np.ndarray, members: list[np.ndarray], bar) -> np.ndarray:
    """The negative patch of every patch (as an anchor), group by group."""
    negative = np.empty(len(desc), dtype=np.int64)
    for idx in members:
        negative[idx] = idx[0]
        if len(idx) > SEARCH_MIN:
            searched = SEARCH_BLOCK * (len(idx) // SEARCH_BLOCK)
            negative[idx[:searched]] = idx[_hardest_negatives(desc[idx], labels[idx], searched)]
        bar.update(len(idx))
    return negative


def _group_ap(group: np.ndarray, correct: np.ndarray, score: np.ndarray, n_groups: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Per group: AP of ``correct`` ranked by descending ``score`` with tied scores as one threshold
    (scikit-learn's ``average_precision_score``; 0 without a correct pair), and the correct count."""
    n_correct = np.bincount(group, weights=correct, minlength=n_groups)
    if len(group) == 0:
        return np.zeros(n_groups), n_correct
    order = np.lexsort((-score, group))
    g, s, c = group[order], score[order], correct[order].astype(np.int64)
    group_start = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    threshold_end = np.flatnonzero(np.r_[(g[1:] != g[:-1]) | (s[1:] != s[:-1]), True])
    cum_correct = np.cumsum(c)
    before_group = (cum_correct - c)[group_start]  # correct pairs ranked in earlier groups
    which = np.searchsorted(group_start, threshold_end, side="right") - 1
    tp = cum_correct[threshold_end] - before_group[which]
    ranked = threshold_end + 1 - group_start[which]
    tp_before = np.r_[0, tp[:-1]]
    tp_before[np.r_[True, which[1:] != which[:-1]]] = 0
    total = n_correct[g[threshold_end]]
    with np.errstate(invalid="ignore", divide="ignore"):  # groups without a correct pair: AP 0
        term = np.where(total > 0, (tp / total - tp_before / total) * (tp / ranked), 0.0)
    return np.bincount(g[threshold_end], weights=term, minlength=n_groups), n_correct


def revisited_map(descriptors: np.ndarray, labels: np.ndarray, image_ids: np.ndarray
                  ) -> tuple[float, pd.DataFrame]:
    """The revisited mAP (a fraction) of (N, D) float32 descriptors with the 3D point ``labels`` and
    reference ``image_ids`` of the N patches, and the per-image table (``PER_IMAGE_COLUMNS``)."""
    desc = np.ascontiguousarray(descriptors, dtype=np.float32)
    labels, image_ids = np.asarray(labels, dtype=np.int64), np.asarray(image_ids, dtype=np.int64)
    if desc.ndim != 2 or not len(desc) == len(labels) == len(image_ids):
        raise DescbenchError(f"revisited mAP: {desc.shape} descriptors for {len(labels)} labels and "
                             f"{len(image_ids)} image ids; give one of each per patch")
    images, group = np.unique(image_ids, return_inverse=True)
    by_group = np.argsort(group, kind="stable")  # patch order inside each group
    sizes = np.bincount(group, minlength=len(images))
    members = np.split(by_group, np.cumsum(sizes)[:-1])
    with progress(total=len(desc), desc="revisited mAP negatives", unit="patch", logger=log) as bar:
        negative = _negatives(desc, labels, members, bar)
    anchor, positive = _ordered_pairs(labels, group)
    correct = np.empty(len(anchor), dtype=bool)
    score = np.empty(len(anchor))
    for start in range(0, len(anchor), _PAIR_CHUNK):
        a, p = anchor[start:start + _PAIR_CHUNK], positive[start:start + _PAIR_CHUNK]
        d_pos = exact_rows(desc[a], desc[p], "L2")
        d_neg = exact_rows(desc[a], desc[negative[a]], "L2")
        correct[start:start + len(a)] = d_pos <= d_neg
        with np.errstate(invalid="ignore"):
            ratio = np.minimum(d_pos, d_neg) / np.maximum(d_pos, d_neg)
        score[start:start + len(a)] = 1.0 - np.where(np.isnan(ratio), 1.0, ratio)
    pair_group = group[anchor]
    ap, n_correct = _group_ap(pair_group, correct, score, len(images))
    n_pairs = np.bincount(pair_group, minlength=len(images))
    searched = np.where(sizes > SEARCH_MIN, SEARCH_BLOCK * (sizes // SEARCH_BLOCK), 0)
    table = pd.DataFrame({"image_id": images, "n_patches": sizes, "n_searched": searched, "n_pairs": n_pairs,
                          "n_correct": n_correct.astype(np.int64), "ap": np.where(n_pairs > 0, ap, np.nan)})
    scored = n_pairs > 0
    if not scored.any():
        raise DescbenchError("revisited mAP: no image has two patches of one 3D point, so there is no "
                             "anchor-positive pair to score; check the image ids (interest.txt)")
    return float(np.mean(ap[scored])), table
