"""UBC "revisited" mAP (brown_phototour_revisited 0.3.0 protocol, docs/protocols.md §5) against
hand-computed cases, and ``evaluate ubc --metric`` on generated data in the original UBC layout."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from descbench import cli
from descbench.data import ubc
from descbench.errors import DescbenchError
from descbench.evaluate import revisited
from descbench.evaluate.revisited import PER_IMAGE_COLUMNS, revisited_map


def points(xs) -> np.ndarray:
    """1-D positions as 2-D float32 descriptors (distances are |x_i - x_j|)."""
    return np.stack([np.asarray(xs, dtype=np.float32), np.zeros(len(xs), np.float32)], axis=1)


# ------------------------------------------------------------------------------- hand-computed
def test_small_image_uses_its_first_patch_as_every_negative():
    # One image of 4 patches (<= 1000: no search), so n(a) = patch 0 for every anchor.
    #   patch: 0    1    2    3
    #   label: A    A    B    B
    #   x:     0    1    3    4.5
    # (0,1): d_ap 1,   d_an d(0,0) 0 -> wrong,   ratio 0/1   -> score 1
    # (1,0): d_ap 1,   d_an d(1,0) 1 -> correct, ratio 1     -> score 0
    # (2,3): d_ap 1.5, d_an d(2,0) 3 -> correct, ratio 1/2   -> score 1/2
    # (3,2): d_ap 1.5, d_an 4.5      -> correct, ratio 1/3   -> score 2/3
    # ranked: wrong, correct, correct, correct -> AP = (1/2 + 2/3 + 3/4) / 3 = 23/36
    value, table = revisited_map(points([0, 1, 3, 4.5]), [7, 7, 9, 9], [5, 5, 5, 5])
    assert value == pytest.approx(23 / 36, abs=1e-12)
    assert list(table.columns) == list(PER_IMAGE_COLUMNS)
    assert table.to_dict("records") == [{"image_id": 5, "n_patches": 4, "n_searched": 0, "n_pairs": 4,
                                         "n_correct": 3, "ap": pytest.approx(23 / 36, abs=1e-12)}]


def test_first_patch_is_the_first_of_its_image_in_patch_order_and_images_average():
    # The patches of the first test (image 5, AP 23/36) at odd positions, image 8 at even ones.
    # Image 8, in patch order: q0 = A@10, q1 = C@0, q2 = C@10.5, q3 = A@12; n(a) = q0 for all:
    #   (q0,q3): d_ap 2,    d_an 0  -> wrong,   score 1
    #   (q3,q0): d_ap 2,    d_an 2  -> correct, score 0
    #   (q1,q2): d_ap 10.5, d_an 10 -> wrong,   ratio 10/10.5 -> score 1/21
    #   (q2,q1): d_ap 10.5, d_an 0.5 -> wrong,  ratio 0.5/10.5 -> score 20/21
    # ranked: wrong, wrong, wrong, correct -> AP = 1/4
    x = np.array([10, 0, 0, 1, 10.5, 3, 12, 4.5])
    labels = np.array([1, 7, 2, 7, 2, 9, 1, 9])
    images = np.array([8, 5, 8, 5, 8, 5, 8, 5])
    value, table = revisited_map(points(x), labels, images)
    assert table["image_id"].tolist() == [5, 8]
    assert table["ap"].tolist() == pytest.approx([23 / 36, 1 / 4], abs=1e-12)
    assert value == pytest.approx((23 / 36 + 1 / 4) / 2, abs=1e-12)


def test_tied_ratios_form_one_threshold():
    # One image, n(a) = patch 0 (x 0, label A):
    #   patch 1 A@2; patches 2,3 B@4,6; patches 4,5 C@1,3
    #   (0,1): 2 vs 0 wrong, score 1      (1,0): 2 vs 2 correct, score 0
    #   (2,3): 2 vs 4 correct, score 1/2  (3,2): 2 vs 6 correct, score 2/3
    #   (4,5): 2 vs 1 wrong, score 1/2    (5,4): 2 vs 3 correct, score 1/3
    # thresholds: 1 (0/1), 2/3 (1/2), 1/2 with one correct and one wrong (2/4), 1/3 (3/5), 0 (4/6)
    # AP = (1/2 + 2/4 + 3/5 + 4/6) / 4 = 17/30. Ranking the tied correct pair first would give 73/120.
    value, _ = revisited_map(points([0, 2, 4, 6, 1, 3]), [0, 0, 1, 1, 2, 2], np.zeros(6, int))
    assert value == pytest.approx(17 / 30, abs=1e-12)


def test_group_ap_counts_a_tie_as_one_threshold():
    # scores 0.5 (wrong), 0.5, 0.5 (correct), 0.1 (correct): threshold 0.5 has 2 of 3 correct, recall 2/3,
    # then 3 of 4 at 0.1: AP = 2/3 * 2/3 + 1/3 * 3/4 = 25/36 (wrong-first order: 23/36, correct-first: 11/12)
    ap, n_correct = revisited._group_ap(np.zeros(4, np.int64), np.array([False, True, True, True]),
                                        np.array([0.5, 0.5, 0.5, 0.1]), 1)
    assert ap == pytest.approx([25 / 36], abs=1e-12) and n_correct.tolist() == [3]


def test_equal_descriptors_give_ratio_one_and_an_image_without_correct_pairs_ap_zero():
    # image 0: three equal descriptors, labels A A B, n(a) = patch 0: (0,1) and (1,0) are 0 vs 0 ->
    # correct (<=), 0/0 -> ratio 1, score 0 -> AP 1.
    # image 1: C@0 (its first patch), D@-5, D@20: (4,5) 25 vs 5 wrong, (5,4) 25 vs 20 wrong -> no correct
    # pair: AP 0 (scikit-learn >= 1.1).
    # image 2: one patch, no pair: left out of the mean -> (1 + 0) / 2
    x = [0, 0, 0, 0, -5, 20, 3]
    labels = [1, 1, 2, 3, 4, 4, 5]
    images = [0, 0, 0, 1, 1, 1, 2]
    value, table = revisited_map(points(x), labels, images)
    assert table["ap"].tolist()[:2] == [1.0, 0.0] and np.isnan(table["ap"].iloc[2])
    assert table["n_pairs"].tolist() == [2, 2, 0] and table["n_correct"].tolist() == [2, 0, 0]
    assert value == pytest.approx(0.5, abs=1e-12)


def large_image() -> tuple[np.ndarray, np.ndarray]:
    """1030 patches (> 1000: searched, 1024 = 128 * 8 anchors; patches 1024-1029 keep patch 0)."""
    x = np.zeros(1030)
    labels = np.arange(1030) + 100  # unique unless set below
    x[0] = 100                                  # patch 0, the negative of the unsearched anchors
    x[1:5], labels[1:5] = [0, 1, -0.5, 2.2], [1, 1, 2, 3]   # pair A (1, 2) near negatives 3 and 4
    x[5] = 50.5                                 # would be the hardest negative of the tail pair
    x[6:9], labels[6:9] = [5000, 5000.5, 5004], 4           # point C: nearest true negative 4,900 away
    x[9:1028] = -(1000 + 10 * np.arange(9, 1028))           # far, unique: no pairs, never nearest
    x[1028:], labels[1028:] = [50, 51], 5                   # tail pair B, not searched
    return x, labels


def test_large_image_searches_the_first_128_multiple_and_penalises_positives_by_1000():
    # Searched anchors, n(a) = argmin of d + 1000 [same point] + 1000 [itself]:
    #   1 -> 3 (0.5), 2 -> 4 (1.2): (1,2) 1 vs 0.5 wrong, score 1/2; (2,1) 1 vs 1.2 correct, score 1 - 1/1.2
    #   point C: every true negative is >= 4,900 away, so the penalised positives win:
    #   6 -> 7 (1000.5), 7 -> 6 (1000.5), 8 -> 7 (1003.5 < 1004)
    #   (6,7) 0.5 vs 0.5 correct, score 0; (6,8) 4 vs 0.5 wrong, score 7/8
    #   (7,6) 0.5 vs 0.5 correct, score 0; (7,8) 3.5 vs 0.5 wrong, score 6/7
    #   (8,6) 4 vs 3.5 wrong, score 1/8;   (8,7) 3.5 vs 3.5 correct, score 0
    # Tail anchors 1028, 1029 keep patch 0 (x 100) although patch 5 (x 50.5) is nearer:
    #   (1028,1029) 1 vs 50 correct, score 0.98; (1029,1028) 1 vs 49 correct, score 48/49
    # ranked: c c w w w c w [c c c tied at 0]; P = 6:
    # AP = (1 + 1 + 3/6 + 3 * 6/10) / 6 = 43/60
    x, labels = large_image()
    value, table = revisited_map(points(x), labels, np.zeros(1030, int))
    assert value == pytest.approx(43 / 60, abs=1e-12)
    assert table[["n_patches", "n_searched", "n_pairs", "n_correct"]].to_dict("records") == [
        {"n_patches": 1030, "n_searched": 1024, "n_pairs": 10, "n_correct": 6}]


def test_other_images_are_neither_candidates_nor_positives():
    # A second image holds a patch right next to patch 1 (x -0.1, which would be its hardest negative)
    # and a patch of point A (which would add pairs): the large image's AP stays 43/60.
    x, labels = large_image()
    x2, labels2 = np.r_[x, -0.1, 1.0, 7.0], np.r_[labels, 9999, 1, 9999]
    images = np.r_[np.zeros(1030, int), 1, 1, 1]
    # image 1: first patch 9999@-0.1; pair (1030, 1032): 7.1 vs 0 wrong, (1032, 1030): 7.1 vs 7.1 correct
    # -> ranked wrong (score 1), correct (score 0): AP 1/2
    value, table = revisited_map(points(x2), labels2, images)
    assert table["ap"].tolist() == pytest.approx([43 / 60, 1 / 2], abs=1e-12)
    assert table["n_pairs"].tolist() == [10, 2]
    assert value == pytest.approx((43 / 60 + 1 / 2) / 2, abs=1e-12)


def test_result_does_not_depend_on_the_block_size(monkeypatch):
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(700), 2)
    desc = rng.normal(size=(1400, 16)).astype(np.float32)
    desc[1::2] = desc[::2] + 0.7 * rng.normal(size=(700, 16))
    perm = rng.permutation(1400)
    first = revisited_map(desc[perm], labels[perm], np.zeros(1400, int))[0]
    monkeypatch.setattr(revisited, "_BLOCK_ELEMENTS", 3000)
    monkeypatch.setattr(revisited, "_PAIR_CHUNK", 17)
    assert revisited_map(desc[perm], labels[perm], np.zeros(1400, int))[0] == first


def test_no_pairs_at_all_and_mismatched_lengths_are_clear_errors():
    with pytest.raises(DescbenchError, match="no image has two patches of one 3D point"):
        revisited_map(points([0, 1]), [1, 1], [0, 1])
    with pytest.raises(DescbenchError, match="one of each per patch"):
        revisited_map(points([0, 1]), [1, 1], [0])


# ------------------------------------------------------------------- real layout and the CLI
def write_raw_set(raw, labels, image_ids, rng) -> np.ndarray:
    """A UBC set in the original layout (BMP tiles, info.txt, interest.txt with float columns, one m50 file);
    returns the patches."""
    raw.mkdir(parents=True)
    n = len(labels)
    base = rng.integers(0, 256, (labels.max() + 1, 8, 8)).astype(np.float64)
    patches = np.clip(np.kron(base[labels], np.ones((8, 8))) + rng.normal(0, 60, (n, 64, 64)), 0, 255
                      ).astype(np.uint8)
    padded = np.zeros((-(-n // 256) * 256, 64, 64), np.uint8)
    padded[:n] = patches
    for t in range(len(padded) // 256):
        tile = padded[256 * t:256 * (t + 1)].reshape(16, 16, 64, 64).transpose(0, 2, 1, 3).reshape(1024, 1024)
        Image.fromarray(tile, mode="L").save(raw / f"patches{t:04d}.bmp")
    (raw / "info.txt").write_text("".join(f"{p} 0\n" for p in labels))
    (raw / "interest.txt").write_text("".join(
        f"{i} {rng.uniform(0, 900):.3f} {rng.uniform(0, 700):.3f} {rng.uniform(-3, 3):.5f} {rng.uniform(0, 3):.4f}\n"
        for i in image_ids))
    same = [(i, i + 1) for i in range(n - 1) if labels[i] == labels[i + 1]][:20]
    other = [(i, i + 7) for i in range(n - 7) if labels[i] != labels[i + 7]][:20]
    (raw / "m50_40_40_0.txt").write_text("".join(f"{i} {labels[i]} 0 {j} {labels[j]} 0 0\n" for i, j in same + other))
    return patches


@pytest.fixture
def data_root(tmp_path):
    rng = np.random.default_rng(11)
    labels = np.repeat(np.arange(120), rng.integers(2, 4, 120))
    images = np.array([13, 4, 27])[rng.integers(0, 3, 120)][labels]  # a point's patches share its image
    root = tmp_path / "data"
    patches = write_raw_set(ubc.raw_set_dir(root, "toy"), labels, images, rng)
    ubc.prepare_ubc(root, "toy")
    desc = patches.reshape(len(patches), 8, 8, 8, 8).mean(axis=(2, 4)).reshape(len(patches), -1)
    desc = (desc - desc.mean(1, keepdims=True)).astype(np.float32)
    np.save(tmp_path / "toy_desc.npy", desc)
    return root, labels, images, desc


def test_image_index_reader_reads_the_first_column_of_the_real_layout(data_root):
    root, labels, images, _ = data_root
    got = revisited.load_image_index(root, "toy", len(labels))
    assert got.dtype == np.int64 and got.tolist() == images.tolist()
    assert revisited.load_image_index(root, "absent", 3) is None


@pytest.mark.parametrize("text, match", [
    ("1 2.0 3.0 0.1 1.0\n2.5 2.0 3.0 0.1 1.0\n", r"line 2: '2\.5' is not an integer image id"),
    ("1 2.0 3.0 0.1 1.0\n", r"has 1 lines but the set has 2 patches"),
    ("", r"has 0 lines but the set has 2 patches"),
])
def test_image_index_reader_names_the_bad_line(tmp_path, text, match):
    path = tmp_path / "interest.txt"
    path.write_text(text)
    with pytest.raises(DescbenchError, match=match) as err:
        revisited.read_image_index(path, 2, "download it again")
    assert str(path) in str(err.value) and "download it again" in str(err.value)


def test_cli_default_scores_fpr95_and_the_revisited_map(data_root, tmp_path, capsys):
    root, labels, images, desc = data_root
    out = tmp_path / "both"
    assert cli.main(["evaluate", "ubc", "--descriptors", str(tmp_path / "toy_desc.npy"), "--data", str(root),
                     "--test-set", "toy", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "FPR95 = " in printed and "revisited mAP = " in printed
    assert printed.index("FPR95") < printed.index("revisited mAP")
    summary = json.loads((out / "summary.json").read_text())
    expected, per_image = revisited_map(desc, labels, images)
    assert summary["metrics"] == ["fpr95", "revisited-map"]
    assert summary["revisited_map"] == pytest.approx(expected, abs=1e-15)
    assert summary["n_pairs"] == 40 and 0 <= summary["fpr95"] <= 1 and summary["convention"] == "hardnet"
    assert summary["revisited"] == {"protocol": "brown_phototour_revisited 0.3.0", "n_images": 3,
                                    "n_images_without_pairs": 0, "n_pairs": int(per_image["n_pairs"].sum()),
                                    "n_correct": int(per_image["n_correct"].sum())}
    assert sorted(p.name for p in out.iterdir()) == ["pairs.csv", "revisited.csv", "summary.json"]
    table = pd.read_csv(out / "revisited.csv")
    assert list(table.columns) == list(PER_IMAGE_COLUMNS) and table["image_id"].tolist() == [4, 13, 27]
    assert table["ap"].mean() == pytest.approx(expected, abs=1e-12)

    # one metric each: only its files and fields; the result folder is replaced as a whole
    assert cli.main(["evaluate", "ubc", "--descriptors", str(tmp_path / "toy_desc.npy"), "--data", str(root),
                     "--test-set", "toy", "--out", str(out), "--metric", "fpr95"]) == 0
    assert "revisited" not in capsys.readouterr().out
    only_fpr = json.loads((out / "summary.json").read_text())
    assert only_fpr["fpr95"] == summary["fpr95"] and only_fpr["revisited_map"] is None
    assert "revisited_skipped" not in only_fpr
    assert sorted(p.name for p in out.iterdir()) == ["pairs.csv", "summary.json"]
    assert cli.main(["evaluate", "ubc", "--descriptors", str(tmp_path / "toy_desc.npy"), "--data", str(root),
                     "--test-set", "toy", "--out", str(out), "--metric", "revisited-map"]) == 0
    only_map = json.loads((out / "summary.json").read_text())
    assert only_map["revisited_map"] == summary["revisited_map"] and "fpr95" not in only_map
    assert sorted(p.name for p in out.iterdir()) == ["revisited.csv", "summary.json"]


def test_cli_describes_every_patch_for_the_revisited_map(data_root, tmp_path, capsys):
    root, labels, images, _ = data_root
    out = tmp_path / "raw"
    assert cli.main(["evaluate", "ubc", "--descriptor", "raw", "--data", str(root), "--test-set", "toy",
                     "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["revisited"]["n_images"] == 3 and 0 < summary["revisited_map"] <= 1
    assert pd.read_csv(out / "revisited.csv")["n_patches"].sum() == len(labels)


def test_cli_without_an_image_index(data_root, tmp_path, capsys):
    root, *_ = data_root
    interest = ubc.raw_set_dir(root, "toy") / "interest.txt"
    interest.unlink()
    desc = str(tmp_path / "toy_desc.npy")
    out = tmp_path / "fpr_only"
    assert cli.main(["evaluate", "ubc", "--descriptors", desc, "--data", str(root), "--test-set", "toy",
                     "--out", str(out)]) == 0
    assert f"revisited mAP not computed: no image index ({interest} is missing)" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"] == ["fpr95"] and summary["revisited_map"] is None
    assert summary["revisited_skipped"] == f"no image index ({interest} is missing)"
    assert cli.main(["evaluate", "ubc", "--descriptors", desc, "--data", str(root), "--test-set", "toy",
                     "--out", str(tmp_path / "x"), "--metric", "revisited-map"]) == 2
    err = capsys.readouterr().err
    assert f"needs the image index {interest}" in err and "Traceback" not in err
    assert cli.main(["evaluate", "ubc", "--descriptors", desc, "--data", str(root), "--test-set", "toy",
                     "--out", str(tmp_path / "x"), "--metric", "fpr95,map"]) == 2
    assert "use a comma list of fpr95, revisited-map" in capsys.readouterr().err


def test_make_mini_writes_each_patch_photo_as_its_reference_image(tmp_path):
    """make-mini's interest.txt gives every patch its photo, so the 3D points' patches share one image and
    `evaluate ubc` scores the revisited mAP on the mini sets too."""
    from descbench.data import mini

    generated = mini.make_ubc_set("mini_liberty", seed=0, part=0, scale=0.3)
    set_dir = tmp_path / "raw" / "ubc" / "mini_liberty"
    set_dir.mkdir(parents=True)
    mini.write_ubc_raw(set_dir, generated["patches"], generated["labels"], generated["m50"], generated["interest"])
    ids = revisited.read_image_index(set_dir / "interest.txt", len(generated["labels"]), "regenerate it")
    assert len(np.unique(ids)) == len(mini.UBC_SCENES["mini_liberty"])
    for label in np.unique(generated["labels"]):
        assert len(np.unique(ids[generated["labels"] == label])) == 1
