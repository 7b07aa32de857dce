"""Training batches of K classes (3D points) x P patches, and the validation slice of the training set.

A batch is a pure function of ``(seed, epoch, step)``: nothing about the sampler has to be saved in a
checkpoint except the step counter, and a resumed run draws exactly the batches the uninterrupted run
would have drawn. Within an epoch the training classes are walked through in random orders ("passes"),
K at a time, so the classes of one batch are always distinct; an epoch may hold more batches than one
pass (stage 1 of the balanced method draws 1582 batches of 2560 classes from ~100k Liberty points).

For each chosen class, P of its patches are drawn without replacement; a class with fewer than P patches
contributes all of them plus random repeats (the augmentation makes repeats differ). The flat batch is
class-major: patch ``k * P + p`` belongs to the k-th class of the batch.

The validation slice holds out a fixed fraction of the training set's 3D points (chosen with a fixed
seed, so every training seed monitors the same points) and builds balanced matching / non-matching pairs
from them for FPR95 monitoring. Test sets are never read by training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from descbench.errors import DescbenchError

VALIDATION_FRACTION = 0.05
VALIDATION_MIN_CLASSES = 50
VALIDATION_MAX_PAIRS = 20000
VALIDATION_SEED = 20230310


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
    """Class positions (into ``ClassIndex.classes``) for training and validation, and validation pairs."""

    train_classes: np.ndarray  # (C_train,) positions into ClassIndex.classes
    val_classes: np.ndarray  # (C_val,)
    val_patches: np.ndarray  # (M,) patch indices (into the training set) used by the pairs
    pairs: np.ndarray  # (Q, 3) int64: i, j into val_patches, is_match


def split_validation(index: ClassIndex, fraction: float = VALIDATION_FRACTION,
                     min_classes: int = VALIDATION_MIN_CLASSES,
                     max_pairs: int = VALIDATION_MAX_PAIRS) -> ValidationSplit:
    """Hold out ``fraction`` of the classes with >= 2 patches (at least ``min_classes``, at most a fifth).

    Classes with a single patch cannot form a positive pair; they stay out of both sides.
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
    train_classes = np.sort(perm[n_val:])

    # positives: every within-class pair of the held-out classes; negatives: as many random cross pairs
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
    return ValidationSplit(train_classes, val_classes, val_patches, pairs)


class BatchSampler:
    """Deterministic K x P batches over the classes ``classes`` (positions into ``index.classes``)."""

    def __init__(self, index: ClassIndex, classes: np.ndarray, n_classes: int, n_per_class: int,
                 seed: int):
        if n_classes > len(classes):
            raise DescbenchError(
                f"a batch of {n_classes} classes needs at least that many training 3D points, but the "
                f"training set has {len(classes)}; use a smaller --scale or more data")
        if n_classes < 2 or n_per_class < 2:
            raise DescbenchError(
                f"batch shape K={n_classes} x P={n_per_class}: both must be >= 2 for positives and "
                "negatives to exist")
        self.index = index
        self.classes = np.asarray(classes, dtype=np.int64)
        self.K = n_classes
        self.P = n_per_class
        self.seed = int(seed)
        self.batches_per_pass = len(self.classes) // n_classes

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
