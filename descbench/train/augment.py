"""Batched augmentation on the training device, and the plain 64->32 resize for evaluation.

The reference pipeline (METHOD.md §5, per patch with PIL) is: Pad(3, edge) -> RandomAffine(±5°, scale
1.0-1.14, shear 5, bicubic) -> RandomResizedCrop(32, scale 0.9-1.0, ratio 0.9-1.1) -> ToTensor, then per
class (identically for all its patches) transpose with p=0.5 and horizontal flip with p=0.5.

Here the whole chain is one sampling grid per patch: the crop box, the inverse affine map and the
flip/transpose are composed into a single 2x3 matrix, and one bilinear ``F.grid_sample`` call
resamples the batch. Details:

* The 64x64 patch is first halved to 32x32 by averaging 2x2 blocks (area resizing), then resampled
  bilinearly at 32x32: the crop maps the halved image nearly 1:1, so this does not alias, as the
  reference's antialiased down-sizing in RandomResizedCrop does not. Measured on make-mini patches
  with the same random parameters, this is within 1.9 grey levels RMSE of the PIL reference chain
  (3-pixel border aside) and about as sharp (gradient energy -10 %); PIL's own 2:1 bilinear weights
  then bicubic sampling come closer (1.5 levels) but cost 2.7x as much on the CPU (the bicubic
  grid_sample alone is 3x the bilinear one). A chain of flips/transposes only (``FLIP_ONLY``)
  moves the evaluation input (``eval_patches``) instead, exactly.
* Out-of-image samples repeat the border pixel (``padding_mode="border"``): the reference pads 3 edge
  pixels and fills beyond with 0; only the outermost corners of a rotated, barely zoomed patch reach
  that far.
* Random parameters are drawn on the CPU from an explicit ``torch.Generator`` (a few numbers per patch),
  so the result does not depend on the device and the generator state is checkpointable.
* On the CPU the batch is resampled in blocks of ``CPU_BLOCK`` patches: every intermediate (float
  patches, halved patches, grid) then stays in cache and is reused from the allocator, instead of
  tens of MB of fresh pages per call, whose page faults cost more than the arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

PATCH_SIDE = 32
CPU_BLOCK = 256  # patches resampled together on the CPU (a few MB of intermediates)


def eval_patches(patches: torch.Tensor, side: int = PATCH_SIDE) -> torch.Tensor:
    """What the network sees at evaluation/validation: uint8 (B, H, W) -> float (B, 1, side, side).

    PIL's Resize (bilinear, antialiased) then ToTensor: the resized values are rounded to uint8
    levels, as PIL's are. On the CPU torch resizes uint8 directly (its PIL-compatible kernel, and 3x
    faster than going through float); elsewhere in float, then rounded.
    """
    x = patches.unsqueeze(1)
    if x.shape[-1] != side or x.shape[-2] != side:
        if x.device.type == "cpu":
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False,
                              antialias=True)
        else:
            x = F.interpolate(x.float(), size=(side, side), mode="bilinear", align_corners=False,
                              antialias=True).round_().clamp_(0, 255)
    return x.to(torch.float32).div_(255.0)


@dataclass(frozen=True)
class AugmentParams:
    """The reference ranges (METHOD.md §5)."""

    degrees: float = 5.0
    scale: tuple[float, float] = (1.0, 1.14)
    shear: float = 5.0
    pad: int = 3
    crop_scale: tuple[float, float] = (0.9, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.1)
    flip_transpose: bool = True

    @property
    def resamples(self) -> bool:
        """Whether pixels move off the grid (else the chain only flips/transposes the plain resize)."""
        return (self.degrees, self.scale, self.shear, self.pad, self.crop_scale, self.crop_ratio) != \
            (0.0, (1.0, 1.0), 0.0, 0, (1.0, 1.0), (1.0, 1.0))


FLIP_ONLY = AugmentParams(degrees=0.0, scale=(1.0, 1.0), shear=0.0, pad=0, crop_scale=(1.0, 1.0),
                          crop_ratio=(1.0, 1.0))


def sample_matrices(n_classes: int, n_per_class: int, in_side: int, generator: torch.Generator,
                    params: AugmentParams = AugmentParams()) -> torch.Tensor:
    """(K*P, 2, 3) ``affine_grid`` matrices: output coords in [-1, 1] -> input coords in [-1, 1].

    Geometry in pixel units of the original patch, centred on the patch centre (the padded image
    has the same centre). Drawn on the CPU with ``generator``; the arithmetic on these few numbers
    per patch is numpy's (float64), whose small-array calls cost a fraction of torch's.
    """
    n = n_classes * n_per_class
    u = torch.rand((n, 7), generator=generator, dtype=torch.float64).numpy()
    flips = torch.rand((n_classes, 2), generator=generator, dtype=torch.float64).numpy() < 0.5

    angle = np.deg2rad((2 * u[:, 0] - 1) * params.degrees)
    scale = params.scale[0] + u[:, 1] * (params.scale[1] - params.scale[0])
    tan_shear = np.tan(np.deg2rad((2 * u[:, 2] - 1) * params.shear))
    cos, sin = np.cos(angle), np.sin(angle)
    # forward affine (torchvision's convention: rotation and x-shear about the centre, then scale):
    # scale * [[cos, -cos tan - sin], [sin, -sin tan + cos]], determinant scale^2; its inverse maps an
    # output pixel to the input pixel it samples
    inv = np.stack([np.stack([-sin * tan_shear + cos, cos * tan_shear + sin], -1),
                    np.stack([-sin, cos], -1)], -2) / scale[:, None, None]

    # random resized crop of the padded (in_side + 2 pad) image: box centre (cx, cy), size (w, h)
    padded = in_side + 2 * params.pad
    area = (params.crop_scale[0] + u[:, 3] * (params.crop_scale[1] - params.crop_scale[0])) * padded ** 2
    log_lo, log_hi = math.log(params.crop_ratio[0]), math.log(params.crop_ratio[1])
    ratio = np.exp(log_lo + u[:, 4] * (log_hi - log_lo))
    w = np.minimum(np.sqrt(area * ratio), padded)
    h = np.minimum(np.sqrt(area / ratio), padded)
    cx = (2 * u[:, 5] - 1) * (padded - w) / 2
    cy = (2 * u[:, 6] - 1) * (padded - h) / 2

    # per class: transpose (swap x, y) then horizontal flip, applied to the output coordinates
    flip_mat = np.tile(np.eye(2), (n_classes, 1, 1))
    if params.flip_transpose:
        transpose, hflip = flips[:, 0], flips[:, 1]
        flip_mat[transpose] = [[0.0, 1.0], [1.0, 0.0]]
        flip_mat[hflip, :, 0] = -flip_mat[hflip, :, 0]
    flip_mat = np.repeat(flip_mat, n_per_class, axis=0)

    # output [-1, 1] -> crop box (padded-centred pixels) -> inverse affine -> input [-1, 1]
    half = in_side / 2
    crop_lin = flip_mat * np.stack([w / 2, h / 2], -1)[:, :, None]
    theta = np.empty((n, 2, 3))
    theta[:, :, :2] = inv @ crop_lin
    theta[:, :, 2] = (inv @ np.stack([cx, cy], -1)[:, :, None])[:, :, 0]
    return torch.from_numpy((theta / half).astype(np.float32))


def _area_halve(x: torch.Tensor) -> torch.Tensor:
    """Sums of 2x2 blocks: (B, 2h, 2w) uint8 or float -> float32 (B, h, w), 4x the area average.

    Rows are added as whole contiguous rows, then column pairs; both are plain elementwise adds
    (pooling and reductions over the same views are 10-25x slower on the CPU).
    """
    rows = x[:, 0::2].to(torch.float32, copy=True).add_(x[:, 1::2])
    pairs = rows.view(*rows.shape[:-1], rows.shape[-1] // 2, 2)
    return pairs[..., 0] + pairs[..., 1]


def augment(patches: torch.Tensor, n_per_class: int, generator: torch.Generator,
            params: AugmentParams = AugmentParams(), side: int = PATCH_SIDE,
            n_total: int | None = None, select: slice | None = None) -> torch.Tensor:
    """Augment a class-major uint8 batch (K*P, 2*side, 2*side) on its device -> float (K*P, 1, side,
    side) in [0, 1].

    In distributed training each process passes only its share ``patches`` = batch[``select``] of a
    batch of ``n_total`` patches: the parameters are drawn for the whole batch (same generator state
    on every process) and the share's rows are used, so the result equals one process's.
    """
    n_total = patches.shape[0] if n_total is None else n_total
    if n_total % n_per_class:
        raise ValueError(f"batch of {n_total} patches is not a multiple of {n_per_class} per class")
    if patches.shape[-2:] != (2 * side, 2 * side):
        raise ValueError(f"patches of {tuple(patches.shape[-2:])} pixels; augment halves "
                         f"{2 * side}x{2 * side} patches to {side}x{side}")
    theta = sample_matrices(n_total // n_per_class, n_per_class, patches.shape[-1], generator, params)
    if select is not None:
        theta = theta[select]
    device, n = patches.device, patches.shape[0]
    theta = theta.to(device)
    # affine_grid by hand: output pixel centres in [-1, 1] (align_corners=False), grid[..., k] =
    # theta[k, 0] * x + theta[k, 1] * y + theta[k, 2]; computed planar (B, 2, side, side), whose
    # inner loop is a row, and handed to grid_sample as the (B, side, side, 2) view
    centres = torch.arange(1, 2 * side, 2, dtype=torch.float32, device=device) / side - 1
    xs, ys = centres.view(1, 1, 1, side), centres.view(1, 1, side, 1)
    out = torch.empty((n, 1, side, side), dtype=torch.float32, device=device)
    block = CPU_BLOCK if device.type == "cpu" else max(n, 1)
    for start in range(0, n, block):
        rows = slice(start, min(start + block, n))
        if params.resamples:
            small = _area_halve(patches[rows]).mul_(1.0 / (4 * 255)).unsqueeze(1)
        else:  # flips/transposes only: exactly the evaluation input, moved (bilinear at pixel centres)
            small = eval_patches(patches[rows], side)
        t = theta[rows, :, :, None, None]
        grid = (t[:, :, 0] * xs + t[:, :, 1] * ys + t[:, :, 2]).permute(0, 2, 3, 1)
        sampled = F.grid_sample(small, grid, mode="bilinear", padding_mode="border",
                                align_corners=False)
        torch.clamp(sampled, 0.0, 1.0, out=out[rows])
    return out
