"""Samplers: K distinct classes x P patches per batch (or Self-TNet's ragged classes), a pure function of
(seed, epoch, step); the validation slice is disjoint from training (or, on request, a fixed slice of
it) and its pairs are labelled correctly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from descbench.errors import DescbenchError
from descbench.train.mining import class_blocks
from descbench.train.sampler import (
    BatchSampler,
    ClassIndex,
    RaggedBatchSampler,
    class_of,
    split_validation,
)


@pytest.fixture
def labels():
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 7, size=300)  # includes single-patch classes
    labels = np.repeat(rng.permutation(10_000)[:300], counts)
    return rng.permutation(labels)  # patches of a class are not contiguous


def test_batches_have_distinct_classes_and_are_class_major(labels):
    index = ClassIndex.from_labels(labels)
    split = split_validation(index)
    sampler = BatchSampler(index, split.train_classes, n_classes=32, n_per_class=3, seed=7)
    train_labels = set(index.classes[split.train_classes].tolist())
    for epoch in range(2):
        for step in range(20):  # more steps than one pass over the classes holds
            idx, lab = sampler.batch(epoch, step)
            assert idx.shape == lab.shape == (96,)
            np.testing.assert_array_equal(labels[idx], lab)  # labels are those of the patches
            per_class = lab.reshape(32, 3)
            assert np.all(per_class == per_class[:, :1])  # class-major: k * P + p
            assert len(np.unique(per_class[:, 0])) == 32  # classes unique within the batch
            assert set(per_class[:, 0].tolist()) <= train_labels
            for row in idx.reshape(32, 3):
                count = index.count[np.searchsorted(index.classes, labels[row[0]])]
                # distinct patches while the class has enough, every patch used when it has fewer
                assert len(set(row.tolist())) == min(3, count)


def test_batches_are_a_pure_function_of_seed_epoch_step(labels):
    index = ClassIndex.from_labels(labels)
    split = split_validation(index)
    a = BatchSampler(index, split.train_classes, 16, 2, seed=1)
    b = BatchSampler(index, split.train_classes, 16, 2, seed=1)
    later_first = [b.batch(3, 5)[0], b.batch(0, 0)[0]]  # order of calls does not matter
    np.testing.assert_array_equal(a.batch(0, 0)[0], later_first[1])
    np.testing.assert_array_equal(a.batch(3, 5)[0], later_first[0])
    assert not np.array_equal(a.batch(0, 0)[0], a.batch(0, 1)[0])
    assert not np.array_equal(a.batch(0, 0)[0], a.batch(1, 0)[0])
    other = BatchSampler(index, split.train_classes, 16, 2, seed=2)
    assert not np.array_equal(a.batch(0, 0)[0], other.batch(0, 0)[0])


def test_validation_slice_is_held_out_and_fixed(labels):
    index = ClassIndex.from_labels(labels)
    split = split_validation(index)
    assert not set(split.train_classes.tolist()) & set(split.val_classes.tolist())
    usable = np.flatnonzero(index.count >= 2)
    assert len(split.train_classes) + len(split.val_classes) == len(usable)
    assert len(split.val_classes) == 50  # 5 % of ~250 points is below the 50-point floor
    # the held-out patches are exactly those of the validation classes
    held = set(index.classes[split.val_classes].tolist())
    assert set(labels[split.val_patches].tolist()) == held
    pair_labels = labels[split.val_patches][split.pairs[:, :2]]
    np.testing.assert_array_equal(pair_labels[:, 0] == pair_labels[:, 1], split.pairs[:, 2] == 1)
    assert split.pairs[:, 2].sum() * 2 == len(split.pairs)  # balanced
    again = split_validation(ClassIndex.from_labels(labels))  # independent of any training seed
    np.testing.assert_array_equal(again.pairs, split.pairs)


def test_batch_larger_than_the_training_classes_is_a_user_error(labels):
    index = ClassIndex.from_labels(labels)
    with pytest.raises(DescbenchError, match="smaller --scale"):
        BatchSampler(index, np.arange(10), n_classes=11, n_per_class=2, seed=0)


# ---------------------------------------------------------------- Self-TNet's sampler (balanced method)
# Expected behaviour from zonszer/Self-TNet datasets.py TrainLoader_6Brown.generate_tuples (the Brown
# branch): per batch ``cs = random.sample(set_labels, batch_size)`` over ALL labels (no replacement within
# the batch, independent across batches); per class: 1 patch -> that patch twice, <= Npositives patches
# -> all of them (``indices[c1]``, dataset order), otherwise ``random.sample(indices[c1], Npositives)``;
# the collate concatenates the tuples in order, so each class is contiguous.

def ragged_fixture() -> tuple[np.ndarray, dict[int, list[int]]]:
    """Shuffled labels with classes of 1, 2, 3, 4 and 7 patches, and each class's patches (ascending)."""
    rng = np.random.default_rng(5)
    counts = np.tile([1, 2, 3, 4, 7], 12)  # 60 classes
    labels = rng.permutation(np.repeat(rng.permutation(1000)[:60] * 3 + 1, counts))
    members = {int(c): np.flatnonzero(labels == c).tolist() for c in np.unique(labels)}
    return labels, members


def runs(lab: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of the runs of equal labels."""
    cuts = np.flatnonzero(np.diff(lab)) + 1
    bounds = np.concatenate([[0], cuts, [len(lab)]])
    return [(int(a), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:])]


def test_ragged_batches_follow_self_tnet_class_size_rules():
    labels, members = ragged_fixture()
    index = ClassIndex.from_labels(labels)
    sampler = RaggedBatchSampler(index, np.arange(len(index.classes)), n_classes=20, n_per_class=3, seed=4)
    seen_orders = set()
    for step in range(30):
        idx, lab = sampler.batch(0, step)
        np.testing.assert_array_equal(labels[idx], lab)
        blocks = runs(lab)
        assert len(blocks) == 20 and len({int(lab[s]) for s, _ in blocks}) == 20  # K distinct classes
        assert len(idx) == sum(n for _, n in blocks)
        for s, n in blocks:
            own = members[int(lab[s])]
            got = idx[s:s + n].tolist()
            if len(own) == 1:
                assert got == own * 2  # the single patch twice
            elif len(own) <= 3:
                assert got == own  # every patch, in patch-index order
            else:
                assert n == 3 and len(set(got)) == 3 and set(got) <= set(own)
                seen_orders.add(got == sorted(got))
    assert seen_orders == {True, False}  # a larger class's patches come in random order


def test_ragged_sampler_uses_two_patches_at_p2():
    labels, members = ragged_fixture()
    index = ClassIndex.from_labels(labels)
    idx, lab = RaggedBatchSampler(index, np.arange(60), 25, 2, seed=0).batch(2, 3)
    assert [n for _, n in runs(lab)] == [2] * 25  # at P = 2 every class has 2 entries: a K x P batch
    assert class_blocks(torch.from_numpy(lab)).uniform


def test_ragged_batches_are_a_pure_function_of_seed_epoch_step():
    labels, _ = ragged_fixture()
    index = ClassIndex.from_labels(labels)
    a = RaggedBatchSampler(index, np.arange(60), 16, 3, seed=1)
    b = RaggedBatchSampler(index, np.arange(60), 16, 3, seed=1)
    later = [b.batch(3, 5), b.batch(0, 0)]  # the order of calls does not matter
    for x, y in zip((a.batch(3, 5), a.batch(0, 0)), later):
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[1], y[1])
    assert not np.array_equal(a.batch(0, 0)[1], a.batch(0, 1)[1])
    assert not np.array_equal(a.batch(0, 0)[1], a.batch(1, 0)[1])
    other = RaggedBatchSampler(index, np.arange(60), 16, 3, seed=2)
    assert not np.array_equal(a.batch(0, 0)[1], other.batch(0, 0)[1])


def test_ragged_batches_draw_classes_uniformly_and_independently():
    labels, members = ragged_fixture()
    index = ClassIndex.from_labels(labels)
    eligible = np.arange(0, 60, 2)  # 30 classes, single-patch ones among them
    sampler = RaggedBatchSampler(index, eligible, n_classes=10, n_per_class=3, seed=3)
    n_batches = 1500
    hits = {int(c): 0 for c in index.classes[eligible]}
    patch_hits: dict[int, int] = {}
    overlaps = []
    previous: set[int] = set()
    for step in range(n_batches):
        idx, lab = sampler.batch(0, step)
        chosen = {int(lab[s]) for s, _ in runs(lab)}
        assert chosen <= hits.keys()
        for c in chosen:
            hits[c] += 1
        for i in set(idx.tolist()):
            patch_hits[i] = patch_hits.get(i, 0) + 1
        overlaps.append(len(chosen & previous))
        previous = chosen
    assert any(len(members[c]) == 1 for c in hits)  # single-patch classes are eligible ...
    # ... and every class is drawn with probability K / C = 1/3 per batch (binomial sd ~ 18)
    assert all(abs(h - n_batches / 3) < 100 for h in hits.values())
    # independent batches: consecutive batches share K^2 / C = 3.33 classes on average (a walk through
    # passes would share none within a pass)
    assert abs(np.mean(overlaps[1:]) - 10 * 10 / 30) < 0.3
    # a class of 7 patches: each patch is in 3/7 of the batches that draw its class
    for c, own in members.items():
        if c in hits and len(own) == 7:
            for i in own:
                assert abs(patch_hits.get(i, 0) / hits[c] - 3 / 7) < 0.12


def test_class_of_gives_batch_local_class_positions():
    labels, _ = ragged_fixture()
    index = ClassIndex.from_labels(labels)
    _, lab = RaggedBatchSampler(index, np.arange(60), 12, 3, seed=9).batch(0, 0)
    pos = class_of(lab)
    assert pos.dtype == np.int64 and pos[0] == 0 and pos[-1] == 11
    for k, (s, n) in enumerate(runs(lab)):
        assert np.all(pos[s:s + n] == k)
    np.testing.assert_array_equal(class_of(np.array([7, 7, 3, 3, 3, 9, 9])), [0, 0, 1, 1, 1, 2, 2])
    np.testing.assert_array_equal(class_of(np.repeat([5, 1, 4], 2)), np.repeat(np.arange(3), 2))
    with pytest.raises(DescbenchError, match="class-major"):
        class_of(np.array([1, 1, 2, 2, 1, 1]))


def test_ragged_sampler_checks_its_shape():
    labels, _ = ragged_fixture()
    index = ClassIndex.from_labels(labels)
    with pytest.raises(DescbenchError, match="smaller --scale"):
        RaggedBatchSampler(index, np.arange(10), n_classes=11, n_per_class=3, seed=0)
    with pytest.raises(DescbenchError):
        RaggedBatchSampler(index, np.arange(10), n_classes=4, n_per_class=1, seed=0)


# ---------------------------------------------------------------- training on every class

def test_all_classes_split_trains_on_every_class_and_keeps_the_validation_slice(labels):
    index = ClassIndex.from_labels(labels)
    held = split_validation(index)
    every = split_validation(index, hold_out=False)
    usable = np.flatnonzero(index.count >= 2)
    singles = np.flatnonzero(index.count == 1)
    assert held.held_out and not every.held_out
    assert held.description == "validation on held-out classes"
    assert every.description == "validation on a fixed slice of the training classes"
    np.testing.assert_array_equal(every.train_classes, usable)
    assert set(every.val_classes.tolist()) <= set(every.train_classes.tolist())
    # the same fixed slice and pairs as the held-out split, whatever the mode
    np.testing.assert_array_equal(every.val_classes, held.val_classes)
    np.testing.assert_array_equal(every.val_patches, held.val_patches)
    np.testing.assert_array_equal(every.pairs, held.pairs)
    # single-patch classes: never validated on, trained on only on request
    assert len(singles) > 0
    for split in (held, every):
        np.testing.assert_array_equal(split.single_classes, singles)
        assert not set(singles.tolist()) & set(split.val_classes.tolist())
        np.testing.assert_array_equal(split.training_classes(), split.train_classes)
    np.testing.assert_array_equal(every.training_classes(include_single=True), np.arange(len(index.classes)))
    np.testing.assert_array_equal(held.training_classes(include_single=True),
                                  np.setdiff1d(np.arange(len(index.classes)), held.val_classes))
