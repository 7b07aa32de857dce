"""Batched augmentations against per-patch references.

The balanced chain is compared with the same chain run per patch by PIL, its random parameters with a
transcription of torchvision 0.5's parameter code; the cv2 resize with OpenCV; HyNet's orientation
augmentation with the numpy operations of its ``data_aug``. Also: class-wise draws with ragged
classes, distributed shares, CPU blocks and thread counts do not change results.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from descbench.train import augment as aug

# the PIL chain's output may differ from the batched one by one grey level where a value of the
# affine stage lies within float32 rounding of an integer (PIL truncates doubles): measured ~1e-5 of
# the output pixels; allowed here: 1 level in at most 1e-3 of them
MAX_LEVELS = 1
MAX_DIFFERING = 1e-3


def _textured(n: int, seed: int) -> torch.Tensor:
    """uint8 (n, 64, 64): smooth texture, some saturated (0 / 255) and some flat areas."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 64, 64, generator=g)
    x = torch.nn.functional.avg_pool2d(x, 5, 1, 2, count_include_pad=False)
    x = (x - x.mean()) * 6 + 0.5  # clipped below: saturated regions
    x[: n // 4, :, 20:44, 10:40] = 0.3  # flat regions
    return (x[:, 0].clamp(0, 1) * 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def batch():
    return _textured(48, 0)


def _classes(sizes) -> np.ndarray:
    return np.repeat(np.arange(len(sizes)), sizes)


# --- references ------------------------------------------------------------------------------------

def _tv05_matrix(angle: float, scale: float, shear: float, size) -> list[float]:
    """The PIL coefficients torchvision 0.5's F.affine uses (facts of functional.py:732-785 and 814:
    M = C RSS^-1 C^-1 about the centre (w/2 + 1/2, h/2 + 1/2), RSS = rotation(angle) x x-shear(shear),
    scaled; y-shear 0, no translation; the same order of floating-point operations), one patch."""
    centre_x, centre_y = size[0] * 0.5 + 0.5, size[1] * 0.5 + 0.5
    t, sh = math.radians(angle), math.radians(shear)
    # forward 2x2 part [[p, q], [r, s]] (determinant 1 before scaling); PIL wants its inverse
    p, q = math.cos(t), -math.cos(t) * math.tan(sh) - math.sin(t)
    r, s = math.sin(t), -math.sin(t) * math.tan(sh) + math.cos(t)
    m00, m01, m10, m11 = s / scale, -q / scale, -r / scale, p / scale
    return [m00, m01, (m00 * -centre_x + m01 * -centre_y) + centre_x,
            m10, m11, (m10 * -centre_x + m11 * -centre_y) + centre_y]


def _tv05_crop(uniforms, offsets, width: int, height: int, scale, ratio):
    """RandomResizedCrop.get_params of torchvision 0.5 (facts of transforms.py:635-676), one image,
    with its uniform draws given: ten tries of (area fraction, log aspect ratio), sides rounded half
    to even, the first that fits wins, offsets randint(0, room) = floor(u * (room + 1)); else the
    central crop of the clamped aspect ratio."""
    for u_area, u_ratio in uniforms[:10]:
        area = (scale[0] + (scale[1] - scale[0]) * u_area) * width * height
        aspect = math.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u_ratio)
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= width and 0 < ch <= height:
            return (math.floor(offsets[0] * (height - ch + 1)),
                    math.floor(offsets[1] * (width - cw + 1)), ch, cw)
    if width / height < min(ratio):
        cw, ch = width, round(width / min(ratio))
    elif width / height > max(ratio):
        cw, ch = round(height * max(ratio)), height
    else:
        cw, ch = width, height
    return (height - ch) // 2, (width - cw) // 2, ch, cw


def _pil_chain(patch: np.ndarray, angle, scale, shear, crop, transpose, hflip,
               p: aug.AugmentParams) -> np.ndarray:
    """Self-TNet's trans_resize32_affine + fliprot on one patch, with PIL (learning.py:145-151,
    datasets.py:207-214)."""
    img = Image.fromarray(np.pad(patch, p.pad, mode="edge"))  # Pad(3, edge)
    resample = Image.BICUBIC if p.interpolation == "bicubic" else Image.BILINEAR
    img = img.transform(img.size, Image.AFFINE, _tv05_matrix(angle, scale, shear, img.size),
                        resample, fillcolor=0)
    i, j, h, w = (int(v) for v in crop)
    img = img.crop((j, i, j + w, i + h)).resize((32, 32), Image.BILINEAR)
    out = np.asarray(img, np.float32) / 255
    if transpose:
        out = out.T
    if hflip:
        out = out[:, ::-1]
    return out


def _reference(patches: torch.Tensor, draws: aug.AugmentDraws, p: aug.AugmentParams) -> np.ndarray:
    c = draws.class_of
    return np.stack([_pil_chain(patches[k].numpy(), draws.angle[k], draws.scale[k], draws.shear[k],
                                draws.crop[k], draws.transpose[c[k]], draws.hflip[c[k]], p)
                     for k in range(len(patches))])[:, None]


def _levels(a, b) -> np.ndarray:
    return np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)) * 255


def _dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    """identity, transpose, horizontal flip, transpose then flip (the four flip/transpose outcomes)."""
    t = x.transpose(-1, -2)
    return [x, t, x.flip(-1), t.flip(-1)]


# --- the balanced chain ----------------------------------------------------------------------------

@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_the_chain_equals_the_per_patch_pil_chain(batch, interpolation):
    p = aug.AugmentParams(interpolation=interpolation)
    class_of = _classes([2, 3, 1, 4] * 4 + [2] * 4)
    draws = aug.sample_params(class_of, (64, 64), torch.Generator().manual_seed(1), p)
    ours = aug.apply_draws(batch, draws, p)
    assert ours.shape == (48, 1, 32, 32) and ours.dtype == torch.float32
    diff = _levels(ours, _reference(batch, draws, p))
    assert diff.max() <= MAX_LEVELS + 1e-3, diff.max()
    assert (diff > 0.5).mean() <= MAX_DIFFERING, (diff > 0.5).mean()
    # augment = sample_params + apply_draws
    again = aug.augment(batch, class_of, torch.Generator().manual_seed(1), p)
    torch.testing.assert_close(again, ours, atol=0, rtol=0)


def test_flat_saturated_and_fill_regions_are_exact():
    """Constant patches stay exactly constant (no rounding below an integer before PIL's truncation),
    and samples beyond the padding are the fill 0, as PIL's."""
    patches = torch.stack([torch.full((64, 64), v, dtype=torch.uint8) for v in (0, 1, 128, 254, 255)])
    p = aug.AugmentParams(degrees=20.0, scale=(0.8, 0.8))  # zoom out: corners reach the fill
    for interpolation in ("bicubic", "bilinear"):
        q = dataclasses.replace(p, interpolation=interpolation)
        draws = aug.sample_params(np.arange(5), (64, 64), torch.Generator().manual_seed(0), q)
        ours = aug.apply_draws(patches, draws, q)
        ref = _reference(patches, draws, q)
        np.testing.assert_array_equal(ours.numpy(), ref)
        assert float(ours[4].min()) < 1.0  # the fill shows


def test_parameters_follow_torchvision_05():
    p = aug.AugmentParams()
    u = torch.rand((2000, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64).numpy()
    angle, scale, shear = aug.affine_params(u, p)
    np.testing.assert_allclose(angle, -5 + 10 * u[:, 0])  # random.uniform(-5, 5)
    np.testing.assert_allclose(scale, 1.0 + 0.14 * u[:, 1])
    np.testing.assert_allclose(shear, -5 + 10 * u[:, 2])  # shear=5 -> (-5, 5), x only
    m = aug.inverse_affine_matrix(angle[:50], scale[:50], shear[:50], (70, 70))
    ref = np.array([_tv05_matrix(a, s, h, (70, 70)) for a, s, h in zip(angle, scale, shear)][:50])
    np.testing.assert_array_equal(m, ref)  # the same doubles as torchvision computes

    u_try = torch.rand((3000, 10, 2), generator=torch.Generator().manual_seed(1),
                       dtype=torch.float64).numpy()
    u_off = torch.rand((3000, 2), generator=torch.Generator().manual_seed(2),
                       dtype=torch.float64).numpy()
    for q in (p, dataclasses.replace(p, crop_scale=(0.99, 1.0), crop_ratio=(1.2, 1.3)),
              dataclasses.replace(p, crop_scale=(0.99, 1.0), crop_ratio=(0.7, 0.8)),
              dataclasses.replace(p, crop_scale=(0.5, 1.0), crop_ratio=(0.5, 2.0))):
        crops = aug.resized_crop_params(u_try, u_off, (70, 70), q)
        ref = np.array([_tv05_crop(a, o, 70, 70, q.crop_scale, q.crop_ratio)
                        for a, o in zip(u_try, u_off)])
        np.testing.assert_array_equal(crops, ref)
        assert crops.dtype == np.int64
    # the fallback: no attempt fits (area ~ 4900, ratio >= 1.2 -> w > 70): the central crop
    crops = aug.resized_crop_params(u_try, u_off, (70, 70),
                                    dataclasses.replace(p, crop_scale=(0.99, 1.0),
                                                        crop_ratio=(1.2, 1.3)))
    np.testing.assert_array_equal(crops, np.tile([6, 0, 58, 70], (3000, 1)))


def test_parameter_distributions():
    p = aug.AugmentParams()
    draws = aug.sample_params(np.repeat(np.arange(10_000), 2), (64, 64),
                              torch.Generator().manual_seed(3), p)
    for values, lo, hi in ((draws.angle, -5, 5), (draws.scale, 1.0, 1.14), (draws.shear, -5, 5)):
        assert values.min() >= lo and values.max() <= hi
        # uniform: mean and standard deviation (20,000 draws: 5 sigma margins)
        assert abs(values.mean() - (lo + hi) / 2) < 5 * (hi - lo) / math.sqrt(12 * 20_000)
        assert abs(values.std() - (hi - lo) / math.sqrt(12)) < 0.02 * (hi - lo)
    i, j, h, w = draws.crop.T
    assert np.all((h > 0) & (h <= 70) & (w > 0) & (w <= 70))
    assert np.all((i >= 0) & (i <= 70 - h) & (j >= 0) & (j <= 70 - w))
    area = h * w / 70 ** 2
    assert area.min() > 0.87 and area.max() <= 1.0 and 0.92 < area.mean() < 0.96
    assert set(np.unique(w)) >= set(range(64, 71))  # integer sizes, the whole range
    # offsets are uniform integers: both ends occur
    assert np.any(i == 0) and np.any(i == 70 - h) and np.any(j == 0) and np.any(j == 70 - w)
    # class-wise flips: one draw per class, half of them each
    assert len(draws.transpose) == 10_000
    assert abs(draws.transpose.mean() - 0.5) < 0.03 and abs(draws.hflip.mean() - 0.5) < 0.03


def test_ragged_classes_share_their_flips(batch):
    sizes = [2, 3, 1, 2, 4, 1, 3, 2, 2, 3, 1, 4, 2, 3, 2, 3, 2, 4, 2, 2]  # 48 patches, 20 classes
    class_of = _classes(sizes)
    out = aug.augment(batch, class_of, torch.Generator().manual_seed(3), aug.FLIP_ONLY)
    ref = aug.eval_patches(batch)
    chosen = []
    for k in range(48):
        errors = [float((out[k] - cand).abs().max()) for cand in _dihedral(ref[k])]
        assert min(errors) == 0.0, errors  # exactly one of the four, no other resampling
        chosen.append(int(np.argmin(errors)))
    chosen = np.array(chosen)
    for c in range(len(sizes)):
        assert len(set(chosen[class_of == c])) == 1
    assert len(set(chosen)) > 1


def test_flip_only_is_the_flipped_evaluation_input(batch):
    class_of = _classes([3] * 16)
    out = aug.augment(batch, class_of, torch.Generator().manual_seed(4), aug.FLIP_ONLY)
    ref = aug.flip_transpose(aug.eval_patches(batch), class_of, torch.Generator().manual_seed(4))
    torch.testing.assert_close(out, ref, atol=0, rtol=0)
    # HardNet+ (cv2 resize, then the same per-pair transpose / column flip)
    out = aug.augment(batch, class_of, torch.Generator().manual_seed(4), aug.HARDNET_FLIPROT)
    ref = aug.flip_transpose(aug.eval_patches(batch, resize="cv2"), class_of,
                             torch.Generator().manual_seed(4))
    torch.testing.assert_close(out, ref, atol=0, rtol=0)
    still = dataclasses.replace(aug.FLIP_ONLY, flip_transpose=False)
    assert not still.resamples and aug.AugmentParams().resamples
    torch.testing.assert_close(aug.augment(batch, class_of, torch.Generator(), still),
                               aug.eval_patches(batch), atol=0, rtol=0)


def test_flip_transpose_is_transpose_then_column_flip():
    """Self-TNet datasets.py:207-214 / HardNet.py:262-273: permute(0, 2, 1), then [:, :, ::-1]."""
    x = torch.arange(2 * 3 * 16, dtype=torch.float32).view(6, 1, 4, 4)
    class_of = np.array([0, 0, 1, 1, 2, 2])
    u = torch.rand((3, 2), generator=torch.Generator().manual_seed(9), dtype=torch.float64).numpy()
    out = aug.flip_transpose(x, class_of, torch.Generator().manual_seed(9))
    for k in range(6):
        ref = x[k].numpy()
        if u[class_of[k], 0] < 0.5:
            ref = ref.transpose(0, 2, 1)
        if u[class_of[k], 1] < 0.5:
            ref = ref[:, :, ::-1]
        np.testing.assert_array_equal(out[k].numpy(), ref)


def test_deterministic_and_drawn_only_from_the_generator(batch):
    class_of = _classes([2] * 24)
    torch.manual_seed(0)
    out = aug.augment(batch, class_of, torch.Generator().manual_seed(1))
    torch.manual_seed(1)  # the global RNG plays no part
    torch.testing.assert_close(aug.augment(batch, class_of, torch.Generator().manual_seed(1)), out,
                               atol=0, rtol=0)
    assert not torch.equal(aug.augment(batch, class_of, torch.Generator().manual_seed(2)), out)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_a_process_share_equals_its_rows_of_the_whole_batch(batch):
    class_of = _classes([2, 3, 1] * 8)
    whole = aug.augment(batch, class_of, torch.Generator().manual_seed(7))
    share = aug.augment(batch[6:18], class_of, torch.Generator().manual_seed(7), n_total=48,
                        select=slice(6, 18))
    torch.testing.assert_close(share, whole[6:18], atol=0, rtol=0)
    for fn in (aug.flip_transpose, aug.hynet_orientation):
        x = aug.eval_patches(batch)
        whole = fn(x, class_of, torch.Generator().manual_seed(8))
        share = fn(x[6:18], class_of, torch.Generator().manual_seed(8), select=slice(6, 18))
        torch.testing.assert_close(share, whole[6:18], atol=0, rtol=0)
    with pytest.raises(ValueError):
        aug.augment(batch[6:18], class_of, torch.Generator(), n_total=47, select=slice(6, 18))
    with pytest.raises(ValueError):
        aug.augment(batch[6:17], class_of, torch.Generator(), select=slice(6, 18))


def test_cpu_blocks_and_threads_do_not_change_the_result(batch, monkeypatch):
    class_of = _classes([4] * 12)
    whole = aug.augment(batch, class_of, torch.Generator().manual_seed(6))
    monkeypatch.setattr(aug, "CPU_BLOCK", 5)  # blocks cut through classes, last one partial
    torch.testing.assert_close(aug.augment(batch, class_of, torch.Generator().manual_seed(6)), whole,
                               atol=0, rtol=0)
    threads = torch.get_num_threads()
    try:
        for n in {1, 2, threads}:
            torch.set_num_threads(n)
            torch.testing.assert_close(aug.augment(batch, class_of, torch.Generator().manual_seed(6)),
                                       whole, atol=0, rtol=0)
    finally:
        torch.set_num_threads(threads)


def test_class_of_is_checked(batch):
    for bad in ([1, 1, 2], [0, 2, 2], [0, 1, 0], [], 3):
        with pytest.raises(ValueError):
            aug.check_class_of(np.array(bad, np.int64))
    with pytest.raises(ValueError):
        aug.augment(batch, _classes([2] * 23), torch.Generator())  # 46 entries for 48 patches
    with pytest.raises(ValueError):
        aug.AugmentParams(interpolation="bicubic-torch")


# --- evaluation input and the other methods' augmentations -----------------------------------------

def test_eval_resize_matches_pil_bilinear(batch):
    ours = aug.eval_patches(batch)[:, 0].numpy() * 255
    pil = np.stack([np.asarray(Image.fromarray(p).resize((32, 32), Image.BILINEAR), np.float32)
                    for p in batch.numpy()])
    assert np.abs(ours - pil).max() <= 1.0  # PIL rounds to uint8


def test_cv2_resize_is_bit_exact():
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (200, 64, 64), dtype=np.uint8)
    ref = np.stack([cv2.resize(p, (32, 32)) for p in patches])
    ours = aug.cv2_linear_resize(torch.from_numpy(patches))
    assert ours.dtype == torch.uint8
    np.testing.assert_array_equal(ours.numpy(), ref)
    np.testing.assert_array_equal(aug.cv2_linear_resize(torch.from_numpy(ref)).numpy(), ref)  # 1:1
    ev = aug.eval_patches(torch.from_numpy(patches), resize="cv2")
    assert ev.shape == (200, 1, 32, 32)
    np.testing.assert_array_equal(ev[:, 0].numpy(), ref.astype(np.float32) / 255)
    for bad in ((64, 48), (63, 32)):
        with pytest.raises(ValueError):
            aug.cv2_linear_resize(torch.zeros((1, bad[0], bad[0]), dtype=torch.uint8), bad[1])
    with pytest.raises(ValueError):
        aug.eval_patches(torch.from_numpy(patches), resize="area")


def _hynet_numpy(patch: np.ndarray, rotate: bool, k: int, flip: bool) -> np.ndarray:
    """HyNet utils.py:368-391 on one (s, s) patch, given its pair's draws."""
    out = patch.copy()
    if rotate:
        out[:] = np.rot90(out, k)
    if flip:
        out[:] = np.flipud(out)
    return out


def test_hynet_orientation_applies_data_aug_per_class(batch):
    x = aug.eval_patches(batch)
    class_of = _classes([2] * 24)
    u = torch.rand((24, 3), generator=torch.Generator().manual_seed(5), dtype=torch.float64).numpy()
    out = aug.hynet_orientation(x, class_of, torch.Generator().manual_seed(5))
    assert out.shape == x.shape and out.dtype == x.dtype
    for n in range(48):
        c = class_of[n]
        ref = _hynet_numpy(x[n, 0].numpy(), u[c, 0] > 0.5, 1 + int(3 * u[c, 1]), u[c, 2] > 0.5)
        np.testing.assert_array_equal(out[n, 0].numpy(), ref)


def test_hynet_orientation_frequencies():
    n = 24_000
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4).repeat(n, 1, 1, 1)
    out = aug.hynet_orientation(x, np.arange(n), torch.Generator().manual_seed(11))[:, 0].numpy()
    base = x[0, 0].numpy()
    cands = [_hynet_numpy(base, k > 0, k, f) for f in (False, True) for k in range(4)]
    which = np.array([[np.array_equal(o, c) for c in cands] for o in out])
    assert np.all(which.sum(1) == 1)  # all 8 orientations are distinct
    freq = which.mean(0)  # (k=0..3 unflipped, k=0..3 flipped)
    expected = np.array([1 / 4, 1 / 12, 1 / 12, 1 / 12, 1 / 4, 1 / 12, 1 / 12, 1 / 12])
    sigma = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(freq - expected) < 5 * sigma), (freq, expected)
