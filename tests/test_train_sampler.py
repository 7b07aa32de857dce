"""Sampler: K distinct classes x P patches per batch, a pure function of (seed, epoch, step); the
validation slice is disjoint from training and its pairs are labelled correctly."""

from __future__ import annotations

import numpy as np
import pytest

from descbench.errors import DescbenchError
from descbench.train.sampler import BatchSampler, ClassIndex, split_validation


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
