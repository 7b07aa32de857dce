"""``descbench evaluate ubc --descriptors FILE``: precomputed descriptors of a UBC set, scored from the CLI."""

import json

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from descbench import cli
from descbench.data import mini, ubc
from descbench.evaluate.fpr95 import fpr95

SET = "mini_files"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A tiny prepared UBC set: 40 points x 3 views, 60 matching and 60 non-matching pairs."""
    root = tmp_path_factory.mktemp("ubc")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(40), 3)
    patches = rng.integers(0, 256, size=(len(labels), ubc.PATCH_SIZE, ubc.PATCH_SIZE), dtype=np.uint8)
    pairs = mini._ubc_pairs(labels, 60, rng)
    raw = ubc.raw_set_dir(root, SET)
    raw.mkdir(parents=True)
    interest = np.zeros((len(labels), 5))  # one reference image
    mini.write_ubc_raw(raw, patches, labels, {"m50_120_120_0.txt": mini._m50_rows(pairs, labels)}, interest)
    ubc.prepare_ubc(root, SET)
    # descriptors: one centre per point, views near it, so matches are mostly closer than non-matches
    centres = rng.normal(size=(40, 8))
    descriptors = (centres[labels] + 0.6 * rng.normal(size=(len(labels), 8))).astype(np.float32)
    return root, descriptors, ubc.load_ubc(root, SET)


@pytest.mark.parametrize("fmt", ["npy", "csv"])
def test_descriptor_file_scores_fpr95_from_the_cli(prepared, tmp_path, fmt):
    root, descriptors, ubc_set = prepared
    path = tmp_path / f"desc.{fmt}"
    if fmt == "npy":
        np.save(path, descriptors)
    else:
        np.savetxt(path, descriptors, delimiter=";", fmt="%.9g")
    out = tmp_path / "scores"
    assert cli.main(["evaluate", "ubc", "--descriptors", str(path), "--data", str(root),
                     "--test-set", SET, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    pairs = np.asarray(ubc_set.pairs)
    d = cdist(descriptors.astype(np.float64), descriptors.astype(np.float64))[pairs[:, 0], pairs[:, 1]]
    expected = fpr95(d, pairs[:, 2], "hardnet")
    assert summary["n_pairs"] == len(pairs) == 120
    assert summary["fpr95"] == pytest.approx(expected, abs=1e-12)
    assert 0 < expected < 0.5  # the descriptors separate matches from non-matches, imperfectly


def test_descriptor_file_with_the_wrong_row_count_is_a_clear_error(prepared, tmp_path, capsys):
    root, descriptors, _ = prepared
    path = tmp_path / "short.npy"
    np.save(path, descriptors[:-1])
    assert cli.main(["evaluate", "ubc", "--descriptors", str(path), "--data", str(root),
                     "--test-set", SET, "--out", str(tmp_path / "scores")]) != 0
    err = capsys.readouterr().err
    assert f"has {len(descriptors) - 1} rows but UBC set {SET} has {len(descriptors)} patches" in err
    assert not (tmp_path / "scores").exists()
