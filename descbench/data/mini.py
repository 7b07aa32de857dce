"""Offline mini datasets: small UBC- and HPatches-like data made from photographs that scikit-image ships,
written in the ORIGINAL on-disk formats so that ``descbench prepare`` reads them with the same code as the
real downloads.

UBC-like sets (``DATA/raw/ubc/mini_{liberty,notredame,yosemite}/``), each from its own photos: SIFT
keypoints of the photos are the 3D points; each point gets 2-5 views, each sampled as a 64x64 patch through
its own small random homography around the keypoint (detection noise in position/scale/orientation, mild
anisotropy and perspective) with photometric changes (gain, bias, gamma, blur, noise). Patches of one point
are consecutive, point ids run 0..P-1. Written as 1024x1024 BMP tiles (last tile partly filled with zeros),
``info.txt`` (``<point id> 0``) and two pair files ``m50_<n>_<n>_0.txt`` with n/2 matches + n/2
non-matches each (the reader uses the larger one).

HPatches-like sequences (``DATA/raw/hpatches-release/{i_*,v_*}/``), the HPatches way (docs/protocols.md §1.1):
the reference image is the photo resized to a longer side of 1024 pixels; SIFT detections in it (found on
its half-size pyramid level; scale sigma = OpenCV size / 2, Lowe's dominant orientation); the measurement
region is a square of half-side 5 sigma; detections whose circles (radius sigma) overlap by more
than 50 % IoU are clustered and one kept at random; a detection is kept only if its region, and every
jittered and reprojected region, lies inside the images. Targets 1..5 of each level re-use the frame after
a random affine jitter (shift, rotation, scale, anisotropy; amplitudes in ``JITTER``, growing
Easy < Hard < Tough) and reproject it with the image's homography: random perspective homographies growing
with k for ``v_``, identity for ``i_`` where the image instead gets an illumination change (gain, gamma,
illumination gradient). Every target image gets sensor noise. N (150-400, drawn per sequence) of the kept
detections are written; each PNG is one column of N 65x65 patches.
``DATA/raw/hpatches-tasks/`` gets ``splits.json`` (a, b, c: half of the i_ and half of the v_ sequences as
test, the rest train; illum/view/full: test only) and the task csvs made by
``descbench.data.hpatches_tasks.write_task_files`` (the official generator rules).
``DATA/raw/hpatches-sequences-release/`` gets a few full-image sequences (2 ``i_``, 2 ``v_``, 320x240) in the
real layout, ``1.ppm``..``6.ppm`` + ``H_1_2``..``H_1_6`` with known homographies
(``descbench.data.hpatches_sequences.make_mini_sequences``).

Everything is drawn from ``numpy.random.default_rng([seed, part])`` per part and OpenCV's keypoints are
sorted, so the same seed gives byte-identical files (with the same numpy/OpenCV/scikit-image versions). ``scale`` shrinks every count (tests use it); the CLI uses 1.0.
"""

from __future__ import annotations

import logging
import math
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from descbench.data import hpatches as hp
from descbench.data import hpatches_sequences
from descbench.data.hpatches_tasks import write_task_files
from descbench.data import ubc
from descbench.errors import DescbenchError
from descbench.fileio import atomic_dir, write_json
from descbench.progress import progress

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2  # 2: interest.txt per UBC set, the HPatches full-image sequences
MINI_RECORD = "mini.json"

UBC_SCENES = {
    "mini_liberty": ("astronaut", "moon", "page"),
    "mini_notredame": ("coffee", "chelsea", "text"),
    "mini_yosemite": ("grass", "rocket"),
}
HPATCHES_SCENES = {
    "i_coins": "coins",
    "i_gravel": "gravel",
    "i_hubble": "hubble_deep_field",
    "i_tissue": "immunohistochemistry",
    "v_brick": "brick",
    "v_camera": "camera",
    "v_motorcycle": "stereo_motorcycle",
    "v_retina": "retina",
}

# Full-size (scale 1.0) counts.
UBC_POINTS = 600  # per set, fewer where the photos have fewer usable keypoints
UBC_MIN_POINTS = 450
UBC_VIEWS = (2, 5)
# Per-view changes of a UBC point (uniform in +-amplitude): shift (fraction of the region side), rotation
# (radians), log2 scale and anisotropy, perspective (relative change of w across the half region), blur
# sigma (max, half of the views), log2 gamma, gain, bias (grey levels), noise sigma (max). Brown's matches lie
# within 5 px, 0.25 octave and pi/8 of each other.
UBC_VIEW = {"shift": 0.05, "rotation": math.pi / 10, "log2_scale": 0.2, "log2_anisotropy": 0.15,
            "perspective": 0.4, "blur": 1.3, "log2_gamma": 0.4, "gain": 0.3, "bias": 15.0, "noise": 5.0}
UBC_MATCHES = 2000  # -> m50_4000_4000_0.txt; a quarter-size m50_1000_1000_0.txt is written too
# N per sequence drawn from this range (capped by the usable detections); small, so that extracting a
# learned model's descriptors on a CPU takes seconds
HPATCHES_PATCHES = (80, 160)
TASK_PAIRS = 20000
TASK_QUERIES = 300
TASK_DISTRACTORS = 600

# Affine jitter of the HPatches frame per level: max |shift| (fraction of the region half-side per axis),
# max |rotation| (degrees), max |log2 scale|, max |log2 anisotropy|. Median IoU of the jittered
# measurement region with the original, measured on 20,000 draws: easy 0.85, hard 0.72, tough 0.61
# (the HPatches docs give ~0.85 for Easy and ~0.72 for Hard).
JITTER = {
    "e": (0.12, 10.0, 0.14, 0.14),
    "h": (0.24, 20.0, 0.29, 0.29),
    "t": (0.37, 30.0, 0.44, 0.44),
}
HPATCHES_SIDE = 1024  # longer side of the reference images (photos are resized to it)

UBC_PATCH = ubc.PATCH_SIZE
HP_PATCH = hp.PATCH_SIZE
_OVERSAMPLE = 2


@dataclass
class MiniData:
    """What ``make_mini`` wrote, for checks: per UBC set patches (N,64,64), labels (N,) and the m50 rows
    of the larger pair file (M,7); per HPatches sequence the (16,N,65,65) stack; the splits."""

    ubc: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    hpatches: dict[str, np.ndarray] = field(default_factory=dict)
    splits: dict[str, dict] = field(default_factory=dict)
    record: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# photos, detection, sampling
# --------------------------------------------------------------------------------------------------
def load_photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as 8-bit grayscale."""
    import cv2
    from skimage import data

    image = getattr(data, name)()
    if name == "stereo_motorcycle":
        image = image[0]
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(image, dtype=np.uint8)


def detect(image: np.ndarray) -> np.ndarray:
    """SIFT keypoints as rows (x, y, size, angle_rad, response), in a fixed order (sorted), so that thread
    scheduling inside OpenCV cannot change the result."""
    import cv2

    keypoints = cv2.SIFT_create(contrastThreshold=0.02).detect(image, None)
    rows = np.array([(k.pt[0], k.pt[1], k.size, math.radians(k.angle), k.response) for k in keypoints],
                    dtype=np.float64).reshape(-1, 5)
    order = np.lexsort(rows.T[::-1])
    return rows[order]


def _affine(linear: np.ndarray, translation=(0.0, 0.0)) -> np.ndarray:
    """3x3 affine matrices from (..., 2, 2) linear parts and (..., 2) translations."""
    linear = np.asarray(linear, dtype=np.float64)
    out = np.zeros(linear.shape[:-2] + (3, 3))
    out[..., :2, :2] = linear
    out[..., :2, 2] = translation
    out[..., 2, 2] = 1.0
    return out


def _rotation(angle) -> np.ndarray:
    """(..., 2, 2) rotation matrices for an angle or an array of angles (radians)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _anisotropy(log2_ratio, axis_angle) -> np.ndarray:
    """(..., 2, 2) stretch by 2**log2_ratio along ``axis_angle`` and its inverse across it."""
    r = _rotation(axis_angle)
    ratio = 2.0 ** np.asarray(log2_ratio, dtype=np.float64)
    diag = np.zeros(ratio.shape + (2, 2))
    diag[..., 0, 0], diag[..., 1, 1] = ratio, 1.0 / ratio
    return r @ diag @ np.swapaxes(r, -1, -2)


def sample_patch(image: np.ndarray, patch_to_image: np.ndarray, size: int) -> np.ndarray:
    """Sample a size x size patch whose pixel (u, v) sits at ``patch_to_image @ (u, v, 1)`` in ``image``.

    Sampled at 2x and area-averaged down, so that regions larger than the patch do not alias.
    """
    import cv2

    o = _OVERSAMPLE
    hi_to_lo = np.array([[1 / o, 0, 0.5 / o - 0.5], [0, 1 / o, 0.5 / o - 0.5], [0, 0, 1]])
    hi = cv2.warpPerspective(image, patch_to_image @ hi_to_lo, (size * o, size * o),
                             flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT101)
    return cv2.resize(hi, (size, size), interpolation=cv2.INTER_AREA)


def _resize_longer_side(image: np.ndarray, side: int) -> np.ndarray:
    import cv2

    factor = side / max(image.shape)
    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if factor > 1 else cv2.INTER_AREA)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# UBC-like sets
# --------------------------------------------------------------------------------------------------
def _ubc_points(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Well-separated keypoints of a photo as rows (x, y, region side, angle), in random order."""
    kp = detect(photo)
    kp = kp[kp[:, 2] >= 2.5]
    side = np.clip(6.0 * kp[:, 2], 32.0, 96.0)
    margin = side / 2 * math.sqrt(2) * 1.2 + 4
    h, w = photo.shape
    inside = (kp[:, 0] > margin) & (kp[:, 1] > margin) & (kp[:, 0] < w - margin) & (kp[:, 1] < h - margin)
    kp, side = kp[inside], side[inside]
    kept: list[int] = []
    for i in rng.permutation(len(kp)):
        if kept:
            d = np.hypot(kp[kept, 0] - kp[i, 0], kp[kept, 1] - kp[i, 1])
            if np.any(d < 0.25 * np.maximum(side[kept], side[i])):
                continue
        kept.append(int(i))
    kept_arr = np.array(kept, dtype=np.int64)
    return np.stack([kp[kept_arr, 0], kp[kept_arr, 1], side[kept_arr], kp[kept_arr, 3]], axis=1)


def _ubc_view(photo: np.ndarray, point: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One 64x64 view of a point: random local homography + photometric change (amplitudes in UBC_VIEW)."""
    import cv2

    x, y, side, angle = point
    v = UBC_VIEW
    shift = rng.uniform(-v["shift"], v["shift"], 2) * side
    scale = side / UBC_PATCH * 2.0 ** rng.uniform(-v["log2_scale"], v["log2_scale"])
    linear = _rotation(angle + rng.uniform(-v["rotation"], v["rotation"])) @ _anisotropy(
        rng.uniform(-v["log2_anisotropy"], v["log2_anisotropy"]), rng.uniform(0, math.pi)) * scale
    perspective = np.eye(3)
    perspective[2, :2] = rng.uniform(-v["perspective"], v["perspective"], 2) / side
    centre = (UBC_PATCH - 1) / 2
    patch_to_photo = (_affine(np.eye(2), (x + shift[0], y + shift[1])) @ perspective
                      @ _affine(linear) @ _affine(np.eye(2), (-centre, -centre)))
    patch = sample_patch(photo, patch_to_photo, UBC_PATCH).astype(np.float32)
    if rng.random() < 0.5:
        patch = cv2.GaussianBlur(patch, (0, 0), rng.uniform(0.3, v["blur"]), borderType=cv2.BORDER_REFLECT101)
    patch = 255.0 * (patch / 255.0) ** (2.0 ** rng.uniform(-v["log2_gamma"], v["log2_gamma"]))
    patch = patch * rng.uniform(1 - v["gain"], 1 + v["gain"]) + rng.uniform(-v["bias"], v["bias"])
    patch = patch + rng.normal(0.0, rng.uniform(1.0, v["noise"]), patch.shape)
    return _to_uint8(patch)


def _ubc_pairs(labels: np.ndarray, n_matches: int, rng: np.random.Generator) -> np.ndarray:
    """(2*n_matches, 2) patch index pairs: n_matches matching (distinct, same point) and as many
    non-matching, shuffled together."""
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    stops = np.r_[starts[1:], len(labels)]
    matching = np.array([(i, j) for a, b in zip(starts, stops) for i in range(a, b) for j in range(i + 1, b)],
                        dtype=np.int64)
    if len(matching) < n_matches:
        raise DescbenchError(f"mini UBC: only {len(matching)} matching pairs for {n_matches} requested; "
                             "the scale is too small for the pair count")
    matching = matching[rng.choice(len(matching), n_matches, replace=False)]
    nonmatching = np.empty((0, 2), dtype=np.int64)
    while len(nonmatching) < n_matches:
        draw = rng.integers(0, len(labels), (2 * n_matches, 2))
        nonmatching = np.concatenate([nonmatching, draw[labels[draw[:, 0]] != labels[draw[:, 1]]]])
    pairs = np.concatenate([matching, nonmatching[:n_matches]])
    return pairs[rng.permutation(len(pairs))]


def _m50_rows(pairs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    zeros = np.zeros(len(pairs), dtype=np.int64)
    return np.stack([pairs[:, 0], labels[pairs[:, 0]], zeros, pairs[:, 1], labels[pairs[:, 1]], zeros, zeros],
                    axis=1)


def _write_int_rows(path: Path, rows: np.ndarray) -> None:
    path.write_text("".join(" ".join(map(str, row)) + "\n" for row in rows.tolist()))


def write_ubc_raw(set_dir: Path, patches: np.ndarray, labels: np.ndarray, m50_files: dict[str, np.ndarray],
                  interest: np.ndarray) -> None:
    """Write patches/labels/pair rows in the original UBC layout (BMP tiles, info.txt, interest.txt, m50
    files). ``interest`` has a row per patch: reference image id, x, y, orientation (degrees), scale."""
    import cv2

    per_tile = ubc.PATCHES_PER_TILE
    grid = ubc.TILE_SIZE // UBC_PATCH
    n_tiles = -(-len(patches) // per_tile)
    padded = np.zeros((n_tiles * per_tile, UBC_PATCH, UBC_PATCH), dtype=np.uint8)
    padded[: len(patches)] = patches
    tiles = padded.reshape(n_tiles, grid, grid, UBC_PATCH, UBC_PATCH).transpose(0, 1, 3, 2, 4).reshape(
        n_tiles, ubc.TILE_SIZE, ubc.TILE_SIZE)
    for t, tile in enumerate(tiles):
        if not cv2.imwrite(str(set_dir / f"patches{t:04d}.bmp"), tile):
            raise DescbenchError(f"could not write {set_dir / f'patches{t:04d}.bmp'}")
    _write_int_rows(set_dir / "info.txt", np.stack([labels, np.zeros_like(labels)], axis=1))
    (set_dir / "interest.txt").write_text("".join(
        f"{int(row[0])} {row[1]:.2f} {row[2]:.2f} {row[3]:.2f} {row[4]:.2f}\n" for row in interest.tolist()))
    for name, rows in m50_files.items():
        _write_int_rows(set_dir / name, rows)


def make_ubc_set(set_name: str, seed: int, part: int, scale: float) -> dict:
    """Generate one UBC-like set in memory: patches, labels, the rows of both m50 files and of interest.txt
    (each patch's photo as its reference image, and the keypoint it was cut around)."""
    rng = np.random.default_rng([seed, part])
    photos = [load_photo(name) for name in UBC_SCENES[set_name]]
    points = [(photo_index, point) for photo_index, photo in enumerate(photos)
              for point in _ubc_points(photo, rng)]
    n_points = min(len(points), max(8, round(UBC_POINTS * scale)))
    n_least = max(8, round(UBC_MIN_POINTS * scale))
    if n_points < n_least:
        raise DescbenchError(f"mini UBC {set_name}: only {len(points)} keypoints usable, {n_least} needed")
    patches, labels, interest = [], [], []
    for point_id, chosen in enumerate(np.sort(rng.choice(len(points), n_points, replace=False))):
        photo_index, point = points[chosen]
        n_views = int(rng.integers(UBC_VIEWS[0], UBC_VIEWS[1] + 1))
        patches.extend(_ubc_view(photos[photo_index], point, rng) for _ in range(n_views))
        labels.extend([point_id] * n_views)
        x, y, side, angle = point
        interest.extend([(photo_index, x, y, math.degrees(angle), side)] * n_views)
    patches_arr = np.stack(patches)
    labels_arr = np.array(labels, dtype=np.int64)
    n_matches = max(4, round(UBC_MATCHES * scale))
    big = _m50_rows(_ubc_pairs(labels_arr, n_matches, rng), labels_arr)
    small = _m50_rows(_ubc_pairs(labels_arr, max(2, n_matches // 4), rng), labels_arr)
    return {
        "patches": patches_arr,
        "labels": labels_arr,
        "m50": {f"m50_{len(big)}_{len(big)}_0.txt": big, f"m50_{len(small)}_{len(small)}_0.txt": small},
        "interest": np.array(interest, dtype=np.float64),
    }


# --------------------------------------------------------------------------------------------------
# HPatches-like sequences
# --------------------------------------------------------------------------------------------------
def _circle_iou(r1: np.ndarray, r2: float, d: np.ndarray) -> np.ndarray:
    """IoU of circles with radii ``r1`` (array) and ``r2`` whose centres are ``d`` apart."""
    small = np.minimum(r1, r2)
    inter = np.where(d <= np.abs(r1 - r2), math.pi * small ** 2, 0.0)
    part = (d > np.abs(r1 - r2)) & (d < r1 + r2)
    if np.any(part):
        a, dd = r1[part], d[part]
        alpha = np.arccos(np.clip((dd ** 2 + a ** 2 - r2 ** 2) / (2 * dd * a), -1, 1))
        beta = np.arccos(np.clip((dd ** 2 + r2 ** 2 - a ** 2) / (2 * dd * r2), -1, 1))
        inter[part] = a ** 2 * (alpha - np.sin(2 * alpha) / 2) + r2 ** 2 * (beta - np.sin(2 * beta) / 2)
    return inter / (math.pi * (r1 ** 2 + r2 ** 2) - inter)


def _cluster(kp: np.ndarray, n_max: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of up to ``n_max`` detections, no two of whose circles (radius sigma) overlap by IoU > 0.5:
    visited in random order, a detection is dropped if it overlaps one already kept (so one detection per
    cluster is kept at random)."""
    sigma = kp[:, 2] / 2
    kept: list[int] = []
    for i in rng.permutation(len(kp)):
        if kept:
            d = np.hypot(kp[kept, 0] - kp[i, 0], kp[kept, 1] - kp[i, 1])
            if np.any(_circle_iou(sigma[kept], float(sigma[i]), d) > 0.5):
                continue
        kept.append(int(i))
        if len(kept) == n_max:
            break
    return np.array(kept, dtype=np.int64)


def _random_homography(shape: tuple[int, int], k: int, rng: np.random.Generator) -> np.ndarray:
    """Viewpoint change of image k (1..5): rotation/scale about the centre plus corner perspective,
    both growing with k. Maps reference pixel coordinates to image-k pixel coordinates."""
    import cv2

    h, w = shape
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    centre = np.array([w / 2, h / 2])
    similarity = _rotation(math.radians(rng.uniform(-4, 4) * k)) * 2.0 ** (rng.uniform(-0.06, 0.06) * k)
    moved = (corners - centre) @ similarity.T + centre
    moved += rng.uniform(-0.02, 0.02, (4, 2)) * k * np.array([w, h])
    return cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32)).astype(np.float64)


def _illumination_change(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A photometric change for ``i_`` targets: gain, gamma and a linear illumination gradient (float)."""
    h, w = photo.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gx, gy = rng.uniform(-0.6, 0.6, 2)
    field_ = 1.0 + gx * (xx / w - 0.5) + gy * (yy / h - 0.5)
    gamma = 2.0 ** rng.uniform(-0.6, 0.6)
    gain = 2.0 ** rng.uniform(-1.2, 0.4)
    return 255.0 * (photo.astype(np.float32) / 255.0) ** gamma * gain * field_


def _jitters(level: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random affine jitters (n, 3, 3) of the normalised frame (unit = region half-side)."""
    shift, rot, log_scale, log_aniso = JITTER[level]
    rotation = _rotation(np.radians(rng.uniform(-rot, rot, n)))
    scale = 2.0 ** rng.uniform(-log_scale, log_scale, n)
    stretch = _anisotropy(rng.uniform(-log_aniso, log_aniso, n), rng.uniform(0, math.pi, n))
    return _affine(scale[:, None, None] * rotation @ stretch, rng.uniform(-shift, shift, (n, 2)))


def _corners_inside(matrices: np.ndarray, shape: tuple[int, int], margin: float = 2.0) -> np.ndarray:
    """For stacked 3x3 patch->image maps (..., 3, 3): do the patch corners land inside the image?"""
    lo, hi = -0.5, HP_PATCH - 0.5
    corners = np.array([[lo, lo, 1], [hi, lo, 1], [hi, hi, 1], [lo, hi, 1]]).T
    mapped = matrices @ corners
    xy = mapped[..., :2, :] / mapped[..., 2:, :]
    h, w = shape
    ok = ((xy[..., 0, :] >= margin) & (xy[..., 0, :] <= w - 1 - margin)
          & (xy[..., 1, :] >= margin) & (xy[..., 1, :] <= h - 1 - margin) & (mapped[..., 2, :] > 0))
    return ok.all(axis=-1)


def make_sequence(name: str, seed: int, part: int, scale: float) -> np.ndarray:
    """Generate one HPatches-like sequence: uint8 (16, N, 65, 65) in ``IMAGE_TYPES`` order."""
    import cv2

    rng = np.random.default_rng([seed, part])
    photo = _resize_longer_side(load_photo(HPATCHES_SCENES[name]), HPATCHES_SIDE)
    shape = photo.shape
    # Detect on a half-size copy of the reference image (its coarser pyramid level, a quarter of the SIFT
    # work) and map the detections to full resolution.
    small = _resize_longer_side(photo, HPATCHES_SIDE // 2)
    kp = detect(small)
    factor = np.array([shape[1] / small.shape[1], shape[0] / small.shape[0]])
    kp[:, :2] = (kp[:, :2] + 0.5) * factor - 0.5
    kp[:, 2] *= factor.mean()
    viewpoint = name.startswith("v_")

    homographies = [np.eye(3)] + [(_random_homography(shape, k, rng) if viewpoint else np.eye(3))
                                  for k in range(1, 6)]
    images = [photo]
    for k in range(1, 6):
        if viewpoint:
            target = cv2.warpPerspective(photo, homographies[k], (shape[1], shape[0]),
                                         flags=cv2.INTER_LINEAR).astype(np.float32)
            target = target * 2.0 ** rng.uniform(-0.3, 0.3)
        else:
            target = _illumination_change(photo, rng)
        target += rng.normal(0.0, rng.uniform(1.0, 3.0), shape).astype(np.float32)
        images.append(_to_uint8(target))

    kp = kp[(kp[:, 2] >= 5.0) & (kp[:, 2] <= 32.0)]
    half = 5.0 * kp[:, 2] / 2  # measurement region half-side = 5 sigma, sigma = size / 2
    centre = (HP_PATCH - 1) / 2
    normalise = np.array([[1 / centre, 0, -1], [0, 1 / centre, -1], [0, 0, 1]])
    frames = _affine(_rotation(kp[:, 3]) * half[:, None, None], kp[:, :2]) @ normalise
    # jitters[d, level, k-1]: one affine jitter per detection, level and target image
    jitters = np.stack([_jitters(level, len(kp) * 5, rng).reshape(len(kp), 5, 3, 3) for level in "eht"], axis=1)
    in_frame = frames[:, None, None] @ jitters  # jittered frame in reference coordinates
    targets = np.stack(homographies[1:])[None, None] @ in_frame
    inside = (_corners_inside(frames, shape)
              & _corners_inside(in_frame, shape).all(axis=(1, 2))
              & _corners_inside(targets, shape).all(axis=(1, 2)))
    usable = np.flatnonzero(inside)
    n_wanted = max(2, round(rng.integers(HPATCHES_PATCHES[0], HPATCHES_PATCHES[1] + 1) * scale))
    chosen = usable[_cluster(kp[usable], n_wanted, rng)]
    n_least = max(2, round(HPATCHES_PATCHES[0] * scale))
    if len(chosen) < n_least:
        raise DescbenchError(f"mini HPatches {name}: only {len(chosen)} usable detections, {n_least} needed")
    chosen = np.sort(chosen)

    stack = np.empty((len(hp.IMAGE_TYPES), len(chosen), HP_PATCH, HP_PATCH), dtype=np.uint8)
    for row, d in enumerate(chosen):
        stack[0, row] = sample_patch(photo, frames[d], HP_PATCH)
        for level_index in range(3):
            for k in range(1, 6):
                stack[1 + 5 * level_index + (k - 1), row] = sample_patch(
                    images[k], targets[d, level_index, k - 1], HP_PATCH)
    return stack


def write_sequence_raw(seq_dir: Path, stack: np.ndarray) -> None:
    """Write a (16,N,65,65) stack as the 16 original PNG columns."""
    import cv2

    for image_type, patches in zip(hp.IMAGE_TYPES, stack):
        path = seq_dir / f"{image_type}.png"
        if not cv2.imwrite(str(path), patches.reshape(-1, HP_PATCH)):
            raise DescbenchError(f"could not write {path}")


def make_splits(names: list[str], rng: np.random.Generator) -> dict[str, dict]:
    """Splits shaped like the official splits.json: a, b, c with half of the i_ and half of the v_
    sequences as test (rest train); illum, view and full with test only."""
    illum = [n for n in names if n.startswith("i_")]
    view = [n for n in names if n.startswith("v_")]
    splits = {}
    for split_name in ("a", "b", "c"):
        test_i = sorted(rng.choice(illum, len(illum) // 2, replace=False).tolist())
        test_v = sorted(rng.choice(view, len(view) // 2, replace=False).tolist())
        test = test_i + test_v
        splits[split_name] = {"name": split_name, "test": test, "train": [n for n in names if n not in test]}
    splits["illum"] = {"name": "illum", "test": illum}
    splits["view"] = {"name": "view", "test": view}
    splits["full"] = {"name": "full", "test": illum + view}
    return splits


# --------------------------------------------------------------------------------------------------
# the whole mini data root
# --------------------------------------------------------------------------------------------------
def make_mini(out_root: str | Path, seed: int = 0, scale: float = 1.0) -> MiniData:
    """Write the mini raw data under ``out_root/raw/`` (UBC sets, HPatches release, task files).

    Each output folder is generated in a temporary folder and renamed into place only after everything
    was generated. Refuses to overwrite HPatches folders that make-mini did not write.
    """
    if not 0 < scale <= 1:
        raise DescbenchError(f"make-mini: scale must be in (0, 1], got {scale}")
    out_root = Path(out_root)
    raw = out_root / "raw"
    record_path = raw / MINI_RECORD
    release_dir, tasks_dir = hp.raw_release_dir(out_root), hp.raw_tasks_dir(out_root)
    sequences_dir = hpatches_sequences.raw_dir(out_root)
    for existing in (release_dir, tasks_dir, sequences_dir):
        if existing.exists() and not record_path.is_file():
            raise DescbenchError(f"{existing} exists and was not written by make-mini (no {record_path}); "
                                 "choose another --out for the mini data")
    result = MiniData()
    parts = list(UBC_SCENES) + list(HPATCHES_SCENES)
    with ExitStack() as stack:
        ubc_tmp = {name: stack.enter_context(atomic_dir(ubc.raw_set_dir(out_root, name))) for name in UBC_SCENES}
        release_tmp = stack.enter_context(atomic_dir(release_dir))
        tasks_tmp = stack.enter_context(atomic_dir(tasks_dir))
        sequences_tmp = stack.enter_context(atomic_dir(sequences_dir))
        for part, name in enumerate(progress(parts, desc="make-mini", unit="set", leave=False, delay=0,
                                              logger=log)):
            if name in UBC_SCENES:
                generated = make_ubc_set(name, seed, part, scale)
                write_ubc_raw(ubc_tmp[name], generated["patches"], generated["labels"], generated["m50"],
                              generated["interest"])
                biggest = max(generated["m50"], key=lambda f: len(generated["m50"][f]))
                result.ubc[name] = {"patches": generated["patches"], "labels": generated["labels"],
                                    "m50": generated["m50"][biggest], "m50_file": biggest}
            else:
                seq = make_sequence(name, seed, part, scale)
                (release_tmp / name).mkdir()
                write_sequence_raw(release_tmp / name, seq)
                result.hpatches[name] = seq
        names = sorted(HPATCHES_SCENES)
        result.splits = make_splits(names, np.random.default_rng([seed, len(parts)]))
        write_json(tasks_tmp / hp.SPLITS_FILE, result.splits)
        write_task_files(tasks_tmp, {n: result.hpatches[n][0] for n in names}, result.splits,
                         n_pairs=max(10, round(TASK_PAIRS * scale)),
                         n_queries=max(5, round(TASK_QUERIES * scale)),
                         n_distractors=max(10, round(TASK_DISTRACTORS * scale)))
        # full-image sequences for the image-matching evaluation (not scaled: they are already small)
        sequences_record = hpatches_sequences.make_mini_sequences(sequences_tmp, seed, len(parts) + 1)
    result.record = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "scale": scale,
        "ubc": {name: {"photos": list(UBC_SCENES[name]), "patches": int(len(v["patches"])),
                       "points": int(len(np.unique(v["labels"]))), "pairs_file": v["m50_file"]}
                for name, v in result.ubc.items()},
        "hpatches": {name: {"photo": HPATCHES_SCENES[name], "patches": int(v.shape[1])}
                     for name, v in result.hpatches.items()},
        "hpatches_sequences": sequences_record,
        "jitter": {level: dict(zip(("shift", "rotation_deg", "log2_scale", "log2_anisotropy"), amps))
                   for level, amps in JITTER.items()},
    }
    write_json(record_path, result.record)
    return result
