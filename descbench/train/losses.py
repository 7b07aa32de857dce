"""Training losses: the balance loss and its annealing stage (docs/method.md §2-§4) and the HardNet, SOSNet
and HyNet baselines, as interchangeable ``nn.Module``s with one call signature.

Every loss takes a flat class-major batch ``desc`` (N, D) of unit descriptors with ``labels`` (N,)
(class-major: K distinct classes of >= 2 entries each, see ``mining.class_blocks``; K x 2 for the
pairwise baselines) and a ``LossContext``; it returns a ``LossOutput``
whose per-class hardest distances ``a``/``b`` come from the same per-class miner for every loss, so
the logged difficulty statistics are comparable across methods. The pairwise baselines (HardNet,
SOSNet, HyNet) need P = 2 and read anchors as ``desc[0::2]``, positives as ``desc[1::2]``.

Choices where the sources leave room (all gradients are unaffected unless noted):
* Balance/annealing: the official code's "+5" (it only keeps the logged loss positive) is left out.
  The median in the dynamic bound is ``torch.median`` (lower middle value for even K), as the code.
  ``LossOutput.b`` is the unclamped hardest-negative distance.
* SOSNet: the paper's mean over pairs (1/N) for both terms; FOS is the squared hinge with margin 1
  and the hardest negative over anchor-anchor, positive-positive and both cross directions; the
  SOS neighbour set is, as the authors' reference implementation (yuruntian/HyNet ``Loss_SOSNet``),
  the union of the k nearest neighbours in the anchor-anchor, positive-positive and cross distance
  matrices, symmetrised, self excluded, near-duplicates (<= 0.008) ranked last.
* HyNet: the authors' code (yuruntian/HyNet ``Loss_HyNet``) sums over the batch; we average (the
  papers' 1/N), which keeps the 0.1 ratio between the triplet and the norm term. The norm term needs
  the network's pre-normalisation descriptors: pass them as ``LossContext.raw_desc`` (see
  ``nets.L2NetFRN.forward(x, return_raw=True)``).

Values and gradients were cross-checked in float64 against the official functions (Self-TNet
``tripletMargin_generalized_ExpTeacher`` / ``_Exponential``, HardNet ``loss_HardNet``, HyNet
``Loss_SOSNet`` / ``Loss_HyNet``) after the differences above; regression values in tests/test_losses.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from descbench.errors import DescbenchError
from descbench.train.mining import (
    MIN_NEG_DIST,
    NEAR_DUPLICATE_PENALTY,
    SQRT_EPS,
    MinedPairs,
    class_layout,
    hardest_per_class,
    sphere_distance_matrix,
)


@dataclass
class LossContext:
    """What a loss may need beyond (desc, labels), supplied by the training loop.

    ``teacher``: returns the self-teacher's descriptors of the same batch (same network in eval mode,
    no grad); called lazily, only by losses that need it. ``raw_desc``: the network's descriptors before
    L2-normalisation (N, D), needed by HyNet's norm regulariser.
    """

    teacher: Callable[[], Tensor] | None = None
    raw_desc: Tensor | None = None


@dataclass
class LossOutput:
    """A scalar ``loss`` with grad plus detached per-class diagnostics for metrics.csv/diagnostics.npz."""

    loss: Tensor
    a: Tensor
    b: Tensor
    w: Tensor | None = None
    bound: float | None = None
    masked_fraction: float | None = None


def self_supervised_weight(c: Tensor, tau_lower: float, tau_upper: float) -> Tensor:
    """Per-class weight from the teacher margin c = b^T - a^T (docs/method.md §2).

    0 for c <= tau_lower (probable false negative), 1 for c >= tau_upper, and the concave ramp
    1 - ((c - tau_upper) / (tau_lower - tau_upper))^2 between; identically 1 when the two meet.
    """
    if tau_lower > tau_upper:
        raise DescbenchError(
            f"self-supervised weight thresholds need tau_lower <= tau_upper, got {tau_lower} > {tau_upper}"
        )
    if tau_lower == tau_upper:
        return torch.ones_like(c)
    ramp = 1.0 - ((c - tau_upper) / (tau_lower - tau_upper)) ** 2
    ones = torch.ones_like(c)
    return torch.where(c <= tau_lower, torch.zeros_like(c), torch.where(c >= tau_upper, ones, ramp))


def dynamic_bound(a: Tensor, b: Tensor, A: float) -> Tensor:
    """Per-batch bound m = median(b) + A * median(a), detached (docs/method.md §3); a 0-dim tensor."""
    return b.detach().median() + A * a.detach().median()


def _mined_distances(desc: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Detached per-class hardest (a, b), so every loss logs the same difficulty statistics."""
    pairs = hardest_per_class(desc, labels)
    with torch.no_grad():
        return pairs.distances(desc.detach())


def _quadratic_terms(a: Tensor, b: Tensor, R: float, bound: Tensor) -> Tensor:
    """Per-class R a^2 + min(b, m)^2 - 2 m min(b, m): a pull of a to 0, a squared hinge of b up to m."""
    b_bar = torch.minimum(b, bound)
    return R * a.pow(2) + b_bar.pow(2) - 2.0 * bound * b_bar


class BalanceLoss(nn.Module):
    """Stage-1 balance loss: self-teacher-weighted quadratic loss with the dynamic bound (docs/method.md §2-§3).

    ``fixed_bound`` = B replaces the per-batch bound by m = B / 2 (``balanced-no-modulation``: B = 3.7);
    ``self_supervised=False`` (or tau_lower == tau_upper) sets every weight to 1 and skips the teacher.
    """

    def __init__(self, R: float = 1.0, A: float = 1.05, tau_lower: float = -0.55, tau_upper: float = 0.10,
                 fixed_bound: float | None = None, self_supervised: bool = True) -> None:
        super().__init__()
        if tau_lower > tau_upper:
            raise DescbenchError(f"BalanceLoss: tau_lower {tau_lower} must not exceed tau_upper {tau_upper}")
        self.R, self.A = R, A
        self.tau_lower, self.tau_upper = tau_lower, tau_upper
        self.fixed_bound = fixed_bound
        self.weighted = self_supervised and tau_lower != tau_upper

    def _weights(self, pairs: MinedPairs, ctx: LossContext, like: Tensor) -> Tensor:
        if not self.weighted:
            return torch.ones_like(like)
        if ctx.teacher is None:
            raise DescbenchError(
                "BalanceLoss with self-supervised weighting needs LossContext.teacher (the network in "
                "eval mode on the same batch); pass it, or use self_supervised=False"
            )
        with torch.no_grad():
            a_t, b_t = pairs.distances(ctx.teacher().to(like.dtype))
            return self_supervised_weight(b_t - a_t, self.tau_lower, self.tau_upper)

    def forward(self, desc: Tensor, labels: Tensor, ctx: LossContext) -> LossOutput:
        pairs = hardest_per_class(desc, labels)
        a, b = pairs.distances(desc)
        w = self._weights(pairs, ctx, a.detach())
        if self.fixed_bound is not None:
            bound = torch.tensor(self.fixed_bound / 2.0, dtype=desc.dtype, device=desc.device)
        else:
            bound = dynamic_bound(a, b, self.A)
        loss = (w * _quadratic_terms(a, b, self.R, bound)).mean()
        return LossOutput(loss=loss, a=a.detach(), b=b.detach(), w=w, bound=float(bound))


class AnnealingLoss(nn.Module):
    """Stage-2 loss of annealing cycle i (docs/method.md §4): the quadratic loss with fixed B on the classes
    whose own margin b - a exceeds ``threshold`` t_i; ``masked_fraction`` is the share of classes dropped.
    """

    def __init__(self, threshold: float, B: float = 4.25, R: float = 1.0) -> None:
        super().__init__()
        self.threshold, self.B, self.R = threshold, B, R

    def forward(self, desc: Tensor, labels: Tensor, ctx: LossContext) -> LossOutput:
        pairs = hardest_per_class(desc, labels)
        a, b = pairs.distances(desc)
        bound = torch.tensor(self.B / 2.0, dtype=desc.dtype, device=desc.device)
        with torch.no_grad():  # the code compares the clamped b (identical while B/2 > 2)
            keep = ((torch.minimum(b, bound) - a) > self.threshold).to(desc.dtype)
        loss = (keep * _quadratic_terms(a, b, self.R, bound)).mean()
        return LossOutput(loss=loss, a=a.detach(), b=b.detach(), bound=self.B / 2.0,
                          masked_fraction=float(1.0 - keep.mean()))


def _anchor_positive(desc: Tensor, labels: Tensor, loss_name: str) -> tuple[Tensor, Tensor]:
    k, p = class_layout(labels, desc.shape[0])
    if p != 2:
        raise DescbenchError(
            f"{loss_name} needs 2 patches per class (anchor, positive), got {p}; set the recipe's "
            "patches per class to 2"
        )
    return desc[0::2], desc[1::2]


def _ranking_copy(dist: Tensor) -> Tensor:
    """Detached ``dist`` with self pairs and near-duplicates (<= 0.008) pushed behind every real pair."""
    ranked = dist.detach().clone()
    ranked.diagonal().add_(NEAR_DUPLICATE_PENALTY)
    ranked[ranked <= MIN_NEG_DIST] += NEAR_DUPLICATE_PENALTY
    return ranked


class _PairMatrices:
    """Anchor-anchor (L), positive-positive (R) and anchor-positive (LR) sphere distances of a P = 2
    batch with their ranking copies, shared by the SOSNet and HyNet losses (yuruntian/HyNet layout)."""

    def __init__(self, anchors: Tensor, positives: Tensor) -> None:
        self.L = sphere_distance_matrix(anchors, anchors)
        self.R = sphere_distance_matrix(positives, positives)
        self.LR = sphere_distance_matrix(anchors, positives)
        self.L_rank, self.R_rank, self.LR_rank = (_ranking_copy(m) for m in (self.L, self.R, self.LR))

    def positive(self) -> Tensor:
        return self.LR.diagonal()

    def hardest_negative(self) -> Tensor:
        """Per pair i, the smallest of its nearest anchor-anchor, positive-positive, anchor_i-positive
        and anchor-positive_i distances (near-duplicates and the pair itself excluded), with gradient."""
        rows = torch.arange(self.L.shape[0], device=self.L.device)
        candidates = torch.stack((
            self.L[rows, self.L_rank.argmin(dim=1)],
            self.R[self.R_rank.argmin(dim=0), rows],
            self.LR[rows, self.LR_rank.argmin(dim=1)],
            self.LR[self.LR_rank.argmin(dim=0), rows],
        ))
        return candidates.min(dim=0).values


class HardNetLoss(nn.Module):
    """HardNet (Mishchuk et al. 2017): triplet margin loss with the hardest in-batch negative.

    Distances between anchors and positives by HardNet's ``distance_matrix_vector`` (eps 1e-6); the
    diagonal and near-duplicates (< 0.008) get +10 before the row minimum; anchor swap also takes the
    column minimum; loss = mean(max(0, margin + d_pos - d_neg)).
    """

    def __init__(self, margin: float = 1.0, anchor_swap: bool = True) -> None:
        super().__init__()
        self.margin, self.anchor_swap = margin, anchor_swap

    @staticmethod
    def distance_matrix(anchors: Tensor, positives: Tensor) -> Tensor:
        """sqrt(|x|^2 + |y|^2 - 2 x.y + 1e-6); the square is clamped at 0 against rounding."""
        sq = anchors.pow(2).sum(1, keepdim=True) + positives.pow(2).sum(1).unsqueeze(0)
        return torch.sqrt((sq - 2.0 * anchors @ positives.T).clamp_min(0.0) + SQRT_EPS)

    def forward(self, desc: Tensor, labels: Tensor, ctx: LossContext) -> LossOutput:
        anchors, positives = _anchor_positive(desc, labels, "HardNetLoss")
        dist = self.distance_matrix(anchors, positives)
        pos = dist.diagonal()
        penalty = torch.eye(dist.shape[0], dtype=dist.dtype, device=dist.device) * NEAR_DUPLICATE_PENALTY
        penalised = dist + penalty
        penalised = penalised + (penalised.detach() < MIN_NEG_DIST).to(dist.dtype) * NEAR_DUPLICATE_PENALTY
        neg = penalised.min(dim=1).values
        if self.anchor_swap:
            neg = torch.minimum(neg, penalised.min(dim=0).values)
        loss = torch.clamp(self.margin + pos - neg, min=0.0).mean()
        a, b = _mined_distances(desc, labels)
        return LossOutput(loss=loss, a=a, b=b)


class SOSNetLoss(nn.Module):
    """SOSNet (Tian et al. CVPR 2019): first-order squared-hinge triplet loss plus the second-order
    similarity regulariser mean_i sqrt(sum_{j in c_i} (d(a_i, a_j) - d(p_i, p_j))^2) over k-NN sets."""

    def __init__(self, margin: float = 1.0, knn: int = 8, so_weight: float = 1.0) -> None:
        super().__init__()
        if knn < 1:
            raise DescbenchError(f"SOSNetLoss: knn must be >= 1, got {knn}")
        self.margin, self.knn, self.so_weight = margin, knn, so_weight

    def neighbour_mask(self, m: _PairMatrices) -> Tensor:
        """Boolean (n, n) c_i membership: k-NN in L, R, LR (rows) and RL (columns), symmetrised, no self."""
        n = m.L.shape[0]
        k = min(self.knn, n - 1)
        near_l = torch.zeros(n, n, dtype=torch.bool, device=m.L.device)
        near_r, near_lr = near_l.clone(), near_l.clone()
        near_l.scatter_(1, m.L_rank.topk(k, dim=1, largest=False).indices, True)
        near_r.scatter_(0, m.R_rank.topk(k, dim=0, largest=False).indices, True)
        near_lr.scatter_(1, m.LR_rank.topk(k, dim=1, largest=False).indices, True)
        near_lr.scatter_(0, m.LR_rank.topk(k, dim=0, largest=False).indices, True)
        mask = near_l | near_l.T | near_r | near_r.T | near_lr | near_lr.T
        mask.fill_diagonal_(False)
        return mask

    def forward(self, desc: Tensor, labels: Tensor, ctx: LossContext) -> LossOutput:
        anchors, positives = _anchor_positive(desc, labels, "SOSNetLoss")
        m = _PairMatrices(anchors, positives)
        first_order = torch.clamp(self.margin + m.positive() - m.hardest_negative(), min=0.0).pow(2).mean()
        structure = (m.L - m.R) * self.neighbour_mask(m).to(desc.dtype)
        second_order = torch.sqrt(structure.pow(2).sum(dim=1) + SQRT_EPS).mean()
        a, b = _mined_distances(desc, labels)
        return LossOutput(loss=first_order + self.so_weight * second_order, a=a, b=b)


class HyNetLoss(nn.Module):
    """HyNet (Tian et al. NeurIPS 2020): triplet margin loss on the hybrid distance d + alpha d^2 / 2
    (= d + alpha (1 - s) with s the inner product of unit descriptors, i.e. a mix of L2 distance and
    inner-product similarity) with the hardest negative of ``_PairMatrices``, plus ``l2_weight`` times
    the mean squared difference of the anchor and positive pre-normalisation descriptor norms."""

    def __init__(self, margin: float = 1.2, alpha: float = 2.0, l2_weight: float = 0.1) -> None:
        super().__init__()
        self.margin, self.alpha, self.l2_weight = margin, alpha, l2_weight

    def hybrid(self, d: Tensor) -> Tensor:
        return d + self.alpha / 2.0 * d.pow(2)

    def forward(self, desc: Tensor, labels: Tensor, ctx: LossContext) -> LossOutput:
        anchors, positives = _anchor_positive(desc, labels, "HyNetLoss")
        m = _PairMatrices(anchors, positives)
        triplet = torch.clamp(
            self.margin + self.hybrid(m.positive()) - self.hybrid(m.hardest_negative()), min=0.0
        ).mean()
        loss = triplet
        if self.l2_weight:
            if ctx.raw_desc is None or ctx.raw_desc.shape != desc.shape:
                raise DescbenchError(
                    "HyNetLoss's norm regulariser needs LossContext.raw_desc, the (N, D) descriptors "
                    "before L2-normalisation (network(x, return_raw=True)); pass them or set l2_weight=0"
                )
            norms = torch.sqrt(ctx.raw_desc.pow(2).sum(dim=1) + SQRT_EPS)
            loss = loss + self.l2_weight * (norms[0::2] - norms[1::2]).pow(2).mean()
        a, b = _mined_distances(desc, labels)
        return LossOutput(loss=loss, a=a, b=b)
