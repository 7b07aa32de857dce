"""Readers/preparers of the original UBC and HPatches formats, on small fixtures built here.

Fixture patches carry their own id in their pixels, so a wrong tile order, grid order or cut shows up.
Every bad input must raise a DescbenchError naming the file and leave no output (or temp folder) behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from descbench import cli
from descbench.data import hpatches, ubc
from descbench.errors import DescbenchError


# ------------------------------------------------------------------------------------------------ UBC
def ubc_patch(i: int) -> np.ndarray:
    """A 64x64 patch that encodes its id: top-left block = id % 256, bottom-right = id // 256, plus a ramp."""
    patch = np.tile(np.arange(64, dtype=np.uint8) * 2, (64, 1))
    patch[:8, :8] = i % 256
    patch[56:, 56:] = i // 256
    return patch


def write_ubc_set(raw: Path, n_patches: int, n_tiles: int | None = None, labels: np.ndarray | None = None,
                  pair_files: dict[str, list[str]] | None = None) -> np.ndarray:
    """Write tiles with explicit grid placement (independent of the reader's reshape), info.txt, m50 files."""
    raw.mkdir(parents=True, exist_ok=True)
    n_tiles = n_tiles if n_tiles is not None else -(-n_patches // 256)
    for t in range(n_tiles):
        tile = np.zeros((1024, 1024), np.uint8)
        for k in range(256):
            i = 256 * t + k
            if i < n_patches:
                row, col = divmod(k, 16)
                tile[64 * row:64 * row + 64, 64 * col:64 * col + 64] = ubc_patch(i)
        Image.fromarray(tile, mode="L").save(raw / f"patches{t:04d}.bmp")
    labels = labels if labels is not None else np.arange(n_patches) // 3
    (raw / "info.txt").write_text("".join(f"{p} 0\n" for p in labels))
    if pair_files is None:
        pair_files = {"m50_4_4_0.txt": [f"0 {labels[0]} 0 1 {labels[1]} 0 0",
                                        f"0 {labels[0]} 0 {n_patches - 1} {labels[n_patches - 1]} 0 0",
                                        f"3 {labels[3]} 0 5 {labels[5]} 0 0",
                                        f"2 {labels[2]} 0 4 {labels[4]} 0 0"]}
    for name, lines in pair_files.items():
        (raw / name).write_text("".join(line + "\n" for line in lines))
    return labels


def assert_nothing_left(parent: Path) -> None:
    """No output and no temporary folder/file under ``parent`` (it may not exist at all)."""
    if parent.exists():
        assert sorted(p.name for p in parent.iterdir()) == []


def test_ubc_round_trip_row_major_tiles_cut_to_length(tmp_path):
    n = 256 + 37
    labels = write_ubc_set(ubc.raw_set_dir(tmp_path, "toy"), n)
    meta = ubc.prepare_ubc(tmp_path, "toy")
    data = ubc.load_ubc(tmp_path, "toy")

    assert isinstance(data.patches, np.memmap) and data.patches.dtype == np.uint8
    assert data.patches.shape == (n, 64, 64)
    for i in (0, 1, 15, 16, 17, 255, 256, 257, n - 1):
        np.testing.assert_array_equal(data.patches[i], ubc_patch(i))
    np.testing.assert_array_equal(data.labels, labels)
    assert data.labels.dtype == np.int64 and data.pairs.dtype == np.int64
    np.testing.assert_array_equal(data.pairs, [[0, 1, 1], [0, n - 1, 0], [3, 5, 1], [2, 4, 0]])
    assert meta["n_patches"] == n and meta["n_tiles"] == 2 and meta["n_pairs"] == 4
    assert meta["n_matches"] == 2 and meta["pair_label_mismatches"] == 0
    assert json.loads((ubc.prepared_set_dir(tmp_path, "toy") / "meta.json").read_text()) == meta


def test_ubc_uses_the_largest_pair_file_and_the_100k_file_for_published_sets(tmp_path):
    raw = ubc.raw_set_dir(tmp_path, "toy")
    write_ubc_set(raw, 20, pair_files={"m50_2_2_0.txt": ["0 0 0 1 0 0 0", "0 0 0 9 3 0 0"],
                                       "m50_10_10_0.txt": ["0 0 0 2 0 0 0"]})
    assert ubc.select_pairs_file(raw, "toy").name == "m50_10_10_0.txt"
    assert ubc.prepare_ubc(tmp_path, "toy")["pairs_file"] == "m50_10_10_0.txt"
    with pytest.raises(DescbenchError, match="m50_100000_100000_0.txt"):
        ubc.select_pairs_file(raw, "liberty")


def test_ubc_failed_prepare_keeps_the_previous_output(tmp_path):
    raw = ubc.raw_set_dir(tmp_path, "toy")
    write_ubc_set(raw, 300)
    ubc.prepare_ubc(tmp_path, "toy")
    before = {p.name: p.read_bytes() for p in ubc.prepared_set_dir(tmp_path, "toy").iterdir()}
    Image.fromarray(np.zeros((1024, 512), np.uint8), mode="L").save(raw / "patches0001.bmp")
    with pytest.raises(DescbenchError, match="patches0001.bmp"):
        ubc.prepare_ubc(tmp_path, "toy")
    after = {p.name: p.read_bytes() for p in ubc.prepared_set_dir(tmp_path, "toy").iterdir()}
    assert after == before
    assert sorted(p.name for p in (tmp_path / "ubc").iterdir()) == ["toy"]


def _break_tile_size(raw: Path) -> None:
    # the second tile is wrong, so the first was already copied when the error comes
    Image.fromarray(np.zeros((1024, 1000), np.uint8), mode="L").save(raw / "patches0001.bmp")


def _break_info_missing(raw: Path) -> None:
    (raw / "info.txt").unlink()


def _break_info_too_long(raw: Path) -> None:
    (raw / "info.txt").write_text("1 0\n" * (2 * 256 + 1))


def _break_info_truncated(raw: Path) -> None:
    (raw / "info.txt").write_text("1 0\n" * 200)


def _break_info_columns(raw: Path) -> None:
    lines = (raw / "info.txt").read_text().splitlines()
    lines[6] = "7"
    (raw / "info.txt").write_text("\n".join(lines) + "\n")


def _break_m50_columns(raw: Path) -> None:
    (raw / "m50_4_4_0.txt").write_text("0 0 0 1 0 0 0\n1 0 0 2 0 0 0\n2 0 0 3 0 0\n")


def _break_m50_not_integer(raw: Path) -> None:
    (raw / "m50_4_4_0.txt").write_text("0 0 0 1 0 0 0\n1 0 0 x 0 0 0\n")


def _break_m50_out_of_range(raw: Path) -> None:
    (raw / "m50_4_4_0.txt").write_text("0 0 0 1 0 0 0\n1 0 0 300 0 0 0\n")


def _break_no_pair_file(raw: Path) -> None:
    (raw / "m50_4_4_0.txt").unlink()


def _break_no_tiles(raw: Path) -> None:
    for tile in raw.glob("*.bmp"):
        tile.unlink()


def _break_not_a_bmp(raw: Path) -> None:
    (raw / "patches0000.bmp").write_bytes(b"not an image")


@pytest.mark.parametrize("damage, pattern", [
    (_break_tile_size, r"patches0001\.bmp is 1000x1024 pixels, expected 1024x1024"),
    (_break_not_a_bmp, r"patches0000\.bmp is not a readable BMP"),
    (_break_info_missing, r"missing file .*info\.txt"),
    (_break_info_too_long, r"info\.txt lists 513 patches but the 2 tiles .* hold at most 512"),
    (_break_info_truncated, r"info\.txt lists only 200 patches .* info\.txt is truncated"),
    (_break_info_columns, r"info\.txt, line 7: 1 columns, expected 2"),
    (_break_m50_columns, r"m50_4_4_0\.txt, line 3: 6 columns, expected 7"),
    (_break_m50_not_integer, r"m50_4_4_0\.txt, line 2: 'x' is not an integer"),
    (_break_m50_out_of_range, r"m50_4_4_0\.txt, pair 2: patch id out of range 0\.\.299"),
    (_break_no_pair_file, r"no m50_<n>_<n>_0\.txt in"),
    (_break_no_tiles, r"no patches\*\.bmp tiles in"),
])
def test_ubc_bad_input_names_file_and_leaves_nothing(tmp_path, damage, pattern):
    raw = ubc.raw_set_dir(tmp_path, "toy")
    write_ubc_set(raw, 300)
    damage(raw)
    with pytest.raises(DescbenchError, match=pattern):
        ubc.prepare_ubc(tmp_path, "toy")
    assert_nothing_left(tmp_path / "ubc")


def test_ubc_published_set_must_have_the_published_length(tmp_path):
    write_ubc_set(ubc.raw_set_dir(tmp_path, "liberty"), 300)
    with pytest.raises(DescbenchError, match="lists 300 patches but the published liberty set has 450092"):
        ubc.prepare_ubc(tmp_path, "liberty")
    assert_nothing_left(tmp_path / "ubc")


def test_load_ubc_missing_names_the_prepare_command(tmp_path):
    with pytest.raises(DescbenchError, match="descbench prepare ubc"):
        ubc.load_ubc(tmp_path, "toy")


def test_cli_prepare_ubc_prints_what_it_made_and_reports_missing_data(tmp_path, capsys):
    write_ubc_set(ubc.raw_set_dir(tmp_path, "toy"), 40)
    assert cli.main(["prepare", "ubc", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "toy: 40 patches, 14 3D points, 4 pairs (2 matching) from m50_4_4_0.txt" in out
    assert str(ubc.prepared_set_dir(tmp_path, "toy")) in out
    empty = tmp_path / "empty"
    assert cli.main(["prepare", "ubc", "--root", str(empty)]) == 2
    assert "no UBC sets in" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- HPatches
def hp_patch(seq: int, image: int, i: int) -> np.ndarray:
    patch = np.full((65, 65), 7 * image, np.uint8)
    patch[:5, :5] = i
    patch[60:, 60:] = seq
    return patch


def write_sequence(release: Path, name: str, seq_id: int, n: int) -> np.ndarray:
    (release / name).mkdir(parents=True)
    stack = np.array([[hp_patch(seq_id, t, i) for i in range(n)] for t in range(16)], dtype=np.uint8)
    for t, image_type in enumerate(hpatches.IMAGE_TYPES):
        cv2.imwrite(str(release / name / f"{image_type}.png"), np.vstack(list(stack[t])))
    return stack


def write_hpatches(root: Path) -> dict[str, np.ndarray]:
    release = hpatches.raw_release_dir(root)
    stacks = {"i_one": write_sequence(release, "i_one", 1, 3), "v_two": write_sequence(release, "v_two", 2, 5)}
    tasks = hpatches.raw_tasks_dir(root)
    tasks.mkdir(parents=True)
    (tasks / "splits.json").write_text(json.dumps({"full": {"name": "full", "test": ["i_one", "v_two"]}}))
    (tasks / "retr_queries_split-full.csv").write_text("s,idx\ni_one,2\nv_two,4\n")
    return stacks


def test_hpatches_round_trip_order_and_tasks(tmp_path):
    stacks = write_hpatches(tmp_path)
    (hpatches.raw_release_dir(tmp_path) / "README.txt").write_text("not a sequence")
    meta = hpatches.prepare_hpatches(tmp_path)
    loaded = hpatches.load_sequences(tmp_path)
    assert sorted(loaded) == ["i_one", "v_two"]
    for name, stack in stacks.items():
        assert isinstance(loaded[name], np.memmap) and loaded[name].shape == stack.shape
        np.testing.assert_array_equal(loaded[name], stack)
    assert hpatches.IMAGE_TYPES[:2] == ("ref", "e1") and hpatches.IMAGE_TYPES[-1] == "t5"
    assert len(hpatches.IMAGE_TYPES) == 16
    assert loaded["v_two"][hpatches.IMAGE_TYPES.index("h3"), 4, 0, 0] == 4
    assert loaded["v_two"][hpatches.IMAGE_TYPES.index("h3"), 4, 30, 30] == 7 * 8
    task_copy = hpatches.tasks_dir(tmp_path)
    assert sorted(p.name for p in task_copy.iterdir()) == ["retr_queries_split-full.csv", "splits.json"]
    assert (task_copy / "splits.json").read_bytes() == (hpatches.raw_tasks_dir(tmp_path) / "splits.json").read_bytes()
    assert meta["sequences"] == {"i_one": 3, "v_two": 5} and meta["n_illumination"] == 1


def _png(path: Path, array: np.ndarray) -> None:
    cv2.imwrite(str(path), array)


@pytest.mark.parametrize("damage, pattern", [
    (lambda r: (r / "v_two" / "t5.png").unlink(), r"missing file .*v_two/t5\.png"),
    (lambda r: _png(r / "v_two" / "h2.png", np.zeros((5 * 65 + 1, 65), np.uint8)),
     r"v_two/h2\.png is 65x326 pixels; .* a multiple of 65 high"),
    (lambda r: _png(r / "i_one" / "e1.png", np.zeros((3 * 65, 64), np.uint8)), r"i_one/e1\.png is 64x195 pixels"),
    (lambda r: _png(r / "v_two" / "e4.png", np.zeros((4 * 65, 65), np.uint8)),
     r"v_two: the 16 stacks hold different numbers of patches \(ref=5, .*e4=4"),
    (lambda r: (r / "i_one" / "ref.png").write_bytes(b"garbage"), r"i_one/ref\.png is not a readable PNG"),
    (lambda r: (r.parent / "hpatches-tasks" / "splits.json").unlink(), r"missing file .*splits\.json"),
    (lambda r: (r.parent / "hpatches-tasks" / "splits.json").write_text(
        json.dumps({"a": {"name": "a", "test": ["i_one"], "train": ["v_nope"]}})),
     r"split 'a' names sequences that are not in the release: \['v_nope'\]"),
])
def test_hpatches_bad_input_names_file_and_leaves_nothing(tmp_path, damage, pattern):
    write_hpatches(tmp_path)
    damage(hpatches.raw_release_dir(tmp_path))
    with pytest.raises(DescbenchError, match=pattern):
        hpatches.prepare_hpatches(tmp_path)
    assert_nothing_left(tmp_path / "hpatches")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hpatches")]


def test_hpatches_missing_release_and_unprepared_load(tmp_path):
    with pytest.raises(DescbenchError, match="missing folder .*hpatches-release"):
        hpatches.prepare_hpatches(tmp_path)
    with pytest.raises(DescbenchError, match="descbench prepare hpatches"):
        hpatches.load_sequences(tmp_path)


def test_cli_prepare_hpatches_prints_what_it_made(tmp_path, capsys):
    write_hpatches(tmp_path)
    assert cli.main(["prepare", "hpatches", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "hpatches: 2 sequences (1 i_, 1 v_), 8 patches per image type (N 3..5), 2 task files" in out
