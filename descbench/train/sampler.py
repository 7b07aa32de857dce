"""Training batches of K classes (3D points), and the validation slice of the training set.

A batch is a pure function of ``(seed, epoch, step)``: nothing about a sampler has to be saved in a
checkpoint except the step counter, and a resumed run draws exactly the batches the uninterrupted run
would have drawn. Two samplers, both class-major (the patches of a class are contiguous, the classes of
a batch distinct):

* ``BatchSampler`` (HardNet-style K x P): the training classes are walked through in random orders
  ("passes"), K at a time; an epoch may hold more batches than one pass. For each chosen class, P of its
  patches are drawn without replacement; a class with fewer than P patches contributes all of them plus
  random repeats (the augmentation makes repeats differ). Patch ``k * P + p`` belongs to the k-th class.
* ``RaggedBatchSampler`` (Self-TNet's tuples, zonszer/Self-TNet datasets.py
  ``TrainLoader_6Brown.generate_tuples``): every batch draws its K classes afresh, without replacement
  within the batch and independently of the other batches, from all its classes (single-patch ones
  too); a class with one patch contributes it twice, a class with at most P patches all of them (in
  patch-index order), a larger class P distinct patches in random order. Class sizes in a batch may
  thus differ (2 or 3 at P = 3); ``class_of`` gives the batch-local class of each patch.

The validation slice is a fixed fraction of the training set's 3D points (chosen with a fixed seed, so
every training seed monitors the same points), with balanced matching / non-matching pairs for FPR95
monitoring. By default those points are held out of training; ``hold_out=False`` trains on every class
(as the official Self-TNet code does) and validates on the same fixed slice, then part of the training
classes. Test sets are never read by training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from descbench.errors import DescbenchError

VALIDATION_FRACTION = 0.05
VALIDATION_MIN_CLASSES = 50
VALIDATION_MAX_PAIRS = 20000
VALIDATION_SEED = 20230310
RAGGED_STREAM = 2  # last word of the RaggedBatchSampler's seed sequence [seed, epoch, step, 2]


@dataclass(frozen=True)
class ClassIndex:
    """Patches grouped by class: the patches of class ``c`` are ``order[start[c]:start[c] + count[c]]``."""

    classes: np.ndarray  # (C,) label values, sorted
    start: np.ndarray  # (C,) int64
    count: np.ndarray  # (C,) int64
    order: np.ndarray  # (N,) int64 patch indices sorted by class

    @classmethod
    def from_labels(cls, labels: np.ndarray) -> "ClassIndex":
        labels = np.asarray(labels)
        order = np.argsort(labels, kind="stable")
        classes, start, count = np.unique(labels[order], return_index=True, return_counts=True)
        return cls(classes, start.astype(np.int64), count.astype(np.int64), order.astype(np.int64))


@dataclass(frozen=True)
class ValidationSplit:
    """Class positions (into ``ClassIndex.classes``) for training and validation, and validation pairs.

    ``held_out``: whether ``val_classes`` are kept out of ``train_classes`` (validation on held-out
    classes) or are a fixed slice of them (``split_validation(..., hold_out=False)``).
    ``single_classes``: the classes with a single patch; they are never validated on, and
    ``training_classes(include_single=True)`` adds them for the sampler that uses them.
    """

    train_classes: np.ndarray  # (C_train,) positions into ClassIndex.classes, classes with >= 2 patches
    val_classes: np.ndarray  # (C_val,)
    val_patches: np.ndarray  # (M,) patch indices (into the training set) used by the pairs
    pairs: np.ndarray  # (Q, 3) int64: i, j into val_patches, is_match
    held_out: bool = True
    single_classes: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    @property
    def description(self) -> str:
        """What the validation metric measures, for logs and tables."""
        return ("validation on held-out classes" if self.held_out
                else "validation on a fixed slice of the training classes")

    def training_classes(self, include_single: bool = False) -> np.ndarray:
        """Sorted training class positions, with the single-patch classes if ``include_single``."""
        if not include_single or not len(self.single_classes):
            return self.train_classes
        return np.union1d(self.train_classes, self.single_classes)


def split_validation(index: ClassIndex, fraction: float = VALIDATION_FRACTION,
                     min_classes: int = VALIDATION_MIN_CLASSES,
                     max_pairs: int = VALIDATION_MAX_PAIRS, hold_out: bool = True) -> ValidationSplit:
    """Pick ``fraction`` of the classes with >= 2 patches (at least ``min_classes``, at most a fifth)
    for validation; with ``hold_out`` (the default) they are removed from the training classes, without
    it every class with >= 2 patches trains. The validation classes and pairs do not depend on
    ``hold_out``.

    Classes with a single patch cannot form a positive pair; they are never validated on and are not in
    ``train_classes`` (see ``ValidationSplit.training_classes``).
    """
    usable = np.flatnonzero(index.count >= 2)
    if len(usable) < 10:
        raise DescbenchError(
            f"the training set has only {len(usable)} 3D points with >= 2 patches; training needs at "
            "least 10 (check the prepared labels.npy)")
    n_val = int(round(fraction * len(usable)))
    n_val = max(n_val, min(min_classes, len(usable) // 5))
    rng = np.random.default_rng(VALIDATION_SEED)
    perm = rng.permutation(usable)
    val_classes = np.sort(perm[:n_val])
    train_classes = np.sort(perm[n_val:]) if hold_out else usable.astype(np.int64)

    # positives: every within-class pair of the validation classes; negatives: as many random cross pairs
    members = [index.order[index.start[c]:index.start[c] + index.count[c]] for c in val_classes]
    val_patches = np.concatenate(members)
    owner = np.repeat(np.arange(len(members)), [len(m) for m in members])
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in members])[:-1]])
    pos = [(o + i, o + j) for o, m in zip(offsets, members)
           for i in range(len(m)) for j in range(i + 1, len(m))]
    pos = np.asarray(pos, dtype=np.int64)
    n_pos = min(len(pos), max_pairs // 2)
    pos = pos[np.sort(rng.choice(len(pos), n_pos, replace=False))]
    neg = np.empty((0, 2), dtype=np.int64)
    while len(neg) < n_pos:
        cand = rng.integers(0, len(val_patches), size=(2 * n_pos, 2))
        cand = cand[owner[cand[:, 0]] != owner[cand[:, 1]]]
        neg = np.concatenate([neg, cand])
    neg = neg[:n_pos]
    pairs = np.concatenate([
        np.column_stack([pos, np.ones(n_pos, np.int64)]),
        np.column_stack([neg, np.zeros(n_pos, np.int64)]),
    ])
    return ValidationSplit(train_classes, val_classes, val_patches, pairs, held_out=hold_out,
                           single_classes=np.flatnonzero(index.count == 1).astype(np.int64))


def class_of(labels: np.ndarray) -> np.ndarray:
    """Batch-local class position (0..K-1, int64) of each patch of a class-major batch's ``labels``.

    A class-major batch holds each class in one contiguous run; a label that occurs in two runs is an
    error (the per-class augmentation and the miner would treat the runs as different classes).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DescbenchError(f"batch labels must be 1-D, got shape {labels.shape}")
    if not len(labels):
        return np.empty(0, np.int64)
    pos = np.concatenate([[0], np.cumsum(labels[1:] != labels[:-1])]).astype(np.int64)
    if len(np.unique(labels)) != pos[-1] + 1:
        raise DescbenchError(
            "batch labels are not class-major: a class occurs in more than one run of the batch")
    return pos


def _check_shape(n_available: int, n_classes: int, n_per_class: int) -> None:
    if n_classes > n_available:
        raise DescbenchError(
            f"a batch of {n_classes} classes needs at least that many training 3D points, but the "
            f"training set has {n_available}; use a smaller --scale or more data")
    if n_classes < 2 or n_per_class < 2:
        raise DescbenchError(
            f"batch shape K={n_classes} x P={n_per_class}: both must be >= 2 for positives and "
            "negatives to exist")


class _Sampler:
    """K classes x (up to) P patches over the classes ``classes`` (positions into ``index.classes``)."""

    def __init__(self, index: ClassIndex, classes: np.ndarray, n_classes: int, n_per_class: int,
                 seed: int):
        _check_shape(len(classes), n_classes, n_per_class)
        self.index = index
        self.classes = np.asarray(classes, dtype=np.int64)
        self.K = n_classes
        self.P = n_per_class
        self.seed = int(seed)


class BatchSampler(_Sampler):
    """Deterministic K x P batches over the classes ``classes`` (positions into ``index.classes``)."""

    @property
    def batches_per_pass(self) -> int:
        return len(self.classes) // self.K

    def batch(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Patch indices (K*P,) and their labels (K*P,) of batch ``step`` of ``epoch``, class-major."""
        pass_no, slot = divmod(step, self.batches_per_pass)
        order = np.random.default_rng([self.seed, epoch, pass_no]).permutation(len(self.classes))
        chosen = self.classes[order[slot * self.K:(slot + 1) * self.K]]
        count = self.index.count[chosen]
        rng = np.random.default_rng([self.seed, epoch, pass_no, slot, 1])
        width = max(int(count.max()), self.P)
        keys = rng.random((self.K, width))
        keys[np.arange(width)[None, :] >= count[:, None]] = np.inf
        pick = np.argsort(keys, axis=1, kind="stable")[:, :self.P]
        short = np.arange(self.P)[None, :] >= count[:, None]
        if short.any():
            repeats = (rng.random((self.K, self.P)) * count[:, None]).astype(np.int64)
            pick = np.where(short, repeats, pick)
        patches = self.index.order[self.index.start[chosen][:, None] + pick].reshape(-1)
        labels = np.repeat(self.index.classes[chosen], self.P)
        return patches, labels


class RaggedBatchSampler(_Sampler):
    """Self-TNet's batches over the classes ``classes`` (positions into ``index.classes``, single-patch
    classes allowed): K distinct classes drawn afresh for every batch; class k contributes ``size[k]``
    = 2 (its one patch twice), ``count`` (all its patches, ``count`` <= P) or P (distinct, random order)
    patches. Same constructor and ``batch`` as ``BatchSampler``; the batch holds between 2K and PK
    patches, class-major.
    """

    def batch(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Patch indices (N,) and their labels (N,) of batch ``step`` of ``epoch``, class-major."""
        rng = np.random.default_rng([self.seed, epoch, step, RAGGED_STREAM])
        chosen = self.classes[rng.choice(len(self.classes), self.K, replace=False)]
        count = self.index.count[chosen]
        size = np.where(count == 1, 2, np.minimum(count, self.P))
        # pick[k, p]: the p-th patch of class k as a position among its members (sorted by patch index)
        pick = np.broadcast_to(np.arange(self.P, dtype=np.int64), (self.K, self.P)).copy()
        pick[count == 1] = 0
        many = count > self.P
        if many.any():
            c = count[many]
            width = int(c.max())
            keys = rng.random((len(c), width))
            keys[np.arange(width)[None, :] >= c[:, None]] = np.inf
            pick[many] = np.argsort(keys, axis=1, kind="stable")[:, :self.P]
        used = np.arange(self.P)[None, :] < size[:, None]
        patches = self.index.order[(self.index.start[chosen][:, None] + pick)[used]]
        labels = np.repeat(self.index.classes[chosen], size)
        return patches, labels
