"""``sift`` and ``rootsift``: OpenCV SIFT computed once per patch, at its centre, covering the patch.

Choice (as hpatches-benchmark ``python/extract_opencv_sift.py``): one keypoint at the patch centre
(side/2, side/2) with size = side / 5.303. OpenCV's descriptor window spans 4x4 cells of
3 * size/2 pixels and is sampled over a circle of radius 3 * size/2 * sqrt(2) * (4 + 1) / 2
= 5.303 * size/2, so this size makes that circle the inscribed circle of the patch. The patch
itself is the image (no resizing; 65x65 HPatches or 64x64 UBC patches), the keypoint is upright
(angle 0: patches are already oriented by the dataset). The official script leaves OpenCV's default
angle -1, which OpenCV turns into a 1 degree rotation; we do not copy that quirk.

OpenCV returns 128 integer-valued floats (the L2-normalised, clipped histogram x 512, rounded).
RootSIFT (Arandjelovic & Zisserman 2012): L1-normalise, element-wise square root, L2-normalise.
"""

from __future__ import annotations

import cv2
import numpy as np

from descbench.registry import Descriptor

DIM = 128
WINDOW_FACTOR = 5.303
NOMINAL_SIDE = 65
_EPS = 1e-12


def _centre_keypoint(side_h: int, side_w: int) -> cv2.KeyPoint:
    side = min(side_h, side_w)
    return cv2.KeyPoint(side_w / 2.0, side_h / 2.0, side / WINDOW_FACTOR, 0.0)


def describe_sift(patches: np.ndarray) -> np.ndarray:
    """uint8 patches (N, H, W) -> float32 (N, 128) OpenCV SIFT descriptors."""
    sift = cv2.SIFT_create()
    keypoint = [_centre_keypoint(*patches.shape[1:3])]
    out = np.empty((len(patches), DIM), dtype=np.float32)
    for i, patch in enumerate(patches):
        kept, desc = sift.compute(np.ascontiguousarray(patch), keypoint)
        if desc is None or len(kept) != 1:  # OpenCV dropped the keypoint: describe nothing
            out[i] = 0.0
        else:
            out[i] = desc[0]
    return out


def describe_rootsift(patches: np.ndarray) -> np.ndarray:
    """RootSIFT: sqrt of the L1-normalised SIFT vector, L2-normalised (a zero vector stays zero)."""
    desc = describe_sift(patches).astype(np.float64)
    desc /= np.abs(desc).sum(axis=1, keepdims=True) + _EPS
    desc = np.sqrt(desc)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True) + _EPS
    return desc.astype(np.float32)


DESCRIPTORS = [
    Descriptor(name="sift", citation="D. G. Lowe. Distinctive image features from scale-invariant "
               "keypoints. IJCV 2004 (OpenCV SIFT at the patch centre)",
               patch_size=NOMINAL_SIDE, dim=DIM, describe=describe_sift,
               source="opencv-python-headless cv2.SIFT"),
    Descriptor(name="rootsift", citation="R. Arandjelovic, A. Zisserman. Three things everyone should "
               "know to improve object retrieval. CVPR 2012 (RootSIFT of OpenCV SIFT)",
               patch_size=NOMINAL_SIDE, dim=DIM, describe=describe_rootsift,
               source="opencv-python-headless cv2.SIFT"),
]
