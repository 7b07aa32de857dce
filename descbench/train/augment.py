"""Batched training augmentations on the training device, and the evaluation-time resizes.

Balanced / Self-TNet chain (``augment`` with ``AugmentParams()``)
----------------------------------------------------------------
The reference trains on the raw 64x64 Brown patches (Self-TNet ``datasets.py:542-570``: ``trans_lib =
trans_resize32_affine`` for ``--ds lib/nd/yos``; the ``.pt`` files hold the 64x64 patches of
``PhotoTour.py:197,216``) through ``Learning/learning.py:145-151``::

    ToPILImage -> Pad(3, edge) -> RandomAffine(5, scale=(1.0, 1.14), shear=5, resample=BICUBIC)
               -> RandomResizedCrop(32, scale=(0.9, 1.0), ratio=(0.9, 1.1)) -> ToTensor

with torchvision 0.5.0 and Pillow 7.0.0 (``environment.yml:149,194``), then per tuple (class) a
transpose with p 0.5 and a column flip with p 0.5 (``datasets.py:207-214``, ``DS_Brown.fliprot`` True
by default, ``datasets.py:230``). ``augment`` reproduces every step, batched:

* Pad(3, edge): ``np.pad(..., 'edge')`` (torchvision ``functional.py:337``); 64 -> 70 pixels.
* RandomAffine parameters (torchvision ``transforms.py:1091-1120``, ``__init__`` 1044-1085): angle
  ``uniform(-5, 5)`` degrees, no translation, scale ``uniform(1.0, 1.14)``, shear given as a number
  becomes ``(-5, 5)``, a 2-range, so one x-shear ``uniform(-5, 5)`` and y-shear 0.
* The inverse matrix is ``_get_inverse_affine_matrix`` (``functional.py:732-785``) about the centre
  ``(w * 0.5 + 0.5, h * 0.5 + 0.5)`` = (35.5, 35.5) (``functional.py:814``; half a pixel off the true
  centre 35.0 of PIL's continuous coordinates -- reproduced, it is what the reference trained with).
* ToPILImage of the uint8 (64, 64) tensor is a mode "L" image (``functional.py:126-152``).
* PIL's ``Image.transform(AFFINE, BICUBIC, fillcolor=0)`` (Pillow 7.0.0 ``Geometry.c``:
  ``affine_transform`` 357-370 samples output pixel (x, y) at ``M @ (x + 0.5, y + 0.5, 1)``;
  ``bicubic_filter8`` 592-603): a sample whose position lies outside [0, 70) x [0, 70) is the fill 0;
  otherwise the 4x4 taps around it, clamped to the image (= the edge padding continued), are combined
  with the cubic convolution kernel of **a = -1** (the ``BICUBIC`` macro, 540-546, ``p1 + d (p2 + d
  (p3 + d p4))``; not the a = -0.5 of PIL's resize nor torch's a = -0.75), rows first, and the result
  is clamped to [0, 255] and **truncated** to uint8. ``interpolation="bilinear"`` is PIL's
  ``bilinear_filter8`` (2x2 taps, ``a + (b - a) d``, truncated; HardNet's ``--augmentation`` rotates
  with BILINEAR).
* RandomResizedCrop parameters (``transforms.py:635-676``): up to 10 attempts of area ``uniform(0.9,
  1.0) * 70**2`` and ratio ``exp(uniform(log 0.9, log 1.1))`` (log-uniform), ``w = round(sqrt(area *
  ratio))``, ``h = round(sqrt(area / ratio))`` (Python's round: half to even), accepted when ``0 < w
  <= 70 and 0 < h <= 70``, then integer offsets ``i = randint(0, 70 - h)``, ``j = randint(0, 70 -
  w)``; if all 10 fail, the central fallback crop. The loop is vectorised: all 10 attempts are drawn
  for every patch and the first accepted one is used.
* ``resized_crop`` (``functional.py:389-409``) crops the integer box and resizes it to 32x32 with
  PIL's BILINEAR resize (Pillow 7.0.0 ``Resample.c``: ``precompute_coeffs`` 179, a triangle filter
  widened by the down-scale factor, i.e. antialiased; ``normalize_coeffs_8bpc`` 258, coefficients
  rounded to 22-bit fixed point, ``PRECISION_BITS`` 83), a horizontal pass then a vertical one, each
  rounded (``+2^21 >> 22``) and clipped to uint8. Reproduced with the same integer coefficients in two
  float64 matrix products, which are exact (integer sums below 2^53).
* ToTensor: ``img.float().div(255)`` (``functional.py:100``).

Fidelity: against PIL (13) running the same chain with the same parameters, on 2048 textured patches
(``benchmarks/augment_speed.py``), 2e-5 of the output pixels differ (bilinear: 7e-6), by 1 grey level:
where a value of the affine stage lies within float32 rounding of an integer, PIL's double arithmetic
truncates it the other way. The arithmetic is float32 elementwise operations (each rounded once),
float64 coordinate terms, integer-exact matrix products (float32 on small integers, so also under
TF32; float64 for the resize); the result does not depend on the thread count (tested) and is meant
not to depend on the device (only the CPU was available to test). The random parameters are drawn on
the CPU from an explicit ``torch.Generator``.

Speed: the chain does what PIL does, 16 taps per pixel of a 70x70 affine stage plus the antialiased
resize, as ~30 vectorised tensor passes where PIL runs one C loop; on one CPU core it costs about as
much per patch as PIL (``benchmarks/augment_speed.py``) and gains on more cores / on a GPU. The CPU
intermediates live in a reused workspace (fresh multi-MB tensors per block cost page faults).

Other methods
-------------
* HardNet, HyNet and SOSNet resize 64->32 with ``cv2.resize(patch, (32, 32))`` (INTER_LINEAR) at
  training and test time (DagnyT/hardnet ``code/Utils.py:10`` ``cv2_scale``, used by
  ``HardNet.py:357-364``; HyNet ``utils.py:36,75,363``). For an exact 2:1 reduction OpenCV's resize
  switches INTER_LINEAR to INTER_AREA (``resize.cpp``: ``if (interpolation == INTER_LINEAR &&
  is_area_fast && iscale_x == 2 && iscale_y == 2) interpolation = INTER_AREA``), whose uint8 result
  is the 2x2 sum ``(a + b + c + d + 2) >> 2``: ``cv2_linear_resize``, bit-exact; ``eval_patches(...,
  resize="cv2")`` is the corresponding network input.
* HardNet+ ``--fliprot`` (``HardNet.py:262-273``): per triplet ``do_flip``, ``do_rot`` with p 0.5;
  rotation is ``permute(0, 2, 1)`` (a transpose) applied first, then the flip ``[:, :, ::-1]``
  (columns) -- the same operation as Self-TNet's, so ``flip_transpose`` (and ``augment`` with
  ``FLIP_ONLY``, or ``HARDNET_FLIPROT`` for the cv2 resize) implements it.
* HyNet / SOSNet ``data_aug`` (HyNet ``utils.py:368-391``): per pair, with p 0.5 both patches are
  ``np.rot90(., k)``, k uniform in {1, 2, 3}, then with p 0.5 both ``np.flipud``: ``hynet_orientation``.

Batches: ``class_of`` gives each patch's batch-local class position (0..K-1, non-decreasing, each class
contiguous; classes may differ in size). Class-wise draws (flips, orientations) are made once per class
and shared by its patches. In distributed training each process passes only its share ``patches`` =
batch[``select``]: everything is drawn for the whole batch (same generator state on every process) and
the share's rows are used, so the result equals the corresponding rows of a single process's.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

PATCH_SIDE = 32
CPU_BLOCK = 16  # patches resampled together on the CPU (intermediates stay in cache)
DEVICE_BLOCK = 512  # elsewhere (about 0.5 GB of intermediates)
CROP_ATTEMPTS = 10  # RandomResizedCrop.get_params
INTERPOLATIONS = ("bicubic", "bilinear")
RESIZES = ("pil", "cv2")

_FIX = 22  # Pillow Resample.c PRECISION_BITS = 32 - 8 - 2


# --- evaluation input ------------------------------------------------------------------------------

def cv2_linear_resize(patches: torch.Tensor, side: int = PATCH_SIDE) -> torch.Tensor:
    """``cv2.resize(p, (side, side))`` (INTER_LINEAR) of uint8 (B, H, W) patches -> uint8 (B, side,
    side), bit-exact, on the patches' device.

    Supported: H = W = 2 * side (OpenCV computes it as INTER_AREA: the 2x2 sum, + 2, >> 2) and H = W
    = side (a copy). Other sizes go through OpenCV's fixed-point bilinear kernels, which are not
    reproduced here: ValueError.
    """
    if patches.dtype != torch.uint8 or patches.dim() != 3:
        raise ValueError(f"cv2_linear_resize takes uint8 (B, H, W) patches, got {patches.dtype} "
                         f"{tuple(patches.shape)}")
    h, w = patches.shape[-2:]
    if (h, w) == (side, side):
        return patches.clone()
    if (h, w) != (2 * side, 2 * side):
        raise ValueError(f"cv2_linear_resize reproduces cv2.resize INTER_LINEAR exactly only for 2:1 "
                         f"(or 1:1); got {h}x{w} -> {side}x{side}")
    x = patches.to(torch.int16)
    s = x[:, 0::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 0::2] + x[:, 1::2, 1::2] + 2
    return s.div_(4, rounding_mode="floor").to(torch.uint8)


def eval_patches(patches: torch.Tensor, side: int = PATCH_SIDE, resize: str = "pil") -> torch.Tensor:
    """What the network sees at evaluation/validation: uint8 (B, H, W) -> float (B, 1, side, side).

    ``resize="pil"`` (default; Self-TNet / balanced ``trans_resize32``): PIL's Resize (bilinear,
    antialiased) then ToTensor; the resized values are rounded to uint8 levels, as PIL's are. On the
    CPU torch resizes uint8 directly (its PIL-compatible kernel); elsewhere in float, then rounded.
    ``resize="cv2"`` (HardNet, HyNet, SOSNet): ``cv2_linear_resize``, then / 255.
    """
    if resize not in RESIZES:
        raise ValueError(f"resize={resize!r}; use one of {RESIZES}")
    if resize == "cv2":
        return cv2_linear_resize(patches, side).unsqueeze(1).to(torch.float32).div_(255.0)
    x = patches.unsqueeze(1)
    if x.shape[-1] != side or x.shape[-2] != side:
        if x.device.type == "cpu":
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False,
                              antialias=True)
        else:
            x = F.interpolate(x.float(), size=(side, side), mode="bilinear", align_corners=False,
                              antialias=True).round_().clamp_(0, 255)
    return x.to(torch.float32).div_(255.0)


# --- parameters ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AugmentParams:
    """The reference ranges (Self-TNet ``learning.py:145-151``).

    ``interpolation`` is RandomAffine's resampling filter (PIL BICUBIC in the reference, or BILINEAR);
    ``resize`` is the plain 64->32 resize used when the chain does not resample (``FLIP_ONLY``).
    """

    degrees: float = 5.0
    scale: tuple[float, float] = (1.0, 1.14)
    shear: float = 5.0
    pad: int = 3
    crop_scale: tuple[float, float] = (0.9, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.1)
    flip_transpose: bool = True
    interpolation: str = "bicubic"
    resize: str = "pil"

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation={self.interpolation!r}; use one of {INTERPOLATIONS}")
        if self.resize not in RESIZES:
            raise ValueError(f"resize={self.resize!r}; use one of {RESIZES}")

    @property
    def resamples(self) -> bool:
        """Whether pixels move off the grid (else the chain only flips/transposes the plain resize)."""
        return (self.degrees, self.scale, self.shear, self.pad, self.crop_scale, self.crop_ratio) != \
            (0.0, (1.0, 1.0), 0.0, 0, (1.0, 1.0), (1.0, 1.0))


FLIP_ONLY = AugmentParams(degrees=0.0, scale=(1.0, 1.0), shear=0.0, pad=0, crop_scale=(1.0, 1.0),
                          crop_ratio=(1.0, 1.0))
HARDNET_FLIPROT = AugmentParams(degrees=0.0, scale=(1.0, 1.0), shear=0.0, pad=0,
                                crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), resize="cv2")


@dataclass(frozen=True)
class AugmentDraws:
    """The random parameters of one batch (numpy, on the CPU).

    Per patch: ``angle``, ``scale``, ``shear`` (RandomAffine, degrees / factor / x-shear degrees) and
    ``crop`` (n, 4) int64 rows (i, j, h, w) of RandomResizedCrop on the padded patch; per class:
    ``transpose`` and ``hflip`` (bool (K,)); ``class_of`` (n,) maps patches to classes.
    """

    angle: np.ndarray
    scale: np.ndarray
    shear: np.ndarray
    crop: np.ndarray
    transpose: np.ndarray
    hflip: np.ndarray
    class_of: np.ndarray

    def rows(self, select) -> "AugmentDraws":
        """The draws of patches ``select`` (the class-wise ones are kept whole)."""
        return AugmentDraws(self.angle[select], self.scale[select], self.shear[select],
                            self.crop[select], self.transpose, self.hflip, self.class_of[select])


def check_class_of(class_of, n_total: int | None = None) -> np.ndarray:
    """``class_of`` as int64 numpy, checked: starts at 0, non-decreasing by steps of 0 or 1."""
    c = np.asarray(class_of.cpu() if isinstance(class_of, torch.Tensor) else class_of)
    if c.ndim == 0:
        raise ValueError(f"class_of must give every batch patch's class position (an array), not "
                         f"{class_of!r}: the patches-per-class count is no longer an argument")
    if c.ndim != 1 or c.size == 0 or not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"class_of must be a non-empty 1-d integer array, got {c.dtype} {c.shape}")
    c = c.astype(np.int64, copy=False)
    steps = np.diff(c)
    if c[0] != 0 or np.any((steps != 0) & (steps != 1)):
        raise ValueError("class_of must number the classes 0..K-1 in order, each class contiguous")
    if n_total is not None and n_total != c.size:
        raise ValueError(f"n_total={n_total} but class_of has {c.size} entries (one per batch patch)")
    return c


def affine_params(u: np.ndarray, params: AugmentParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RandomAffine.get_params (torchvision 0.5) from uniforms u (n, 3) in [0, 1): angle, scale, shear
    (``random.uniform(a, b)`` is ``a + (b - a) * random()``)."""
    angle = -params.degrees + 2 * params.degrees * u[:, 0]
    scale = params.scale[0] + (params.scale[1] - params.scale[0]) * u[:, 1]
    shear = -params.shear + 2 * params.shear * u[:, 2]
    return angle, scale, shear


def inverse_affine_matrix(angle: np.ndarray, scale: np.ndarray, shear: np.ndarray,
                          size: tuple[int, int]) -> np.ndarray:
    """torchvision 0.5 ``F.affine``'s matrix for PIL (``_get_inverse_affine_matrix`` with y-shear 0,
    no translation, centre ``(w * 0.5 + 0.5, h * 0.5 + 0.5)``), vectorised: (n, 6) float64 such that
    output pixel (x, y) samples the input at ``(m0 X + m1 Y + m2, m3 X + m4 Y + m5)``, X = x + 0.5,
    Y = y + 0.5 (PIL's ``affine_transform``).

    The forward linear part is rotation(angle) times the x-shear, [[cos, -cos tan(shear) - sin],
    [sin, -sin tan(shear) + cos]], of determinant 1; times ``scale``. Its inverse, about the centre,
    with torchvision's order of floating-point operations (PIL truncates, so the last bits of the
    matrix show in a few pixels).
    """
    w, h = size
    cx, cy = w * 0.5 + 0.5, h * 0.5 + 0.5
    t, sh = np.radians(angle), np.radians(shear)
    # Python's math (libm), as torchvision: numpy's SIMD trigonometry may differ in the last bit
    cos = np.array([math.cos(v) for v in t])
    sin = np.array([math.sin(v) for v in t])
    tan = np.array([math.tan(v) for v in sh])
    m = np.zeros((len(t), 6))
    m[:, 0] = (-sin * tan + cos) / scale
    m[:, 1] = -(-cos * tan - sin) / scale
    m[:, 3] = -sin / scale
    m[:, 4] = cos / scale
    m[:, 2] = (m[:, 0] * -cx + m[:, 1] * -cy) + cx
    m[:, 5] = (m[:, 3] * -cx + m[:, 4] * -cy) + cy
    return m


def resized_crop_params(u_attempts: np.ndarray, u_offset: np.ndarray, size: tuple[int, int],
                        params: AugmentParams) -> np.ndarray:
    """RandomResizedCrop.get_params (torchvision 0.5) for n images of ``size`` (w, h), vectorised:
    (n, 4) int64 rows (i, j, h, w).

    ``u_attempts`` (n, attempts, 2): the uniforms of each attempt's area and log-ratio; ``u_offset``
    (n, 2): those of ``randint(0, height - h)`` and ``randint(0, width - w)`` (drawn once; torchvision
    draws them only for the accepted attempt, which has the same distribution).
    """
    width, height = size
    area = height * width
    lo, hi = params.crop_scale
    target = (lo + (hi - lo) * u_attempts[..., 0]) * area
    log_lo, log_hi = math.log(params.crop_ratio[0]), math.log(params.crop_ratio[1])
    aspect = np.exp(log_lo + (log_hi - log_lo) * u_attempts[..., 1])
    w = np.round(np.sqrt(target * aspect)).astype(np.int64)  # half to even, as Python's round
    h = np.round(np.sqrt(target / aspect)).astype(np.int64)
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.argmax(1)
    found = ok.any(1)
    rows = np.arange(len(w))
    w, h = w[rows, first], h[rows, first]
    i = np.floor(u_offset[:, 0] * (height - h + 1)).astype(np.int64)
    j = np.floor(u_offset[:, 1] * (width - w + 1)).astype(np.int64)
    # fallback to the central crop
    in_ratio = width / height
    rmin, rmax = min(params.crop_ratio), max(params.crop_ratio)
    if in_ratio < rmin:
        fw, fh = width, int(round(width / rmin))
    elif in_ratio > rmax:
        fw, fh = int(round(height * rmax)), height
    else:
        fw, fh = width, height
    w, h = np.where(found, w, fw), np.where(found, h, fh)
    i = np.where(found, i, (height - fh) // 2)
    j = np.where(found, j, (width - fw) // 2)
    return np.stack([i, j, h, w], 1)


def _class_uniforms(class_of: np.ndarray, generator: torch.Generator, k: int) -> np.ndarray:
    return torch.rand((int(class_of[-1]) + 1, k), generator=generator, dtype=torch.float64).numpy()


def sample_params(class_of, in_size: tuple[int, int], generator: torch.Generator,
                  params: AugmentParams = AugmentParams()) -> AugmentDraws:
    """Draw a whole batch's parameters from ``generator`` (CPU): patches of ``in_size`` (h, w) before
    padding; ``class_of`` one entry per batch patch.

    Order of the draws: uniforms (n, 3) for the affine, (n, 10, 2) for the crop attempts, (n, 2) for
    the crop offsets, then (K, 2) for transpose/flip. A chain that does not resample draws only the
    last.
    """
    c = check_class_of(class_of)
    n = c.size
    if params.resamples:
        u_aff = torch.rand((n, 3), generator=generator, dtype=torch.float64).numpy()
        u_try = torch.rand((n, CROP_ATTEMPTS, 2), generator=generator, dtype=torch.float64).numpy()
        u_off = torch.rand((n, 2), generator=generator, dtype=torch.float64).numpy()
        angle, scale, shear = affine_params(u_aff, params)
        padded = (in_size[1] + 2 * params.pad, in_size[0] + 2 * params.pad)
        crop = resized_crop_params(u_try, u_off, padded, params)
    else:
        angle = shear = np.zeros(n)
        scale = np.ones(n)
        crop = np.tile(np.array([0, 0, in_size[0], in_size[1]], np.int64), (n, 1))
    flips = _class_uniforms(c, generator, 2) < 0.5
    if not params.flip_transpose:
        flips[:] = False
    return AugmentDraws(angle, scale, shear, crop, flips[:, 0], flips[:, 1], c)


# --- the resampling chain --------------------------------------------------------------------------

# Pillow's BICUBIC macro p1 + d (p2 + d (p3 + d p4)) with p1 = v2, p2 = v3 - v1, p3 = 2 (v1 - v2) + v3
# - v4, p4 = -v1 + v2 - v3 + v4 (the a = -1 cubic convolution), as a matrix on the taps (v1..v4)
_CUBIC = ((0.0, 1.0, 0.0, 0.0), (-1.0, 0.0, 1.0, 0.0), (2.0, -2.0, 1.0, -1.0), (-1.0, 1.0, -1.0, 1.0))
_LINEAR = ((1.0, 0.0), (-1.0, 1.0))  # BILINEAR: a + d (b - a)


class _Workspace:
    """Reused buffers: on the CPU, fresh multi-MB tensors for every block cost more in page faults
    than the arithmetic on them, so the chain's intermediates live here (views into flat buffers,
    grown as needed). Elsewhere the caching allocator does this; a fresh workspace is used. The CPU
    one is module-wide (~16 MB at ``CPU_BLOCK`` 16): ``augment`` is not meant for concurrent threads."""

    def __init__(self):
        self._flat: dict = {}

    def get(self, name: str, shape, dtype, device) -> torch.Tensor:
        n = math.prod(shape)
        buf = self._flat.get(name)
        if buf is None or buf.numel() < n or buf.dtype != dtype or buf.device != torch.device(device):
            buf = torch.empty(n, dtype=dtype, device=device)
            self._flat[name] = buf
        return buf[:n].view(shape)


_CPU_WORKSPACE = _Workspace()


def _workspace(device) -> _Workspace:
    return _CPU_WORKSPACE if torch.device(device).type == "cpu" else _Workspace()


def _pil_affine(x: torch.Tensor, m: torch.Tensor, pad: int, out_size: tuple[int, int],
                interpolation: str, ws: _Workspace | None = None) -> torch.Tensor:
    """PIL ``Image.transform(AFFINE, filter, fillcolor=0)`` of the ``pad``-edge-padded uint8 patches x
    (b, H, W): float32 (b, oh, ow) holding the uint8 values (a view into the workspace ``ws``: valid
    until its next use).

    ``m`` (b, 6) float64 on x's device: output pixel (x, y) of this grid samples the padded image at
    ``(m0 (x + .5) + m1 (y + .5) + m2, m3 (x + .5) + m4 (y + .5) + m5)``.
    """
    b, hh, ww = x.shape
    sy, sx = hh + 2 * pad, ww + 2 * pad  # the padded image
    oh, ow = out_size
    n_pix = b * oh * ow
    dev = x.device
    ws = _workspace(dev) if ws is None else ws
    f32 = torch.float32
    ntap = 4 if interpolation == "bicubic" else 2

    # taps are read from the patch edge-padded by pad + 2 (PIL clamps taps to the padded image,
    # which continues the patch's edge); table coordinate = padded coordinate + 2. Every run of
    # ntap pixels is one int32 (ntap 4) / int16 (ntap 2) "window"; zero windows follow (the fill)
    ty, tx = hh + 2 * pad + 4, ww + 2 * pad + 4
    n_pos = ty * tx
    n_win = b * n_pos + ntap * (tx + 1)
    flat = ws.get("flat", (n_win + ntap - 1,), torch.uint8, dev)
    flat[b * n_pos:].zero_()
    e, k = flat[:b * n_pos].view(b, ty, tx), pad + 2
    e[:, k:k + hh, k:k + ww] = x
    e[:, k:k + hh, :k] = x[:, :, :1]
    e[:, k:k + hh, k + ww:] = x[:, :, -1:]
    e[:, :k] = e[:, k:k + 1]
    e[:, k + hh:] = e[:, k + hh - 1:k + hh]
    windows = ws.get("windows", (n_win, ntap), torch.uint8, dev)
    windows.copy_(flat.unfold(0, ntap, 1))
    windows = windows.view(torch.int32 if ntap == 4 else torch.int16).view(n_win)

    # sample positions minus 0.5 (PIL: xin -= 0.5), i.e. in units where pixel k's centre is k. The
    # affine map is separable: position = column term + row term, each computed in float64 as PIL
    # does and split into an integer and a fraction; only the fractions' sum (in [0, 2)) is float32
    xc = torch.arange(ow, dtype=torch.float64, device=dev).add_(0.5)
    yc = torch.arange(oh, dtype=torch.float64, device=dev).add_(0.5)
    m = m.view(b, 6, 1)
    cells = []
    for axis, (col, row) in enumerate(((m[:, 0] * xc, m[:, 1] * yc + (m[:, 2] - 0.5)),
                                       (m[:, 3] * xc, m[:, 4] * yc + (m[:, 5] - 0.5)))):
        icol, irow = col.floor(), row.floor()
        frac = ws.get(f"frac{axis}", (b, oh, ow), f32, dev)
        torch.add((col - icol).to(f32).view(b, 1, ow), (row - irow).to(f32).view(b, oh, 1),
                  out=frac)
        cell = ws.get(f"cell{axis}", (b, oh, ow), f32, dev)
        torch.floor(frac, out=cell)
        frac.sub_(cell)  # the sample's fraction within its pixel cell
        cell.add_(icol.to(f32).view(b, 1, ow)).add_(irow.to(f32).view(b, oh, 1))  # floor(position)
        cells.append((cell, frac))
    (x0, dx), (y0, dy) = cells
    # PIL samples only positions in [0, size) (else: the fill)
    pos = ws.get("pos", (b, oh, ow), f32, dev)
    outside = ws.get("outside", (b, oh, ow), torch.bool, dev)
    test = ws.get("test", (b, oh, ow), torch.bool, dev)
    torch.add(x0, dx, out=pos)
    torch.lt(pos, -0.5, out=outside)
    outside.logical_or_(torch.ge(pos, sx - 0.5, out=test))
    torch.add(y0, dy, out=pos)
    outside.logical_or_(torch.lt(pos, -0.5, out=test)).logical_or_(torch.ge(pos, sy - 0.5, out=test))
    # window of each sample's first tap row (columns from x0 - 1 for bicubic, x0 for bilinear)
    first = 1 if ntap == 4 else 2
    y0.mul_(tx).add_(x0).add_(first * (tx + 1))  # exact (small integers)
    q = ws.get("q", (b, oh, ow), torch.int64, dev)
    q.copy_(y0).add_(torch.arange(b, device=dev).mul_(n_pos).view(b, 1, 1))
    q.masked_fill_(outside, b * n_pos)
    idx = ws.get("idx", (ntap, n_pix), torch.int64, dev)
    torch.add(q.view(1, n_pix), torch.arange(0, ntap * tx, tx, device=dev).view(ntap, 1), out=idx)
    packed = ws.get("packed", (ntap * n_pix,), windows.dtype, dev)
    torch.index_select(windows, 0, idx.view(-1), out=packed)  # (tap row, sample) windows
    taps = ws.get("taps", (ntap * n_pix, ntap), f32, dev)
    taps.copy_(packed.view(torch.uint8).view(ntap * n_pix, ntap))  # (tap row, sample; tap column)
    # per tap row the polynomial coefficients in dx: (ntap, ntap rows * samples); exact (small
    # integers), so neither the summation order nor TF32 matters
    coef = torch.tensor(_CUBIC if ntap == 4 else _LINEAR, device=dev)
    p = ws.get("poly", (ntap, ntap * n_pix), f32, dev)
    torch.matmul(coef, taps.t(), out=p)
    p = p.view(ntap, ntap, n_pix)
    dx, dy = dx.view(1, n_pix), dy.view(n_pix)
    rows = _horner(p, dx)  # rows[r] (in p[-1]): tap row r interpolated in x
    if ntap == 4:
        v1, v2, v3, v4 = rows
        a, c, p2, p3 = p[0]  # free buffers by now
        torch.sub(v1, v2, out=a)
        torch.sub(v3, v4, out=c)
        torch.sub(v3, v1, out=p2)
        torch.add(c, a, alpha=2, out=p3)  # 2 a is exact: one rounding either way
        p4 = a.add_(c).neg_()
        v = _horner([v2, p2, p3, p4], dy)
        v.clamp_(0.0, 255.0)
    else:
        v = rows[1].sub_(rows[0]).mul_(dy).add_(rows[0])
    return v.floor_().view(b, oh, ow)  # the (UINT8) cast of a value in [0, 255]


def _horner(p, d: torch.Tensor) -> torch.Tensor:
    """p[0] + d (p[1] + d (p[2] + ...)), in place in p[-1]; each product and sum rounded once (no
    fused multiply-add)."""
    v = p[-1].mul_(d)
    for k in range(len(p) - 2, 0, -1):
        v.add_(p[k]).mul_(d)
    return v.add_(p[0])


@functools.lru_cache(maxsize=None)
def pil_bilinear_coefficients(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's fixed-point BILINEAR resize coefficients for the whole input (facts of ``Resample.c``
    ``precompute_coeffs`` and ``normalize_coeffs_8bpc``): int64 (out_size, in_size).

    Output pixel o is centred at (o + 0.5) * in/out of the input; the triangle filter is stretched by
    max(in/out, 1); the taps are input pixels from int(centre - support + 0.5) to int(centre +
    support + 0.5) (exclusive, clipped to the image), weighted at their centres, normalised by their
    sum (accumulated in order) and rounded half away from zero to multiples of 2^-22.
    """
    step = in_size / out_size
    stretch = max(step, 1.0)
    inv_stretch = 1.0 / stretch
    table = np.zeros((out_size, in_size), np.int64)
    for o in range(out_size):
        mid = (o + 0.5) * step
        lo = max(int(mid - stretch + 0.5), 0)
        hi = min(int(mid + stretch + 0.5), in_size)
        weights = [max(0.0, 1.0 - abs((t - mid + 0.5) * inv_stretch)) for t in range(lo, hi)]
        total = 0.0
        for wt in weights:
            total += wt
        if total != 0.0:
            weights = [wt / total for wt in weights]
        table[o, lo:hi] = [int(wt * (1 << _FIX) + (0.5 if wt >= 0 else -0.5)) for wt in weights]
    return table


_BANKS: dict = {}


def _coefficient_bank(size: int, out: int, device) -> torch.Tensor:
    """float64 (size + 1, out, size): row n holds ``pil_bilinear_coefficients(n, out)`` in its first
    n columns (zeros elsewhere), on ``device`` (cached)."""
    key = (size, out, str(device))
    if key not in _BANKS:
        bank = np.zeros((size + 1, out, size))
        for n in range(1, size + 1):
            bank[n, :, :n] = pil_bilinear_coefficients(n, out)
        _BANKS[key] = torch.from_numpy(bank).to(device)
    return _BANKS[key]


def _pil_round(s: torch.Tensor) -> torch.Tensor:
    """Pillow's 8-bit fixed point output: clip8((sum + 2^21) >> 22)."""
    return s.add_(1 << (_FIX - 1)).mul_(2.0 ** -_FIX).floor_().clamp_(0.0, 255.0)


def _pil_resize(a: torch.Tensor, hw: torch.Tensor, side: int,
                ws: _Workspace | None = None) -> torch.Tensor:
    """PIL BILINEAR resize of the top-left (h, w) box of each float (b, S, S) image holding uint8
    values to (side, side), exactly: float64 (b, side, side) uint8 values (in the workspace ``ws``).
    ``hw`` (b, 2) int64.

    The horizontal then the vertical pass, each an integer matrix product (exact in float64) rounded
    as Pillow's 8-bit fixed point."""
    b, s = a.shape[0], a.shape[-1]
    dev = a.device
    ws = _workspace(dev) if ws is None else ws
    f64 = torch.float64
    bank = _coefficient_bank(s, side, dev)
    wx = torch.index_select(bank, 0, hw[:, 1], out=ws.get("wx", (b, side, s), f64, dev))
    wy = torch.index_select(bank, 0, hw[:, 0], out=ws.get("wy", (b, side, s), f64, dev))
    a64 = ws.get("a64", a.shape, f64, dev)
    a64.copy_(a)
    horizontal = ws.get("horizontal", (b, s, side), f64, dev)
    _pil_round(torch.bmm(a64, wx.transpose(1, 2), out=horizontal))
    return _pil_round(torch.bmm(wy, horizontal, out=ws.get("resized", (b, side, side), f64, dev)))


def _flip(x: torch.Tensor, transpose: torch.Tensor, hflip: torch.Tensor) -> torch.Tensor:
    """Transpose the last two axes where ``transpose``, then reverse the columns where ``hflip``."""
    x = torch.where(transpose.view(-1, *([1] * (x.dim() - 1))), x.transpose(-1, -2), x)
    return torch.where(hflip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


def apply_draws(patches: torch.Tensor, draws: AugmentDraws, params: AugmentParams = AugmentParams(),
                side: int = PATCH_SIDE) -> torch.Tensor:
    """The deterministic part of ``augment``: uint8 (n, H, W) patches and their ``draws`` (n rows,
    e.g. ``sample_params(...).rows(select)``) -> float (n, 1, side, side) in [0, 1]."""
    n = patches.shape[0]
    if len(draws.crop) != n:
        raise ValueError(f"{n} patches but draws for {len(draws.crop)}")
    device = patches.device
    per_class = torch.from_numpy(draws.class_of).to(device)
    transpose = torch.from_numpy(draws.transpose).to(device)[per_class]
    hflip = torch.from_numpy(draws.hflip).to(device)[per_class]
    if not params.resamples:  # flips/transposes only: exactly the evaluation input, moved
        return _flip(eval_patches(patches, side, params.resize), transpose, hflip)
    hh, ww = patches.shape[-2:]
    sy, sx = hh + 2 * params.pad, ww + 2 * params.pad
    if sx != sy:
        raise ValueError(f"augment resamples square patches; got {hh}x{ww}")
    m = inverse_affine_matrix(draws.angle, draws.scale, draws.shear, (sx, sy))
    # the affine output is computed on a grid that starts at the crop's corner (i, j): the crop box
    # is then the grid's top-left (h, w) corner
    i, j = draws.crop[:, 0].astype(np.float64), draws.crop[:, 1].astype(np.float64)
    m[:, 2] += m[:, 0] * j + m[:, 1] * i
    m[:, 5] += m[:, 3] * j + m[:, 4] * i
    m = torch.from_numpy(m).to(device)
    hw = torch.from_numpy(np.ascontiguousarray(draws.crop[:, 2:])).to(device)
    out = torch.empty((n, 1, side, side), dtype=torch.float32, device=device)
    block = CPU_BLOCK if device.type == "cpu" else DEVICE_BLOCK
    ws = _workspace(device)
    for start in range(0, n, block):
        rows = slice(start, min(start + block, n))
        a = _pil_affine(patches[rows], m[rows], params.pad, (sy, sx), params.interpolation, ws)
        resized = _pil_resize(a, hw[rows], side, ws).to(torch.float32).div_(255.0)
        out[rows, 0] = _flip(resized, transpose[rows], hflip[rows])
    return out


def augment(patches: torch.Tensor, class_of, generator: torch.Generator,
            params: AugmentParams = AugmentParams(), side: int = PATCH_SIDE,
            n_total: int | None = None, select: slice | None = None) -> torch.Tensor:
    """Augment a class-contiguous uint8 batch (n, H, W) on its device -> float (n, 1, side, side) in
    [0, 1] (the reference chain of the module docstring, or only the class-wise flips of the plain
    resize when ``params`` does not resample).

    ``class_of``: each batch patch's class position (numpy or CPU tensor, length = the whole batch);
    ``generator``: a CPU ``torch.Generator``, the only source of randomness. Distributed: ``patches`` = batch[``select``]; the parameters are drawn for the whole batch and the
    share's rows are used. ``n_total``, if given, must be ``len(class_of)``.
    """
    c = check_class_of(class_of, n_total)
    rows = slice(None) if select is None else select
    if len(c[rows]) != patches.shape[0]:
        raise ValueError(f"{patches.shape[0]} patches, but class_of[select] has {len(c[rows])} "
                         f"entries")
    draws = sample_params(c, tuple(patches.shape[-2:]), generator, params)
    return apply_draws(patches, draws.rows(rows), params, side)


# --- class-wise orientation augmentations on network inputs ----------------------------------------

def _class_rows(x: torch.Tensor, class_of: np.ndarray, select, draws: np.ndarray) -> torch.Tensor:
    """The per-class ``draws`` of x's patches (batch rows ``select``), on x's device."""
    per = class_of[slice(None) if select is None else select]
    if len(per) != x.shape[0]:
        raise ValueError(f"{x.shape[0]} patches, but class_of[select] has {len(per)} entries")
    return torch.from_numpy(np.ascontiguousarray(draws[per])).to(x.device)


def flip_transpose(x: torch.Tensor, class_of, generator: torch.Generator,
                   select: slice | None = None) -> torch.Tensor:
    """Self-TNet's fliprot = HardNet+'s ``--fliprot`` on (n, ..., s, s) network inputs: per class,
    transpose the patch with p 0.5, then reverse its columns with p 0.5, all its patches alike.

    Draws (K, 2) uniforms from ``generator`` (the same as ``augment`` with ``FLIP_ONLY``, so
    ``augment(p, c, g, FLIP_ONLY)`` = ``flip_transpose(eval_patches(p), c, g)``).
    """
    c = check_class_of(class_of)
    t = _class_rows(x, c, select, _class_uniforms(c, generator, 2) < 0.5)
    return _flip(x, t[:, 0], t[:, 1])


def hynet_orientation(x: torch.Tensor, class_of, generator: torch.Generator,
                      select: slice | None = None) -> torch.Tensor:
    """HyNet/SOSNet ``data_aug`` (HyNet ``utils.py:368-391``) on (n, ..., s, s) network inputs: per
    class, with p 0.5 ``np.rot90`` by k uniform in {1, 2, 3}, then with p 0.5 ``np.flipud``, all its
    patches alike. Orientations: identity 1/4, flipud 1/4, each of the other six 1/12.

    Draws (K, 3) uniforms from ``generator``: rotate if u0 > 0.5, k = 1 + floor(3 u1), flip if
    u2 > 0.5 (``random.random() > 0.5``, ``np.random.randint(1, 4)``, ``random.random() > 0.5``).
    """
    c = check_class_of(class_of)
    u = _class_uniforms(c, generator, 3)
    kk = _class_rows(x, c, select, np.where(u[:, 0] > 0.5, 1 + np.floor(3 * u[:, 1]).astype(np.int64),
                                            0))
    flip = _class_rows(x, c, select, u[:, 2] > 0.5)
    out = x.clone()
    for turns in (1, 2, 3):
        rows = (kk == turns).nonzero().view(-1)
        if len(rows):
            out[rows] = torch.rot90(x[rows], turns, dims=(-2, -1))
    return torch.where(flip.view(-1, *([1] * (x.dim() - 1))), out.flip(-2), out)
