"""HPatches sequences image matching: the protocol on hand-built cases, patches cut at known frames, the
reader/preparer on generated sequences in the real layout, the download from a local archive, the CLI."""

from __future__ import annotations

import io
import json
import math
import shutil
import tarfile

import cv2
import numpy as np
import pytest

from descbench import cli
from descbench.data import hpatches_sequences as hs
from descbench.data import sources
from descbench.errors import DescbenchError
from descbench.evaluate import sequences as ev
from descbench.evaluate.extract import make_extractor


def one_hot(n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)


def keypoints(points: np.ndarray) -> np.ndarray:
    """Rows (x, y, size, angle, response) for bare points."""
    out = np.zeros((len(points), 5))
    out[:, :2] = points
    out[:, 2] = 4.0
    return out


# ----------------------------------------------------------------------------------------- protocol
def test_identity_and_perfect_descriptor_give_mma_one_at_every_threshold():
    rng = np.random.default_rng(0)
    points = rng.uniform(10, 300, (40, 2))
    row = ev.evaluate_pair(keypoints(points), one_hot(40), keypoints(points), one_hot(40), np.eye(3), (240, 320))
    assert row["n_matches"] == 40
    assert [row[f"mma_{t}"] for t in ev.MMA_THRESHOLDS] == [1.0] * 10
    assert row["corner_error"] < 1e-6


def test_known_shift_moves_mma_as_computed_by_hand():
    # H maps image 1 by (+3, +4); the image-k keypoints sit a further e to the right: reprojection errors = e
    H = np.array([[1.0, 0, 3], [0, 1, 4], [0, 0, 1]])
    extra = np.array([0.0, 0.5, 1.5, 2.5, 4.0, 12.0])
    points = np.array([[20.0 + 30 * i, 50.0 + 10 * i] for i in range(len(extra))])
    moved = points + [3, 4] + np.stack([extra, np.zeros_like(extra)], axis=1)
    row = ev.evaluate_pair(keypoints(points), one_hot(6), keypoints(moved), one_hot(6), H, (240, 320))
    by_hand = {1: 2 / 6, 2: 3 / 6, 3: 4 / 6, 4: 5 / 6, 5: 5 / 6, 6: 5 / 6, 7: 5 / 6, 8: 5 / 6, 9: 5 / 6, 10: 5 / 6}
    assert {t: row[f"mma_{t}"] for t in ev.MMA_THRESHOLDS} == pytest.approx(by_hand, abs=1e-12)
    # the same pair scored against the identity: every error grows by the 5 px of the (3, 4) shift
    errors = ev.reprojection_errors(points, moved, np.eye(3))
    assert errors == pytest.approx(np.hypot(3 + extra, 4))


def test_mutual_nearest_neighbours_drop_one_sided_matches():
    a = np.array([[0.0, 0], [1, 0], [10, 0]], dtype=np.float32)
    b = np.array([[0.1, 0], [0.9, 0], [0.95, 0]], dtype=np.float32)
    # a0 <-> b0 and a1 <-> b2 are mutual; b1 -> a1 and a2 -> b2 are one-sided
    assert ev.mutual_nearest_neighbours(a, b).tolist() == [[0, 0], [1, 2]]
    assert ev.mutual_nearest_neighbours(a[:0], b).shape == (0, 2)


def test_pair_without_matches_scores_zero_and_no_homography():
    row = ev.evaluate_pair(keypoints(np.zeros((0, 2))), np.zeros((0, 8), np.float32),
                           keypoints(np.ones((5, 2))), one_hot(5)[:, :5], np.eye(3), (100, 100))
    assert row["n_matches"] == 0 and row["mma_10"] == 0.0 and math.isinf(row["corner_error"])


def test_corner_error_of_a_wrong_ground_truth_is_its_shift():
    rng = np.random.default_rng(1)
    points = rng.uniform(0, 300, (30, 2))
    H = np.array([[1.1, 0.05, 7], [-0.02, 0.95, -3], [1e-4, 2e-4, 1]])
    moved = ev.project(points, H)
    assert ev.corner_error(points, moved, H, (240, 320)) < 1e-3
    shifted = H.copy()
    shifted[:2] += shifted[2] * np.array([[3.0], [4.0]])  # ground truth moved by (3, 4) after H
    assert ev.corner_error(points, moved, shifted, (240, 320)) == pytest.approx(5.0, abs=1e-3)
    assert math.isinf(ev.corner_error(points[:3], moved[:3], H, (240, 320)))


def test_detect_keeps_the_strongest_in_a_fixed_order():
    image = cv2.resize(cv2.cvtColor(_photo(), cv2.COLOR_RGB2GRAY), (200, 150))
    every = ev.detect(image, 100_000)
    top = ev.detect(image, 20)
    assert len(top) == 20 and np.array_equal(top, every[:20])
    assert np.all(np.diff(every[:, 4]) <= 0)  # by decreasing response


def _photo() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def test_patches_follow_position_scale_and_orientation():
    ramp = np.tile(np.arange(256, dtype=np.uint8), (256, 1))  # value = x
    side = 33  # odd: the patch centre is a pixel, so every sample lands on a pixel of the ramp
    size = side / ev.MAGNIFICATION  # one image pixel per patch pixel
    c = (side - 1) // 2
    upright, turned, doubled = ev.cut_patches(ramp, np.array([[100.0, 120, size, 0.0], [100, 120, size, 90],
                                                              [100, 120, 2 * size, 0]]), side)
    u = np.arange(side)
    assert np.array_equal(upright, np.tile(100 + u - c, (side, 1)))  # +u along +x
    assert np.array_equal(turned, np.tile((100 - (u - c))[:, None], (1, side)))  # angle 90: +u along +y
    assert abs(int(doubled[c, c]) - 100) <= 1 and abs(int(doubled[c, c + 5]) - 110) <= 1  # 2 px per patch px


def test_patches_are_invariant_to_rotating_and_scaling_the_image():
    image = cv2.resize(cv2.cvtColor(_photo(), cv2.COLOR_RGB2GRAY), (400, 400))
    M = cv2.getRotationMatrix2D((200, 200), 30.0, 0.7)
    rotated = cv2.warpAffine(image, M, (400, 400))
    frames = np.array([[150.0, 180, 12, 20], [260, 210, 16, 200]])
    moved = frames.copy()
    moved[:, :2] = frames[:, :2] @ M[:, :2].T + M[:, 2]
    moved[:, 2] *= 0.7
    moved[:, 3] -= 30.0  # OpenCV's positive rotation turns directions by -30 degrees in image coordinates
    a = ev.cut_patches(image, frames, 32).astype(float)
    b = ev.cut_patches(rotated, moved, 32).astype(float)
    assert np.abs(a - b).mean() < 6.0  # bilinear resampling differs a little, content is the same
    assert np.abs(a - np.roll(b, 1, axis=0)).mean() > 20.0


# ------------------------------------------------------------------------------------------- readers
@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """Generated mini sequences in the real layout, under DATA/raw/hpatches-sequences-release/."""
    data = tmp_path_factory.mktemp("data")
    folder = hs.raw_dir(data)
    folder.mkdir(parents=True)
    record = hs.make_mini_sequences(folder, seed=0, first_part=7)
    return data, record


def test_generated_sequences_have_the_real_layout(release):
    data, record = release
    folder = hs.raw_dir(data)
    assert sorted(p.name for p in folder.iterdir()) == sorted(hs.MINI_SCENES) == sorted(record)
    seq = folder / "v_astronaut"
    assert sorted(p.name for p in seq.iterdir()) == sorted(hs.IMAGE_NAMES + hs.HOMOGRAPHY_NAMES)
    assert (seq / "1.ppm").read_bytes()[:2] == b"P6"  # colour PPM, as the real release
    assert hs.validate_release(folder, 4, 2) == "4 sequences (2 i_, 2 v_) x 6 images + 5 homographies"
    with pytest.raises(DescbenchError, match="4 sequence folders, expected 116"):
        hs.validate_release(folder, 116, 57)
    with pytest.raises(DescbenchError, match=r"^HPatches sequences: 2 i_ sequences, expected 3$"):
        hs.validate_release(folder, 4, 3)


def test_incomplete_release_names_the_missing_images_and_homographies(release, tmp_path):
    data, _ = release
    copy = tmp_path / "release"
    shutil.copytree(hs.raw_dir(data), copy)
    (copy / "v_immuno" / "3.ppm").unlink()
    (copy / "v_immuno" / "H_1_5").unlink()
    with pytest.raises(DescbenchError, match=r"^HPatches sequences: v_immuno lacks 3\.ppm, H_1_5$"):
        hs.validate_release(copy, 4, 2)


def test_generated_homographies_map_image_1_onto_image_k(release):
    data, _ = release
    seq = hs.raw_dir(data) / "v_immuno"
    one = hs.read_image(seq / "1.ppm").astype(float)
    for k in (2, 6):
        H = hs.read_homography(seq / f"H_1_{k}")
        assert not np.allclose(H, np.eye(3))
        warped = cv2.warpPerspective(one, H, one.shape[::-1])
        inside = cv2.warpPerspective(np.ones_like(one), H, one.shape[::-1]) > 0.999
        target = hs.read_image(seq / f"{k}.ppm").astype(float)
        ncc = np.corrcoef(warped[inside], target[inside])[0, 1]
        assert ncc > 0.9, (k, ncc)
    for k in range(2, 7):
        assert np.array_equal(hs.read_homography(hs.raw_dir(data) / "i_coffee" / f"H_1_{k}"), np.eye(3))


def test_prepare_and_load_round_trip_and_subsets(release, tmp_path):
    data, _ = release
    meta = hs.prepare_sequences(data)
    assert (meta["n_sequences"], meta["n_illumination"], meta["n_viewpoint"]) == (4, 2, 2)
    loaded = hs.load_sequences(data, "full")
    assert [s.name for s in loaded] == sorted(hs.MINI_SCENES)
    seq = loaded[-1]
    raw = hs.raw_dir(data) / seq.name
    assert np.array_equal(seq.images[3], cv2.imread(str(raw / "4.ppm"), cv2.IMREAD_GRAYSCALE))
    assert np.allclose(seq.homographies[4], np.loadtxt(raw / "H_1_6"), rtol=0, atol=0)
    assert seq.category == "v" and meta["image_shapes"][seq.name][0] == [240, 320]
    # a D2-Net-excluded name is in the full set only
    assert hs.select(["i_dc", "i_coffee", "v_talent"], "d2net") == ["i_coffee"]
    assert hs.select(["i_dc", "i_coffee"], "full") == ["i_dc", "i_coffee"]
    assert len(hs.D2NET_EXCLUDED) == 8 and sum(n.startswith("i_") for n in hs.D2NET_EXCLUDED) == 5
    with pytest.raises(DescbenchError, match="unknown subset"):
        hs.select([], "tiny")


def test_bad_raw_files_are_named(tmp_path):
    folder = hs.raw_dir(tmp_path) / "v_x"
    folder.mkdir(parents=True)
    with pytest.raises(DescbenchError, match="lacks 1.ppm"):
        hs.prepare_sequences(tmp_path)
    (folder / "H_1_2").write_text("1 0 0\n0 1 0\n")
    with pytest.raises(DescbenchError, match=r"H_1_2 holds 6 values"):
        hs.read_homography(folder / "H_1_2")
    (folder / "H_1_2").write_text("a b c\n")
    with pytest.raises(DescbenchError, match="not a text file of 3x3 numbers"):
        hs.read_homography(folder / "H_1_2")
    (folder / "1.ppm").write_bytes(b"P6 not an image")
    with pytest.raises(DescbenchError, match="not a readable image"):
        hs.read_image(folder / "1.ppm")
    with pytest.raises(DescbenchError, match="run `descbench prepare hpatches-sequences"):
        hs.load_sequences(tmp_path / "nothing")


def test_download_from_a_local_archive_without_network(release, tmp_path):
    data, _ = release
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(hs.raw_dir(data), arcname="hpatches-sequences-release")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "hpatches-sequences-release.tar.gz").write_bytes(archive.getvalue())
    source = sources.HPatchesSequencesSource(sources.HPATCHES_SEQUENCES.archive, n_sequences=4, n_illumination=2)
    result = hs.download_sequences(source, tmp_path / "data", from_dir=mine)
    assert result.summary.startswith("4 sequences (2 i_, 2 v_)")
    assert not result.files[0].pinned  # no checksum is published: the SHA-256 is recorded
    assert (hs.raw_dir(tmp_path / "data") / "i_chelsea" / "H_1_6").is_file()
    assert hs.download_sequences(source, tmp_path / "data", from_dir=mine).reused


# ------------------------------------------------------------------------------------ whole evaluation
class _Same:
    """A sequence whose 6 images are image 1 of another, with identity homographies."""

    def __init__(self, seq):
        self.name, self.category = seq.name, seq.category
        self.images = [seq.images[0]] * hs.N_IMAGES
        self.homographies = np.stack([np.eye(3)] * (hs.N_IMAGES - 1))


def test_identical_images_score_one_everywhere(release):
    data, _ = release
    hs.prepare_sequences(data)
    seq = hs.load_sequences(data, "full")[0]
    pairs = ev.evaluate(make_extractor("raw"), [_Same(seq)], max_keypoints=150)
    assert len(pairs) == 5 and (pairs["n_keypoints"] == 150).all()
    assert (pairs[[f"mma_{t}" for t in ev.MMA_THRESHOLDS]] == 1.0).all().all()
    assert (pairs["corner_error"] < 1e-3).all()
    summary = ev.summarise(pairs)
    assert summary["illumination"]["mma"] == [1.0] * 10 and "viewpoint" not in summary
    assert summary["overall"]["homography_accuracy"] == {"1": 1.0, "3": 1.0, "5": 1.0}


def test_cli_evaluates_a_handcrafted_descriptor(release, tmp_path, capsys):
    data, _ = release
    assert cli.main(["prepare", "hpatches-sequences", "--data", str(data)]) == 0
    out = tmp_path / "out"
    assert cli.main(["evaluate", "hpatches-sequences", "--descriptor", "raw", "--data", str(data),
                     "--max-keypoints", "120", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_sequences"] == 4 and summary["n_pairs"] == 20 and summary["subset"] == "d2net"
    assert summary["max_keypoints"] == 120 and summary["magnification"] == ev.MAGNIFICATION
    assert 0.5 < summary["overall"]["mma"][2] <= 1.0  # a real descriptor on an easy pair set
    assert "overall" in capsys.readouterr().out
    assert cli.main(["evaluate", "hpatches-sequences", "--descriptor", "hardnet", "--data", str(data),
                     "--out", str(tmp_path / "x")]) == 2
    assert "--model PATH" in capsys.readouterr().err
