"""Per-class hardest-positive / hardest-negative mining over a flat class-major batch (docs/method.md §1).

A batch is K distinct classes, each one contiguous run of >= 2 descriptors (``class_blocks``); the runs
are K blocks of P (``desc.view(K, P, D)`` groups a class, ``class_layout``) for the K x P sampler, and
may differ in length (2 or 3) for Self-TNet's sampler (``sampler.RaggedBatchSampler``). For each class
the miner returns the farthest same-class pair (p, p') of distinct batch entries and the closest pair
(n, n') with n in the class and n' anywhere else in the batch, ignoring near-duplicates at distance
<= 0.008. Mining runs without gradient on the sphere distance sqrt(|2 - 2 f f^T| + 1e-6); the chosen
index pairs are then re-evaluated with gradient (``MinedPairs.distances``), also on other descriptors
of the same batch (the self-teacher's).

As the official code (zonszer/Self-TNet Learning/losses.py ``tripletMargin_generalized_ExpTeacher``:
same-label mask, ``dm.le(0.008)`` near-duplicate mask, row max / row min then the class's best row),
except: a batch entry is not its own positive (the official row max also sees the diagonal,
sqrt(|2 - 2|f|^2| + 1e-6) ~ 1e-3, so it differs only for a class whose every pair is closer than
that; a class holding one patch twice gets a = 0 either way when the copies are identical), and the
per-class outputs are in batch order (the official code's are in sorted-label order; per-class losses,
means and medians are unaffected).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from descbench.errors import DescbenchError

MIN_NEG_DIST = 0.008  # HardNet's near-duplicate threshold: closer "negatives" are label noise
SQRT_EPS = 1e-6
# Added to near-duplicate distances (all distances are <= 2): they rank after every valid negative,
# so a class whose every negative is a near-duplicate still gets its nearest one instead of garbage.
NEAR_DUPLICATE_PENALTY = 10.0


@dataclass(frozen=True)
class ClassBlocks:
    """The class runs of a class-major batch: class k is rows ``start[k]:start[k] + size[k]``.

    ``start``/``size``: (K,) int64 on the labels' device; ``min_size``/``max_size``: the shortest and
    longest run; ``uniform``: every run has the same length (a K x P batch, P = ``max_size``).
    """

    start: Tensor
    size: Tensor
    min_size: int
    max_size: int

    @property
    def n_classes(self) -> int:
        return self.start.numel()

    @property
    def uniform(self) -> bool:
        return self.min_size == self.max_size


def class_blocks(labels: Tensor, n_desc: int | None = None) -> ClassBlocks:
    """The runs of a class-major batch; labels whose classes are not contiguous runs of >= 2 entries
    with distinct labels are an error."""
    if labels.dim() != 1 or (n_desc is not None and labels.numel() != n_desc):
        raise DescbenchError(
            f"labels must be a 1-D tensor with one label per descriptor, got shape {tuple(labels.shape)}"
            + (f" for {n_desc} descriptors" if n_desc is not None else "")
        )
    n = labels.numel()
    if n < 2:
        raise DescbenchError(f"batch of {n} labels has no class of >= 2 patches")
    new_run = torch.ones(n, dtype=torch.bool, device=labels.device)
    new_run[1:] = labels[1:] != labels[:-1]
    start = torch.nonzero(new_run).squeeze(1)
    size = torch.diff(start, append=torch.full((1,), n, dtype=start.dtype, device=start.device))
    smallest, largest = torch.stack(torch.aminmax(size)).tolist()
    if smallest < 2:
        raise DescbenchError(
            f"batch of {n} labels has a class run of {smallest} patch; the sampler must emit every "
            "class as one contiguous run of >= 2 patches (a single patch twice)"
        )
    if torch.unique(labels).numel() != start.numel():
        raise DescbenchError(
            f"batch labels form {start.numel()} runs but fewer distinct classes; the sampler must emit "
            "classes unique within a batch, each class contiguous"
        )
    return ClassBlocks(start=start, size=size, min_size=smallest, max_size=largest)


def class_layout(labels: Tensor, n_desc: int | None = None) -> tuple[int, int]:
    """(K, P) of a class-major batch; a batch that is not K blocks of P equal, distinct labels is an error."""
    blocks = class_blocks(labels, n_desc)
    if not blocks.uniform:
        raise DescbenchError(
            f"batch of {labels.numel()} labels is not class-major K x P: its {blocks.n_classes} "
            f"classes have {blocks.min_size} to {blocks.max_size} patches; this loss needs every class "
            "the same size (the K x P sampler)"
        )
    return blocks.n_classes, blocks.max_size


def sphere_distance_matrix(x: Tensor, y: Tensor) -> Tensor:
    """L2 distances between unit rows, sqrt(|2 - 2 x y^T| + 1e-6) (Self-TNet's and HyNet's formula)."""
    return torch.sqrt(torch.abs(2.0 - 2.0 * (x @ y.T)) + SQRT_EPS)


def pair_distance(x: Tensor, y: Tensor) -> Tensor:
    """Row-wise ||x_i - y_i||_2 (the official code's ``torch.norm``; zero gradient at x_i == y_i)."""
    return torch.linalg.vector_norm(x - y, dim=1)


@dataclass(frozen=True)
class MinedPairs:
    """Per-class index pairs into the flat batch: hardest positive (pos_i, pos_j), hardest negative
    (neg_i, neg_j); each a (K,) int64 tensor, ``neg_i`` in the class, ``neg_j`` in another class."""

    pos_i: Tensor
    pos_j: Tensor
    neg_i: Tensor
    neg_j: Tensor

    def distances(self, desc: Tensor) -> tuple[Tensor, Tensor]:
        """(a, b): the (K,) positive and negative distances of these pairs in ``desc``, with gradient."""
        a = pair_distance(desc[self.pos_i], desc[self.pos_j])
        b = pair_distance(desc[self.neg_i], desc[self.neg_j])
        return a, b


def _distance_matrix_inplace(desc: Tensor) -> Tensor:
    """``sphere_distance_matrix(f, f)`` of the detached ``desc``, computed in place in one N x N buffer."""
    f = desc.detach()
    dist = f @ f.T
    return dist.mul_(-2.0).add_(2.0).abs_().add_(SQRT_EPS).sqrt_()


def hardest_per_class(desc: Tensor, labels: Tensor, min_neg_dist: float = MIN_NEG_DIST) -> MinedPairs:
    """Mine one hardest positive and one hardest negative pair per class (docs/method.md §1).

    Memory: one N x N distance matrix in ``desc``'s dtype, edited in place, plus a transient N x N
    boolean mask (N = 7680 float32: 236 MB + 59 MB). K x P batches take a strided fast path; batches
    with classes of different sizes the general one (``_mine_blocks``), which gives the same pairs on
    K x P batches.
    """
    blocks = class_blocks(labels, desc.shape[0])
    if blocks.n_classes < 2:
        raise DescbenchError(
            f"a batch of {blocks.n_classes} class has no negatives; sample at least 2 classes per batch")
    if blocks.uniform:
        return _mine_uniform(desc, blocks.n_classes, blocks.max_size, min_neg_dist)
    return _mine_blocks(desc, blocks, min_neg_dist)


def _mine_uniform(desc: Tensor, k: int, p: int, min_neg_dist: float) -> MinedPairs:
    """The miner on K blocks of P: the same-class blocks are a strided view of the distance matrix."""
    with torch.no_grad():
        dist = _distance_matrix_inplace(desc)
        # blocks[q, r, c] = dist[c*p + q, c*p + r]: a writable view of the K same-class P x P blocks.
        blocks = dist.view(k, p, k, p).diagonal(dim1=0, dim2=2)
        within = blocks.permute(2, 0, 1).clone()
        within.diagonal(dim1=1, dim2=2).fill_(-1.0)  # a patch is not its own positive
        flat = within.view(k, p * p).argmax(dim=1)
        first = torch.arange(k, device=desc.device) * p
        pos_i = first + torch.div(flat, p, rounding_mode="floor")
        pos_j = first + flat % p

        blocks.fill_(float("inf"))  # same-class entries are never negatives
        near = dist <= min_neg_dist
        dist[near] += NEAR_DUPLICATE_PENALTY
        del near
        nearest, nearest_idx = dist.min(dim=1)
        member = nearest.view(k, p).argmin(dim=1)
        neg_i = first + member
        neg_j = nearest_idx[neg_i]
    return MinedPairs(pos_i=pos_i, pos_j=pos_j, neg_i=neg_i, neg_j=neg_j)


def _mine_blocks(desc: Tensor, blocks: ClassBlocks, min_neg_dist: float) -> MinedPairs:
    """The miner on classes of any sizes >= 2: each class is padded to S = ``max_size`` rows by
    repeating its last row, the padded K x S x S same-class distances are gathered (padding and the
    diagonal masked out) and scattered back as +inf. On K x P batches every step sees the same values in
    the same order as ``_mine_uniform``, so the pairs are the same."""
    k, s, n = blocks.n_classes, blocks.max_size, desc.shape[0]
    first, size = blocks.start.to(desc.device), blocks.size.to(desc.device)
    with torch.no_grad():
        dist = _distance_matrix_inplace(desc)
        q = torch.arange(s, device=desc.device)
        valid = q[None, :] < size[:, None]  # (K, S)
        rows = first[:, None] + torch.minimum(q[None, :], size[:, None] - 1)
        cells = (rows[:, :, None] * n + rows[:, None, :]).reshape(-1)  # flat same-class entries
        flat_dist = dist.view(-1)
        within = flat_dist[cells].view(k, s, s)
        usable = valid[:, :, None] & valid[:, None, :]
        usable &= ~torch.eye(s, dtype=torch.bool, device=desc.device)  # a patch is not its own positive
        within.masked_fill_(~usable, -1.0)
        flat = within.view(k, s * s).argmax(dim=1)
        pos_i = first + torch.div(flat, s, rounding_mode="floor")
        pos_j = first + flat % s

        flat_dist[cells] = float("inf")  # same-class entries are never negatives
        near = dist <= min_neg_dist
        dist[near] += NEAR_DUPLICATE_PENALTY
        del near
        nearest, nearest_idx = dist.min(dim=1)
        member = nearest[rows].masked_fill_(~valid, float("inf")).argmin(dim=1)
        neg_i = first + member
        neg_j = nearest_idx[neg_i]
    return MinedPairs(pos_i=pos_i, pos_j=pos_j, neg_i=neg_i, neg_j=neg_j)
