"""HPatches sequences image matching: one fixed detector, any patch descriptor, mutual nearest neighbours.

Protocol (docs/protocols.md §6.2), the same for every descriptor so that only the descriptor differs:

* keypoints: OpenCV SIFT (default parameters) on each grey image, the ``max_keypoints`` (2000) with the
  highest response; ties and OpenCV's thread-dependent order are settled by sorting on (response, x, y,
  size, angle), so the set never depends on the machine;
* patches: a square of side ``MAGNIFICATION`` x the keypoint's OpenCV size (5 x size = 10 sigma, the
  HPatches measurement region of 5x the detection scale), rotated to the keypoint's orientation, resampled
  straight to the descriptor's ``patch_size`` with bilinear interpolation from the level of a Gaussian
  pyramid (``cv2.pyrDown``) at which a patch pixel spans 1-2 pixels, so large regions do not alias;
* matching: mutual nearest neighbours in L2 (exact: ``descbench.evaluate.distances``) between image 1
  and image k = 2..6;
* MMA at t = 1..10 px (D2-Net): per pair, the fraction of matches whose keypoint in image k lies within t
  pixels of its image-1 keypoint mapped by H_1_k (0 for a pair without matches), averaged over the pairs of
  i_ sequences, of v_ sequences, and of all;
* homography accuracy at e = 1, 3, 5 px (SuperPoint): ``cv2.findHomography`` with RANSAC (reprojection
  threshold 3 px, OpenCV's default) on the matches; a pair is correct if the mean distance between the 4
  corners of image 1 mapped by the estimate and by H_1_k is <= e (fewer than 4 matches or no estimate: wrong).
"""

from __future__ import annotations

import logging
import math
from typing import Sequence as Seq

import numpy as np
import pandas as pd

from descbench.data import hpatches_sequences as hs
from descbench.evaluate import distances
from descbench.evaluate.defaults import MAX_KEYPOINTS
from descbench.progress import progress

log = logging.getLogger(__name__)

MAGNIFICATION = 5.0  # patch side in OpenCV keypoint sizes (size = 2 sigma): half-side 5 sigma, as HPatches
MMA_THRESHOLDS = tuple(range(1, 11))
HOMOGRAPHY_THRESHOLDS = (1, 3, 5)
RANSAC_THRESHOLD = 3.0
REMAP_CHUNK = 256  # patches per cv2.remap call (its maps may not exceed 32767 rows)
RESULT_FILES = ("pairs.csv", "summary.json")
CATEGORIES = {"i": "illumination", "v": "viewpoint"}


# --------------------------------------------------------------------------------------------------
# keypoints and patches
# --------------------------------------------------------------------------------------------------
def detect(image: np.ndarray, max_keypoints: int = MAX_KEYPOINTS) -> np.ndarray:
    """SIFT keypoints of a grey image as rows (x, y, size, angle in degrees, response), at most
    ``max_keypoints`` of the highest response, in a fixed order."""
    import cv2

    keypoints = cv2.SIFT_create().detect(np.ascontiguousarray(image), None)
    rows = np.array([(k.pt[0], k.pt[1], k.size, k.angle, k.response) for k in keypoints],
                    dtype=np.float64).reshape(-1, 5)
    order = np.lexsort((rows[:, 3], rows[:, 2], rows[:, 1], rows[:, 0], -rows[:, 4]))
    return rows[order[:max_keypoints]]


def pyramid(image: np.ndarray, smallest: int = 16) -> list[np.ndarray]:
    """``image`` and its ``cv2.pyrDown`` halvings while the shorter side stays >= ``smallest``; pixel i of
    level l sits at pixel 2^l i of level 0."""
    import cv2

    levels = [np.ascontiguousarray(image)]
    while min(levels[-1].shape) // 2 >= smallest:
        levels.append(cv2.pyrDown(levels[-1]))
    return levels


def cut_patches(image: np.ndarray, keypoints: np.ndarray, patch_size: int,
                magnification: float = MAGNIFICATION, levels: list[np.ndarray] | None = None) -> np.ndarray:
    """uint8 (N, patch_size, patch_size) patches, one per keypoint row (x, y, size, angle, ...).

    Patch pixel (u, v) samples the image at (x, y) + spacing R(angle) (u - c, v - c), c = (patch_size - 1) / 2,
    spacing = magnification x size / patch_size, so the patch's +u axis points along the keypoint's
    orientation (OpenCV's angle, in degrees, measured from +x towards +y). Borders reflect.
    """
    import cv2

    levels = levels if levels is not None else pyramid(image)
    n = len(keypoints)
    out = np.empty((n, patch_size, patch_size), dtype=np.uint8)
    if n == 0:
        return out
    x, y, size, angle = (keypoints[:, i] for i in range(4))
    spacing = magnification * size / patch_size
    level = np.clip(np.floor(np.log2(np.maximum(spacing, 1.0))), 0, len(levels) - 1).astype(int)
    grid = np.arange(patch_size, dtype=np.float64) - (patch_size - 1) / 2
    gu, gv = np.meshgrid(grid, grid)  # gu varies along columns (u), gv along rows (v)
    for lv in np.unique(level):
        members = np.flatnonzero(level == lv)
        for start in range(0, len(members), REMAP_CHUNK):
            idx = members[start:start + REMAP_CHUNK]
            factor = 2.0 ** lv
            step = (spacing[idx] / factor)[:, None, None]
            c, s = np.cos(np.radians(angle[idx]))[:, None, None], np.sin(np.radians(angle[idx]))[:, None, None]
            map_x = (x[idx] / factor)[:, None, None] + step * (c * gu - s * gv)
            map_y = (y[idx] / factor)[:, None, None] + step * (s * gu + c * gv)
            sampled = cv2.remap(levels[lv], map_x.reshape(-1, patch_size).astype(np.float32),
                                map_y.reshape(-1, patch_size).astype(np.float32), cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT101)
            out[idx] = sampled.reshape(len(idx), patch_size, patch_size)
    return out


# --------------------------------------------------------------------------------------------------
# matching and the two measures
# --------------------------------------------------------------------------------------------------
def mutual_nearest_neighbours(desc_a: np.ndarray, desc_b: np.ndarray) -> np.ndarray:
    """(M, 2) index pairs (i, j): j is i's nearest neighbour in ``desc_b`` and i is j's in ``desc_a``
    (L2, ties to the lowest index), sorted by i."""
    if len(desc_a) == 0 or len(desc_b) == 0:
        return np.empty((0, 2), dtype=np.int64)
    nn_ab, _ = distances.nearest(desc_a, desc_b, "L2")
    nn_ba, _ = distances.nearest(desc_b, desc_a, "L2")
    ids = np.arange(len(desc_a))
    mutual = nn_ba[nn_ab] == ids
    return np.stack([ids[mutual], nn_ab[mutual]], axis=1)


def project(points: np.ndarray, H: np.ndarray) -> np.ndarray:
    """(N, 2) points mapped by the 3x3 homography H."""
    h = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ H.T
    return h[:, :2] / h[:, 2:]


def reprojection_errors(points_a: np.ndarray, points_b: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Distance between each matched point of image k and its image-1 point mapped by H_1_k."""
    return np.hypot(*(project(points_a, H) - points_b).T)


def matching_accuracy(errors: np.ndarray, thresholds: Seq[float] = MMA_THRESHOLDS) -> np.ndarray:
    """Fraction of matches with error <= t, per threshold; 0 everywhere for a pair without matches (as
    D2-Net, which scores an empty pair as one infinitely wrong match)."""
    if len(errors) == 0:
        return np.zeros(len(thresholds))
    return np.array([np.mean(errors <= t) for t in thresholds])


def corner_error(points_a: np.ndarray, points_b: np.ndarray, H_true: np.ndarray,
                 shape: tuple[int, int]) -> float:
    """Mean distance between the 4 corners of image 1 (``shape`` = (h, w)) mapped by the RANSAC estimate
    from the matches and by the true homography; inf when no homography can be estimated."""
    import cv2

    if len(points_a) < 4:
        return math.inf
    estimate, _ = cv2.findHomography(points_a.astype(np.float64), points_b.astype(np.float64), cv2.RANSAC,
                                     RANSAC_THRESHOLD)
    if estimate is None:
        return math.inf
    h, w = shape
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)
    with np.errstate(all="ignore"):
        error = float(np.mean(np.hypot(*(project(corners, estimate) - project(corners, H_true)).T)))
    return error if math.isfinite(error) else math.inf


def evaluate_pair(kp_a: np.ndarray, desc_a: np.ndarray, kp_b: np.ndarray, desc_b: np.ndarray, H: np.ndarray,
                  shape_a: tuple[int, int]) -> dict:
    """Matches, MMA per threshold and the corner error of one image pair."""
    matches = mutual_nearest_neighbours(desc_a, desc_b)
    pa, pb = kp_a[matches[:, 0], :2], kp_b[matches[:, 1], :2]
    mma = matching_accuracy(reprojection_errors(pa, pb, H))
    row = {"n_keypoints_1": len(kp_a), "n_keypoints": len(kp_b), "n_matches": len(matches)}
    row.update({f"mma_{t}": float(v) for t, v in zip(MMA_THRESHOLDS, mma)})
    row["corner_error"] = corner_error(pa, pb, H, shape_a)
    return row


# --------------------------------------------------------------------------------------------------
# a whole evaluation
# --------------------------------------------------------------------------------------------------
def evaluate(extractor, sequences: Seq[hs.Sequence], max_keypoints: int = MAX_KEYPOINTS
             ) -> pd.DataFrame:
    """One row per image pair (sequence, image k = 2..6) for the descriptor of ``extractor``
    (``descbench.evaluate.extract.Extractor``): keypoint and match counts, mma_1..mma_10, corner_error.
    The patches of a sequence's 6 images go through the extractor together, in its batches."""
    patch_size = extractor.descriptor.patch_size
    rows = []
    for seq in progress(sequences, desc=f"hpatches sequences ({extractor.name})", unit="seq", logger=log):
        keypoints = [detect(image, max_keypoints) for image in seq.images]
        patches = np.concatenate([cut_patches(np.asarray(image), kp, patch_size)
                                  for image, kp in zip(seq.images, keypoints)])
        described = extractor(patches)
        bounds = np.cumsum([0] + [len(kp) for kp in keypoints])
        desc = [described[bounds[i]:bounds[i + 1]] for i in range(len(keypoints))]
        for k in range(2, hs.N_IMAGES + 1):
            row = {"sequence": seq.name, "category": seq.category, "image": k}
            row.update(evaluate_pair(keypoints[0], desc[0], keypoints[k - 1], desc[k - 1],
                                     seq.homographies[k - 2], seq.images[0].shape))
            rows.append(row)
    return pd.DataFrame(rows)


def summarise(pairs: pd.DataFrame) -> dict:
    """MMA per threshold and homography accuracy per threshold for i_, v_ and all pairs (pooled over
    pairs, as D2-Net), mean matches per pair and mean keypoints per image."""
    summary: dict = {"n_sequences": int(pairs["sequence"].nunique()), "n_pairs": int(len(pairs)),
                     "mma_thresholds": list(MMA_THRESHOLDS),
                     "homography_thresholds": list(HOMOGRAPHY_THRESHOLDS)}
    groups = {"overall": pairs, **{CATEGORIES[c]: pairs[pairs["category"] == c] for c in CATEGORIES}}
    for label, part in groups.items():
        if part.empty:
            continue
        first = part.drop_duplicates("sequence")["n_keypoints_1"]
        summary[label] = {
            "n_sequences": int(part["sequence"].nunique()),
            "mma": [float(part[f"mma_{t}"].mean()) for t in MMA_THRESHOLDS],
            "homography_accuracy": {str(e): float((part["corner_error"] <= e).mean())
                                    for e in HOMOGRAPHY_THRESHOLDS},
            "matches_per_pair": float(part["n_matches"].mean()),
            "keypoints_per_image": float((first.sum() + part["n_keypoints"].sum()) / (len(first) + len(part))),
        }
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"HPatches sequences, subset {summary.get('subset')} ({summary['n_sequences']} sequences, "
             f"{summary['n_pairs']} pairs), descriptor {summary.get('descriptor', '?')}",
             f"{'':14s} {'MMA@1':>6s} {'MMA@3':>6s} {'MMA@5':>6s} {'MMA@10':>6s} {'H@1':>6s} {'H@3':>6s} "
             f"{'H@5':>6s} {'matches':>8s} {'keypts':>7s}"]
    for label in ("overall", *CATEGORIES.values()):
        if label not in summary:
            continue
        s = summary[label]
        mma, ha = s["mma"], s["homography_accuracy"]
        lines.append(f"{label:14s} {mma[0]:6.3f} {mma[2]:6.3f} {mma[4]:6.3f} {mma[9]:6.3f} {ha['1']:6.3f} "
                     f"{ha['3']:6.3f} {ha['5']:6.3f} {s['matches_per_pair']:8.1f} {s['keypoints_per_image']:7.1f}")
    return "\n".join(lines)
