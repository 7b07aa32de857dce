"""Batched augmentation: shapes, determinism, class-wise flip/transpose, parameter ranges, blocking on
the CPU; the evaluation resize matches PIL's bilinear Resize."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from descbench.train import augment as aug


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    smooth = torch.rand(24, 1, 64, 64, generator=g)
    for _ in range(2):  # texture a few pixels wide, like a real patch resized to 32
        smooth = torch.nn.functional.avg_pool2d(smooth, 9, 1, 4, count_include_pad=False)
    smooth = (smooth - smooth.amin((2, 3), keepdim=True)) / (smooth.amax((2, 3), keepdim=True) - smooth.amin((2, 3), keepdim=True))
    return (smooth[:, 0] * 255).to(torch.uint8)  # 8 classes x 3 patches


def _area_halved(x: torch.Tensor) -> torch.Tensor:
    """What the chain resamples: the 2x2 block means, in [0, 1]."""
    return torch.nn.functional.avg_pool2d(x.unsqueeze(1).double(), 2).float() / 255


def _dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    """identity, transpose, horizontal flip, transpose then flip (the four flip/transpose outcomes)."""
    t = x.transpose(-1, -2)
    return [x, t, x.flip(-1), t.flip(-1)]


def test_shapes_range_and_determinism(batch):
    out = aug.augment(batch, 3, torch.Generator().manual_seed(1))
    assert out.shape == (24, 1, 32, 32) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    again = aug.augment(batch, 3, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    other = aug.augment(batch, 3, torch.Generator().manual_seed(2))
    assert not torch.equal(out, other)
    # content survives the small affine + crop: each output correlates best with its own patch (in
    # the flip/transpose its class drew)
    def unit(x):
        x = x.flatten(1) - x.flatten(1).mean(1, keepdim=True)
        return x / x.norm(dim=1, keepdim=True)

    cands = torch.stack([unit(c) for c in _dihedral(aug.eval_patches(batch))])  # (4, 24, 1024)
    corr = torch.einsum("ip,kjp->ijk", unit(out), cands).amax(dim=2)  # best flip per (out, ref)
    np.testing.assert_array_equal(corr.argmax(dim=1).numpy(), np.arange(24))
    assert float(corr.diagonal().min()) > 0.5


def test_flip_and_transpose_are_identical_for_all_patches_of_a_class(batch):
    out = aug.augment(batch, 3, torch.Generator().manual_seed(3), aug.FLIP_ONLY)
    ref = aug.eval_patches(batch)
    chosen = []
    for i in range(24):
        errors = [float((out[i] - cand).abs().max()) for cand in _dihedral(ref[i])]
        assert min(errors) < 1e-5, errors  # exactly one of the four, no other resampling
        chosen.append(int(np.argmin(errors)))
    per_class = np.array(chosen).reshape(8, 3)
    assert np.all(per_class == per_class[:, :1])
    many = aug.augment(batch.repeat(8, 1, 1), 3, torch.Generator().manual_seed(4), aug.FLIP_ONLY)
    outcomes = set()
    for k in range(64):
        i = 3 * k
        errors = [float((many[i] - cand).abs().max()) for cand in _dihedral(ref[i % 24])]
        outcomes.add(int(np.argmin(errors)))
    assert outcomes == {0, 1, 2, 3}


def test_without_randomness_the_chain_is_the_plain_resize(batch):
    still = dataclasses.replace(aug.FLIP_ONLY, flip_transpose=False)
    assert not still.resamples and aug.AugmentParams().resamples
    out = aug.augment(batch, 3, torch.Generator().manual_seed(0), still)
    torch.testing.assert_close(out, aug.eval_patches(batch), atol=1e-5, rtol=0)


def test_the_resampling_chain_starts_from_the_area_halving_close_to_the_plain_resize(batch):
    halved = aug._area_halve(batch) / (4 * 255)
    torch.testing.assert_close(halved, _area_halved(batch)[:, 0], atol=1e-6, rtol=0)
    # the training input does not look different from the evaluation one (PIL bilinear)
    assert float((halved - aug.eval_patches(batch)[:, 0]).abs().mean()) < 2 / 255


def test_cpu_blocks_do_not_change_the_result(batch, monkeypatch):
    whole = aug.augment(batch, 3, torch.Generator().manual_seed(6))
    monkeypatch.setattr(aug, "CPU_BLOCK", 5)  # blocks cut through classes, last one partial
    torch.testing.assert_close(aug.augment(batch, 3, torch.Generator().manual_seed(6)), whole,
                               atol=0, rtol=0)


def test_a_process_share_equals_its_rows_of_the_whole_batch(batch):
    whole = aug.augment(batch, 3, torch.Generator().manual_seed(7))
    share = aug.augment(batch[6:12], 3, torch.Generator().manual_seed(7), n_total=24,
                        select=slice(6, 12))
    torch.testing.assert_close(share, whole[6:12], atol=0, rtol=0)


def test_sampled_geometry_stays_in_the_reference_ranges():
    p = aug.AugmentParams()
    theta = aug.sample_matrices(500, 2, 64, torch.Generator().manual_seed(5), p).double()
    det = torch.linalg.det(theta[:, :, :2]).abs()
    padded, half = 64 + 2 * p.pad, 32
    # |det| = crop area / 4 / scale^2 / half^2 (rotation and shear preserve area)
    lo = p.crop_scale[0] * padded ** 2 / 4 / p.scale[1] ** 2 / half ** 2
    hi = p.crop_scale[1] * padded ** 2 / 4 / p.scale[0] ** 2 / half ** 2
    assert float(det.min()) >= lo * 0.999 and float(det.max()) <= hi * 1.001
    assert float(det.min()) < lo * 1.1 and float(det.max()) > hi * 0.9  # the ranges are used
    # the crop box stays inside the padded patch: its centre moves at most (padded - smallest side) / 2
    # (the inverse affine only shrinks it: scale >= 1, rotation keeps lengths, shear <= 5 degrees)
    smallest = (p.crop_scale[0] * padded ** 2 / p.crop_ratio[1]) ** 0.5
    bound = (padded - smallest) / 2 / half * 2 ** 0.5
    assert float(theta[:, :, 2].norm(dim=1).max()) <= bound * 1.01


def test_eval_resize_matches_pil_bilinear(batch):
    ours = aug.eval_patches(batch)[:, 0].numpy() * 255
    pil = np.stack([np.asarray(Image.fromarray(p).resize((32, 32), Image.BILINEAR), np.float32)
                    for p in batch.numpy()])
    assert np.abs(ours - pil).max() <= 1.0  # PIL rounds to uint8
