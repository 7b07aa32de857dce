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
    group = stats.UBCGroup(point1, point2, is_match, [dist_a, dist_b])
    fprs = stats.ubc_bootstrap(group, 400, np.random.default_rng(1))
    boot = fprs[:, 0] - fprs[:, 1]
    lo, hi = stats.percentile_interval(boot, 0.05)
    observed = fpr95(dist_a, is_match) - fpr95(dist_b, is_match)
    assert lo < observed < hi
    assert lo < true_diff < hi
    assert lo > 0 and stats.bootstrap_pvalue(boot, observed) == pytest.approx(1 / 401)  # none crosses 0


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


def test_bootstrap_pvalue_counts_null_centred_resamples():
    # observed 1.0; resamples centred on it: |d - 1| >= 1 for 0.0, -0.5 and 2.5 -> k = 3 of B = 6
    samples = np.array([0.0, 0.5, 1.5, -0.5, 2.5, 1.0])
    assert stats.bootstrap_pvalue(samples, 1.0) == pytest.approx((3 + 1) / (6 + 1))
    assert stats.bootstrap_pvalue(np.array([0.9, 1.1, 1.2]), 1.0) == pytest.approx(1 / 4)  # the floor
    assert stats.bootstrap_pvalue(samples, 0.0) == pytest.approx(1.0)  # no observed difference
    assert stats.bootstrap_min_p(2000) == pytest.approx(1 / 2001)


def test_wilcoxon_hand_case_and_its_floor():
    # 8 pairs, every difference positive and distinct: the exact two-sided p is 2/2^8
    a = np.array([0.50, 0.61, 0.42, 0.70, 0.33, 0.58, 0.47, 0.66])
    b = a - np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08])
    stat, p = stats.wilcoxon_paired(a, b)
    assert stat == 0.0 and p == pytest.approx(2 / 2**8)
    assert p == pytest.approx(sps.wilcoxon(a, b, method="exact").pvalue)
    assert stats.wilcoxon_min_p(8) == pytest.approx(p)
    # one difference against the others: W = rank 1, p = 2 * P(W <= 1) = 2 * 2/256
    b2 = b.copy()
    b2[0] = a[0] + 0.01
    assert stats.wilcoxon_paired(a, b2) == pytest.approx((1.0, 4 / 256))


def test_holm_floor_says_when_no_test_can_pass():
    # 22 Wilcoxon tests over 8 sequences (the mini HPatches table): at least 22 * 2/256 = 0.17
    floors = stats.holm_floor([stats.wilcoxon_min_p(8)] * 22)
    assert floors == pytest.approx([22 * 2 / 256] * 22)
    # 4 bootstrap (1/2001) and 8 Wilcoxon tests: the bootstraps can reach 4/2001, the Wilcoxon ones
    # no lower than 8 * 2/256 = 0.0625 (the 8 of them share the floor), whatever the bootstrap gives
    floors = stats.holm_floor([1 / 2001] * 4 + [2 / 256] * 8)
    assert floors[:4] == pytest.approx(12 / 2001) and floors[4:] == pytest.approx(8 * 2 / 256)
    # t-tests have no floor
    assert stats.holm_floor([0.0, 0.0]) == pytest.approx([0.0, 0.0])


def test_holm_floor_is_a_lower_bound_of_holm():
    rng = np.random.default_rng(7)
    floors = np.array([1 / 201] * 5 + [2 / 256] * 6)
    bound = stats.holm_floor(floors)
    for _ in range(200):
        p = floors * (1 + rng.exponential(2.0, floors.size))  # any p at or above each floor
        assert np.all(stats.holm(p) >= bound - 1e-15)


def test_paired_t_needs_two_seeds():
    assert np.isnan(stats.paired_t([0.1], [0.2])[1])
    stat, p = stats.paired_t([0.1, 0.2, 0.4], [0.2, 0.25, 0.6])
    assert p == pytest.approx(sps.ttest_rel([0.1, 0.2, 0.4], [0.2, 0.25, 0.6]).pvalue)


def test_caption_derives_whether_holm_can_reach_alpha():
    from descbench.report.build import Comparison, TestLog, reach_note

    def family(n_tests: int, n_sequences: int):
        log = TestLog()
        wilcoxon = Comparison("Wilcoxon signed-rank over sequences (two-sided)", "Wilcoxon", 0.0, 0.2,
                              stats.wilcoxon_min_p(n_sequences), n_sequences, "", "")
        for k in range(n_tests):
            log.add("hpatches", f"m{k} vs ref", "matching mAP", wilcoxon)
        return log.family("hpatches")

    # the mini preset: 8 sequences, 11 methods x 2 tasks; 22 x 2/256 = 0.17 >= 0.05
    note = reach_note(family(22, 8), 0.05, "HPatches")
    assert "2/2^8 = 0.0078" in note and "22 comparisons" in note and "at least 0.17" in note
    assert "no HPatches difference can reach p < 0.05" in note
    # 4 comparisons over 8 sequences (4 x 2/256 = 0.031), or 22 over 116: reachable
    assert "can reach p < 0.05 (smallest reachable adjusted p 0.031)" in reach_note(family(4, 8), 0.05, "x")
    assert "no " not in reach_note(family(22, 116), 0.05, "HPatches")
