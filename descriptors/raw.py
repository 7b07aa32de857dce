"""``raw``: the patch itself as a descriptor, the floor any descriptor should beat.

Input contract: uint8 patches (N, H, W) of any side. The patch is resized to 32x32 with
``cv2.resize`` (INTER_AREA when shrinking), standardised to zero mean and unit std, flattened and
L2-normalised: a 1024-D float32 descriptor.
"""

from __future__ import annotations

import cv2
import numpy as np

from descbench.registry import Descriptor

SIDE = 32


def describe(patches: np.ndarray) -> np.ndarray:
    out = np.empty((len(patches), SIDE * SIDE), dtype=np.float32)
    for i, patch in enumerate(patches):
        small = patch if patch.shape == (SIDE, SIDE) else cv2.resize(
            patch, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
        out[i] = small.astype(np.float32).ravel()
    out -= out.mean(axis=1, keepdims=True)
    out /= out.std(axis=1, keepdims=True) + 1e-8
    out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-12
    return out


DESCRIPTORS = [
    Descriptor(name="raw", citation="raw pixels (resized to 32x32, standardised, L2-normalised)",
               patch_size=SIDE, dim=SIDE * SIDE, describe=describe),
]
