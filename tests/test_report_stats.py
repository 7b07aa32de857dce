"""Statistics of the report on cases that can be checked by hand or against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from descbench.evaluate.fpr95 import fpr95
from descbench.report import stats


def test_holm_matches_a_hand_computation():
    # sorted p: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> monotone 0.06)
    adjusted = stats.holm([0.03, 0.01, 0.04, 0.02])
    assert adjusted == pytest.approx([0.06, 0.04, 0.06, 0.06])


def test_holm_caps_at_one_and_skips_nan():
    adjusted = stats.holm([0.5, np.nan, 0.6])
    assert adjusted[0] == pytest.approx(1.0) and adjusted[2] == pytest.approx(1.0)
    assert np.isnan(adjusted[1])
    assert stats.holm([0.2, np.nan])[0] == pytest.approx(0.2)  # one test: no correction


@pytest.mark.parametrize("b, c", [(0, 0), (3, 3), (1, 9), (12, 4), (0, 7), (40, 61)])
def test_mcnemar_exact_equals_scipy_binomtest(b, c):
    expected = 1.0 if b + c == 0 else sps.binomtest(b, b + c, 0.5).pvalue
    assert stats.mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_counts_discordant_false_positives_at_own_thresholds():
    is_match = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    # A: match distances up to 0.4, accepts the non-matches at 0.3 and 0.35; B accepts only 0.2
    dist_a = np.array([0.1, 0.2, 0.3, 0.4, 0.3, 0.35, 0.9, 0.8])
    dist_b = np.array([0.0, 0.1, 0.2, 0.25, 0.2, 0.5, 0.9, 0.8])
    b, c, p = stats.mcnemar_negatives(dist_a, dist_b, is_match)
    assert (b, c) == (1, 0)
    assert p == pytest.approx(1.0)
    # the accepted fraction at the own threshold is FPR95 itself
    assert stats.false_positives_at_recall(dist_a, is_match).mean() == pytest.approx(
        fpr95(dist_a, is_match))


def test_weighted_fpr95_with_unit_weights_equals_fpr95_including_ties():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(20, 200))
        is_match = rng.integers(0, 2, n)
        is_match[:2] = [0, 1]
        distances = np.round(rng.random(n), 1)  # many ties
        order = stats.ranking(distances, is_match)
        value = stats.weighted_fpr95(order, is_match, np.ones((1, n)))[0]
        assert value == pytest.approx(fpr95(distances, is_match))


def test_cluster_bootstrap_interval_contains_the_true_difference():
    """Descriptor A truly has a higher FPR95 than B; the interval is around the observed difference
    and covers the population difference of the generating model."""
    rng = np.random.default_rng(0)
    n_points, n_pairs = 300, 3000
    pos = rng.integers(0, n_points, n_pairs // 2)
    neg1 = rng.integers(0, n_points, n_pairs // 2)
    neg2 = (neg1 + rng.integers(1, n_points, n_pairs // 2)) % n_points
    point1, point2 = np.concatenate([pos, neg1]), np.concatenate([pos, neg2])
    is_match = np.r_[np.ones(n_pairs // 2, int), np.zeros(n_pairs // 2, int)]
    # positives ~ N(0, 1), negatives ~ N(mu, 1): FPR95 = Phi(z95 - mu)
    z95 = sps.norm.ppf(0.95)
    mu_a, mu_b = 2.5, 3.5
    true_diff = sps.norm.cdf(z95 - mu_a) - sps.norm.cdf(z95 - mu_b)
    noise = rng.normal(0, 1, n_pairs)
    dist_a = noise + np.where(is_match == 1, 0, mu_a)
    dist_b = noise + np.where(is_match == 1, 0, mu_b)
    group = stats.UBCGroup(point1, point2, is_match, [(dist_a, dist_b)])
    boot = stats.ubc_bootstrap([group], 400, np.random.default_rng(1))
    lo, hi = stats.percentile_interval(boot, 0.05)
    observed = fpr95(dist_a, is_match) - fpr95(dist_b, is_match)
    assert lo < observed < hi
    assert lo < true_diff < hi
    assert lo > 0 and stats.bootstrap_pvalue(boot) < 0.05


def test_stratified_weights_keep_category_sizes():
    categories = np.array(["i"] * 3 + ["v"] * 5)
    weights = stats.stratified_sequence_weights(categories, 50, np.random.default_rng(0))
    assert np.all(weights[:, :3].sum(axis=1) == 3) and np.all(weights[:, 3:].sum(axis=1) == 5)


def test_matching_aggregate_with_unit_weights_is_the_category_level_mean():
    per_seq = np.array([[0.9, 0.6, 0.3], [0.7, 0.4, 0.1], [0.5, 0.5, 0.5]])
    categories = np.array(["i", "i", "v"])
    value = stats.matching_aggregate(per_seq, categories, np.ones((1, 3)))[0]
    # i: levels (0.8, 0.5, 0.2); v: (0.5, 0.5, 0.5) -> mean of six numbers
    assert value == pytest.approx(np.mean([0.8, 0.5, 0.2, 0.5, 0.5, 0.5]))


def test_wilcoxon_matches_scipy_and_handles_identical_inputs():
    rng = np.random.default_rng(5)
    a, b = rng.random(12), rng.random(12)
    stat, p = stats.wilcoxon_paired(a, b)
    expected = sps.wilcoxon(a, b)
    assert stat == pytest.approx(expected.statistic) and p == pytest.approx(expected.pvalue)
    assert stats.wilcoxon_paired(a, a) == (0.0, 1.0)


def test_paired_t_needs_two_seeds():
    assert np.isnan(stats.paired_t([0.1], [0.2])[1])
    stat, p = stats.paired_t([0.1, 0.2, 0.4], [0.2, 0.25, 0.6])
    assert p == pytest.approx(sps.ttest_rel([0.1, 0.2, 0.4], [0.2, 0.25, 0.6]).pvalue)
