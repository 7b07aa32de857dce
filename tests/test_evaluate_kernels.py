"""The compiled kernels equal the numpy/scipy operations they replace, bit for bit, ties included."""

import numpy as np
import pytest
from scipy.spatial.distance import cityblock, euclidean

from descbench.evaluate import kernels


def float32_distances(rng, n):
    """Non-negative float64 values with many exact ties and zeros, as verification distances are."""
    values = rng.choice(rng.random(max(1, n // 5)).astype(np.float32), size=n).astype(np.float64)
    values[rng.random(n) < 0.05] = 0.0
    return values


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1000, 40_000])
def test_radix_sort_is_np_sort(n):
    rng = np.random.default_rng(n)
    for values in (float32_distances(rng, n), rng.random(n) * 10.0 ** rng.uniform(-300, 300, n),
                   np.full(n, 1.5)):
        np.testing.assert_array_equal(kernels.sort_nonnegative(values), np.sort(values))


def test_pairs_sorted_by_first_row_as_a_stable_argsort():
    rng = np.random.default_rng(1)
    p1, p2 = rng.integers(0, 50, 3000), rng.integers(0, 50, 3000)
    t1, t2 = rng.integers(0, 6, 3000), rng.integers(0, 6, 3000)
    order, s1, u1, s2, u2 = kernels.sort_pairs(p1, t1, p2, t2, 50)
    expected = np.argsort(p1, kind="stable")
    np.testing.assert_array_equal(order, expected)
    for got, column in zip((s1, u1, s2, u2), (p1, t1, p2, t2)):
        np.testing.assert_array_equal(got, column[expected])


@pytest.mark.parametrize("positives_first", [True, False])
def test_negatives_before_is_searchsorted_with_ties(positives_first):
    rng = np.random.default_rng(2)
    negatives = np.sort(float32_distances(rng, 5000))
    positives = np.sort(np.concatenate([float32_distances(rng, 700), negatives[::50], [0.0, 2.0]]))
    expected = np.searchsorted(negatives, positives, side="left" if positives_first else "right")
    np.testing.assert_array_equal(kernels.negatives_before(negatives, positives, positives_first), expected)


@pytest.mark.parametrize("dim", [1, 3, 8, 9, 128, 129, 257, 1000])
def test_verification_distances_are_scipys_per_pair_functions(dim):
    """The official verification calls scipy's euclidean / cityblock on float32 descriptors: L1 is
    numpy's pairwise float32 sum (blocks of 128, halves above), L2 a float32-rounded norm."""
    rng = np.random.default_rng(dim)
    n = 300
    data = (rng.normal(size=(3, n, dim)) * 10.0 ** rng.uniform(-2, 2, size=(3, n, 1))).astype(np.float32)
    data[2, :10] = data[1, :10]  # zero distances
    p1, p2 = rng.integers(0, n, n), rng.integers(0, n, n)
    p2[:10] = p1[:10] = np.arange(10)
    t1, t2 = np.zeros(n, np.int64), np.ones(n, np.int64)  # image 0 against image 1 (level base 1)
    out = np.empty((1, n))
    for metric, official in ((0, euclidean), (2, cityblock)):
        kernels.verification_distances(data, p1, t1, p2, t2, np.array([1]), metric, 0, n, out)
        expected = [float(official(data[0, a], data[2, b])) for a, b in zip(p1, p2)]
        np.testing.assert_array_equal(out[0], expected)


def test_verification_distances_of_every_level_and_the_ref_image():
    rng = np.random.default_rng(4)
    data = rng.normal(size=(16, 20, 5)).astype(np.float32)
    p1, p2 = rng.integers(0, 20, 50), rng.integers(0, 20, 50)
    t1, t2 = rng.integers(0, 6, 50), rng.integers(0, 6, 50)
    bases = np.array([0, 5, 10])
    out = np.empty((3, 50))
    kernels.verification_distances(data, p1, t1, p2, t2, bases, 0, 0, 50, out)
    for level, base in enumerate(bases):
        image = lambda t: np.where(t == 0, 0, base + t)
        expected = [euclidean(data[i, a], data[j, b]) for i, a, j, b in zip(image(t1), p1, image(t2), p2)]
        np.testing.assert_array_equal(out[level], expected)
