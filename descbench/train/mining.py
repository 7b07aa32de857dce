"""Per-class hardest-positive / hardest-negative mining over a flat class-major batch (METHOD.md §1).

A batch is K classes x P patches laid out class-major (``desc.view(K, P, D)`` groups a class). For each
class the miner returns the farthest same-class pair (p, p') and the closest pair (n, n') with n in the
class and n' anywhere else in the batch, ignoring near-duplicates at distance <= 0.008. Mining runs
without gradient on the sphere distance sqrt(|2 - 2 f f^T| + 1e-6); the chosen index pairs are then
re-evaluated with gradient (``MinedPairs.distances``), also on other descriptors of the same batch
(the self-teacher's).
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


def class_layout(labels: Tensor, n_desc: int | None = None) -> tuple[int, int]:
    """(K, P) of a class-major batch; a batch that is not K blocks of P equal, distinct labels is an error."""
    if labels.dim() != 1 or (n_desc is not None and labels.numel() != n_desc):
        raise DescbenchError(
            f"labels must be a 1-D tensor with one label per descriptor, got shape {tuple(labels.shape)}"
            + (f" for {n_desc} descriptors" if n_desc is not None else "")
        )
    n = labels.numel()
    per_class = int((labels == labels[0]).sum()) if n else 0
    if per_class < 2 or n % per_class:
        raise DescbenchError(
            f"batch of {n} labels is not class-major K x P with P >= 2 (first class has {per_class} "
            "patches); the sampler must emit K classes x P patches, each class contiguous"
        )
    k = n // per_class
    grid = labels.view(k, per_class)
    if not bool((grid == grid[:, :1]).all()) or torch.unique(grid[:, 0]).numel() != k:
        raise DescbenchError(
            f"batch labels are not {k} contiguous blocks of {per_class} equal labels with distinct "
            "classes; the sampler must emit classes unique within a batch, each class contiguous"
        )
    return k, per_class


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


def hardest_per_class(desc: Tensor, labels: Tensor, min_neg_dist: float = MIN_NEG_DIST) -> MinedPairs:
    """Mine one hardest positive and one hardest negative pair per class (METHOD.md §1 and appendix).

    Memory: one N x N distance matrix in ``desc``'s dtype, edited in place, plus a transient N x N
    boolean mask (N = 7680 float32: 236 MB + 59 MB).
    """
    k, p = class_layout(labels, desc.shape[0])
    if k < 2:
        raise DescbenchError(f"a batch of {k} class has no negatives; sample at least 2 classes per batch")
    with torch.no_grad():
        f = desc.detach()
        dist = f @ f.T
        dist.mul_(-2.0).add_(2.0).abs_().add_(SQRT_EPS).sqrt_()
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
