"""FPR95 conventions against hand-computed cases (docs/protocols.md §3.3)."""

import numpy as np
import pytest

from descbench.errors import DescbenchError
from descbench.evaluate.fpr95 import fpr95

# 20 matches at distances 1..20, 5 non-matches; 0.95 * 20 = 19 -> HardNet's threshold match is the
# 19th (distance 19), HyNet's the next one (distance 20).
POS = np.arange(1.0, 21.0)
NEG = np.array([0.5, 10.5, 19.0, 19.5, 25.0])
D = np.concatenate([NEG, POS])
Y = np.concatenate([np.zeros(5, int), np.ones(20, int)])


def test_hardnet_counts_non_matches_up_to_the_threshold_match_including_ties():
    # 0.5, 10.5 and the 19.0 tied with the 19th match are accepted: 3 of 5
    assert fpr95(D, Y) == pytest.approx(3 / 5)


def test_hardnet_without_ties_is_the_strict_count():
    d = D.copy()
    d[2] = 19.25  # move the tie just past the threshold
    assert fpr95(d, Y, "hardnet") == pytest.approx(2 / 5)


def test_hardnet_rounds_the_recall_count_up():
    # P = 10: 0.95 * 10 = 9.5 -> the 10th match (distance 10) is the threshold
    pos = np.arange(1.0, 11.0)
    neg = np.array([9.9, 10.0, 10.1])
    d = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(10, int), np.zeros(3, int)])
    assert fpr95(d, y) == pytest.approx(2 / 3)


def test_hynet_uses_the_next_match_and_an_inclusive_threshold():
    assert fpr95(D, Y, "hynet") == pytest.approx(4 / 5)


def test_order_of_pairs_does_not_matter():
    perm = np.random.default_rng(0).permutation(len(D))
    assert fpr95(D[perm], Y[perm]) == fpr95(D, Y)
    assert fpr95(D[perm], Y[perm].astype(bool)) == fpr95(D, Y)


@pytest.mark.parametrize("d, y, match", [
    ([1.0, 2.0], [0, 0], "no matching pairs"),
    ([1.0, 2.0], [1, 1], "no non-matching pairs"),
    ([np.nan, 2.0], [0, 1], "NaN"),
    ([np.inf, 2.0], [0, 1], "NaN or infinite"),
    ([1.0, 2.0], [0, 2], "labels must be 0"),
    ([1.0, 2.0, 3.0], [0, 1], "labels"),
])
def test_bad_input_is_a_clear_error(d, y, match):
    with pytest.raises(DescbenchError, match=match):
        fpr95(d, y)


def test_hynet_needs_more_than_one_match_and_unknown_convention_fails():
    with pytest.raises(DescbenchError, match="hynet convention"):
        fpr95([1.0, 2.0], [1, 0], "hynet")
    with pytest.raises(DescbenchError, match="unknown convention"):
        fpr95(D, Y, "matchnet")
