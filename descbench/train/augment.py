"""Batched augmentation on the training device, and the plain 64->32 resize for evaluation.

The reference pipeline (METHOD.md §5, per patch with PIL) is: Pad(3, edge) -> RandomAffine(±5°, scale
1.0-1.14, shear 5, bicubic) -> RandomResizedCrop(32, scale 0.9-1.0, ratio 0.9-1.1) -> ToTensor, then per
class (identically for all its patches) transpose with p=0.5 and horizontal flip with p=0.5.

Here the whole chain is one sampling grid per patch: the crop box, the inverse affine map and the
flip/transpose are composed into a single 2x3 matrix, and one ``F.affine_grid`` + ``F.grid_sample``
call resamples the batch. Details:

* The 64x64 patch is first shrunk to 32x32 with antialiased bilinear resizing (``eval_patches``,
  what PIL's Resize does); the crop then maps the 32x32 image nearly 1:1, so resampling it bicubically
  does not alias, exactly as the reference's bilinear down-sizing in RandomResizedCrop does not.
* Out-of-image samples repeat the border pixel (``padding_mode="border"``): the reference pads 3 edge
  pixels and fills beyond with 0; only the outermost corners of a rotated, barely zoomed patch reach
  that far.
* Random parameters are drawn on the CPU from an explicit ``torch.Generator`` (a few numbers per patch),
  so the result does not depend on the device and the generator state is checkpointable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

PATCH_SIDE = 32


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


FLIP_ONLY = AugmentParams(degrees=0.0, scale=(1.0, 1.0), shear=0.0, pad=0, crop_scale=(1.0, 1.0),
                          crop_ratio=(1.0, 1.0))


def sample_matrices(n_classes: int, n_per_class: int, in_side: int, generator: torch.Generator,
                    params: AugmentParams = AugmentParams()) -> torch.Tensor:
    """(K*P, 2, 3) ``affine_grid`` matrices: output coords in [-1, 1] -> input coords in [-1, 1].

    Geometry in pixel units of the original patch, centred on the patch centre (the padded image
    has the same centre). Drawn on the CPU with ``generator``.
    """
    n = n_classes * n_per_class
    u = torch.rand((n, 7), generator=generator, dtype=torch.float64)
    flips = torch.rand((n_classes, 2), generator=generator, dtype=torch.float64) < 0.5

    angle = torch.deg2rad((2 * u[:, 0] - 1) * params.degrees)
    scale = params.scale[0] + u[:, 1] * (params.scale[1] - params.scale[0])
    tan_shear = torch.tan(torch.deg2rad((2 * u[:, 2] - 1) * params.shear))
    cos, sin = torch.cos(angle), torch.sin(angle)
    # forward affine (torchvision's convention: rotation and x-shear about the centre, then scale):
    # scale * [[cos, -cos tan - sin], [sin, -sin tan + cos]], determinant scale^2; its inverse maps an
    # output pixel to the input pixel it samples
    inv = torch.stack([torch.stack([-sin * tan_shear + cos, cos * tan_shear + sin], -1),
                       torch.stack([-sin, cos], -1)], -2) / scale[:, None, None]

    # random resized crop of the padded (in_side + 2 pad) image: box centre (cx, cy), size (w, h)
    padded = in_side + 2 * params.pad
    area = (params.crop_scale[0] + u[:, 3] * (params.crop_scale[1] - params.crop_scale[0])) * padded ** 2
    log_lo, log_hi = math.log(params.crop_ratio[0]), math.log(params.crop_ratio[1])
    ratio = torch.exp(log_lo + u[:, 4] * (log_hi - log_lo))
    w = torch.sqrt(area * ratio).clamp(max=padded)
    h = torch.sqrt(area / ratio).clamp(max=padded)
    cx = (2 * u[:, 5] - 1) * (padded - w) / 2
    cy = (2 * u[:, 6] - 1) * (padded - h) / 2

    # per class: transpose (swap x, y) then horizontal flip, applied to the output coordinates
    flip_mat = torch.eye(2, dtype=torch.float64).repeat(n_classes, 1, 1)
    if params.flip_transpose:
        transpose, hflip = flips[:, 0], flips[:, 1]
        flip_mat[transpose] = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
        flip_mat[hflip, :, 0] = -flip_mat[hflip, :, 0]
    flip_mat = flip_mat.repeat_interleave(n_per_class, dim=0)

    # output [-1, 1] -> crop box (padded-centred pixels) -> inverse affine -> input [-1, 1]
    half = in_side / 2
    crop_lin = flip_mat * torch.stack([w / 2, h / 2], -1)[:, :, None]
    theta = torch.empty((n, 2, 3), dtype=torch.float64)
    theta[:, :, :2] = inv @ crop_lin
    theta[:, :, 2] = (inv @ torch.stack([cx, cy], -1)[:, :, None]).squeeze(-1)
    return theta.div_(half).to(torch.float32)


def augment(patches: torch.Tensor, n_per_class: int, generator: torch.Generator,
            params: AugmentParams = AugmentParams(), side: int = PATCH_SIDE,
            n_total: int | None = None, select: slice | None = None) -> torch.Tensor:
    """Augment a class-major uint8 batch (K*P, H, W) on its device -> float (K*P, 1, side, side).

    In distributed training each process passes only its share ``patches`` = batch[``select``] of a
    batch of ``n_total`` patches: the parameters are drawn for the whole batch (same generator state
    on every process) and the share's rows are used, so the result equals one process's.
    """
    n_total = patches.shape[0] if n_total is None else n_total
    if n_total % n_per_class:
        raise ValueError(f"batch of {n_total} patches is not a multiple of {n_per_class} per class")
    theta = sample_matrices(n_total // n_per_class, n_per_class, patches.shape[-1], generator, params)
    if select is not None:
        theta = theta[select]
    n = patches.shape[0]
    small = eval_patches(patches, side)
    grid = F.affine_grid(theta.to(patches.device), [n, 1, side, side], align_corners=False)
    out = F.grid_sample(small, grid, mode="bicubic", padding_mode="border", align_corners=False)
    return out.clamp_(0.0, 1.0)
