"""Faults around ``prepare ubc`` / ``prepare hpatches``: full disks, killed runs, unwritable outputs, damaged
files that used to crash with a traceback or blame the wrong file.

Every fault must raise a DescbenchError that names the file (or place) and the fix, and leave no output and
no staging folder behind.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from descbench import cli, fileio
from descbench.data import hpatches, ubc
from descbench.errors import DescbenchError
from test_data_readers import assert_nothing_left, ubc_patch, write_hpatches, write_ubc_set
from test_fileio import first_line

REPO = Path(__file__).resolve().parents[1]


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def fail_on_call(n: int, real):
    """``real``, except that its ``n``-th call (1-based) raises ENOSPC."""
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            enospc()
        return real(*args, **kwargs)
    return wrapper


def little_free_space(monkeypatch, free: int) -> None:
    usage = shutil._ntuple_diskusage(total=10**12, used=10**12 - free, free=free)
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda path: usage)


def no_staging(folder: Path) -> bool:
    return not folder.exists() or not [p for p in folder.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------------------ full disk
def test_ubc_patches_are_written_without_a_memory_map(tmp_path, monkeypatch):
    write_ubc_set(ubc.raw_set_dir(tmp_path, "toy"), 300)
    monkeypatch.setattr(np.lib.format, "open_memmap", lambda *a, **k: pytest.fail("open_memmap used"))
    ubc.prepare_ubc(tmp_path, "toy")
    monkeypatch.undo()  # reading maps the file, as it should
    data = ubc.load_ubc(tmp_path, "toy")
    assert data.patches.shape == (300, 64, 64)
    for i in (0, 255, 256, 299):
        np.testing.assert_array_equal(data.patches[i], ubc_patch(i))
    assert np.load(ubc.prepared_set_dir(tmp_path, "toy") / "patches.npy").shape == (300, 64, 64)


@pytest.mark.parametrize("where", ["tile write", "reserve", "labels"])
def test_ubc_full_disk_is_a_clear_error_and_leaves_no_staging(tmp_path, monkeypatch, where):
    write_ubc_set(ubc.raw_set_dir(tmp_path, "toy"), 300)
    if where == "tile write":  # the second tile hits the full disk
        monkeypatch.setattr(ubc, "_write_rows", fail_on_call(2, ubc._write_rows))
    elif where == "reserve":
        monkeypatch.setattr(os, "posix_fallocate", enospc)
    else:
        monkeypatch.setattr(np, "save", enospc)
    with pytest.raises(DescbenchError, match=r"disk full at .*ubc/toy, need ~2 MB free"):
        ubc.prepare_ubc(tmp_path, "toy")
    assert_nothing_left(tmp_path / "ubc")


def test_ubc_full_disk_keeps_the_previous_output(tmp_path, monkeypatch):
    write_ubc_set(ubc.raw_set_dir(tmp_path, "toy"), 300)
    ubc.prepare_ubc(tmp_path, "toy")
    before = {p.name: p.read_bytes() for p in ubc.prepared_set_dir(tmp_path, "toy").iterdir()}
    monkeypatch.setattr(ubc, "_write_rows", fail_on_call(2, ubc._write_rows))
    with pytest.raises(DescbenchError, match="disk full"):
        ubc.prepare_ubc(tmp_path, "toy")
    assert {p.name: p.read_bytes() for p in ubc.prepared_set_dir(tmp_path, "toy").iterdir()} == before
    assert sorted(p.name for p in (tmp_path / "ubc").iterdir()) == ["toy"]


def test_ubc_free_space_is_checked_before_any_tile_is_read(tmp_path, monkeypatch):
    write_ubc_set(ubc.raw_set_dir(tmp_path, "toy"), 300)
    little_free_space(monkeypatch, 1000)
    monkeypatch.setattr(ubc, "_write_rows", lambda *a: pytest.fail("wrote although the disk is full"))
    need = ubc.prepared_bytes(300, 4)
    assert need >= 300 * 64 * 64
    with pytest.raises(DescbenchError, match=r"disk full at .*ubc/toy, need ~2 MB free \(0 MB available"):
        ubc.prepare_ubc(tmp_path, "toy")
    assert_nothing_left(tmp_path / "ubc")


def test_ubc_prepared_bytes_covers_what_is_written(tmp_path):
    write_ubc_set(ubc.raw_set_dir(tmp_path, "toy"), 300)
    ubc.prepare_ubc(tmp_path, "toy")
    written = sum(p.stat().st_size for p in ubc.prepared_set_dir(tmp_path, "toy").iterdir())
    assert written <= ubc.prepared_bytes(300, 4) < written + (128 << 10)


def test_cli_prepare_ubc_full_disk_exits_2_without_traceback(tmp_path, monkeypatch, capsys):
    write_ubc_set(ubc.raw_set_dir(tmp_path, "toy"), 40)
    monkeypatch.setattr(ubc, "_write_rows", enospc)
    assert cli.main(["prepare", "ubc", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "disk full at" in err and "need ~1 MB free" in err and "Traceback" not in err
    assert_nothing_left(tmp_path / "ubc")


@pytest.mark.parametrize("where", ["np.save", "copyfile"])
def test_hpatches_full_disk_is_a_clear_error_and_leaves_no_staging(tmp_path, monkeypatch, where):
    write_hpatches(tmp_path)
    if where == "np.save":  # the second sequence hits the full disk
        monkeypatch.setattr(np, "save", fail_on_call(2, np.save))
    else:
        monkeypatch.setattr(shutil, "copyfile", enospc)
    with pytest.raises(DescbenchError, match=r"disk full at .*hpatches, need ~1 MB free"):
        hpatches.prepare_hpatches(tmp_path)
    assert_nothing_left(tmp_path / "hpatches")
    assert no_staging(tmp_path)


def test_hpatches_free_space_is_checked_first_from_the_png_headers(tmp_path, monkeypatch):
    write_hpatches(tmp_path)
    release = hpatches.raw_release_dir(tmp_path)
    assert hpatches.png_height(release / "v_two" / "ref.png") == 5 * 65
    assert hpatches.png_height(release.parent / "hpatches-tasks" / "splits.json") is None
    names = hpatches.list_sequences(release)
    tasks = sorted(hpatches.raw_tasks_dir(tmp_path).iterdir())
    assert hpatches.prepared_bytes(release, names, tasks) >= 16 * 8 * 65 * 65
    little_free_space(monkeypatch, 1000)
    monkeypatch.setattr(hpatches, "read_sequence", lambda *a: pytest.fail("read although the disk is full"))
    with pytest.raises(DescbenchError, match=r"disk full at .*hpatches, need ~1 MB free"):
        hpatches.prepare_hpatches(tmp_path)
    assert no_staging(tmp_path)


# ----------------------------------------------------------------------------------- killed prepare run
KILLED_PREPARE = """
import sys, time
from descbench.data import ubc
real = ubc._write_rows

def stall(fh, rows):  # the first tile is on disk, then the run hangs until it is killed
    real(fh, rows)
    fh.flush()
    print("writing", flush=True)
    time.sleep(120)

ubc._write_rows = stall
ubc.prepare_ubc(sys.argv[1], "toy")
"""


def test_ubc_prepare_killed_mid_write_is_cleaned_by_the_next_run(tmp_path):
    write_ubc_set(ubc.raw_set_dir(tmp_path, "toy"), 300)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_PREPARE, str(tmp_path)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    assert first_line(proc) == "writing"
    proc.kill()  # kill -9
    proc.wait(timeout=10)
    proc.stdout.close()
    (leftover,) = (tmp_path / "ubc").iterdir()
    assert leftover.name.startswith(".toy.") and f"-{proc.pid}." in leftover.name
    assert (leftover / "patches.npy").stat().st_size > 256 * 64 * 64

    ubc.prepare_ubc(tmp_path, "toy")
    assert sorted(p.name for p in (tmp_path / "ubc").iterdir()) == ["toy"]
    np.testing.assert_array_equal(ubc.load_ubc(tmp_path, "toy").patches[299], ubc_patch(299))


# ------------------------------------------------------------------------------------ output location
def test_prepare_refuses_an_output_place_that_is_a_file(tmp_path):
    write_ubc_set(ubc.raw_set_dir(tmp_path, "toy"), 40)
    (tmp_path / "ubc").write_text("")
    with pytest.raises(DescbenchError, match=r"cannot write .*ubc/toy: .*ubc is a file, not a folder; "
                                             r"choose another --data"):
        ubc.prepare_ubc(tmp_path, "toy")


def test_prepare_refuses_an_unwritable_root_before_reading(tmp_path, monkeypatch):
    write_ubc_set(ubc.raw_set_dir(tmp_path, "toy"), 40)
    write_hpatches(tmp_path)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != tmp_path and real_access(p, mode))
    monkeypatch.setattr(ubc, "read_int_table", lambda *a: pytest.fail("read before checking the output"))
    monkeypatch.setattr(hpatches, "_check_tasks", lambda *a: pytest.fail("read before checking the output"))
    with pytest.raises(DescbenchError, match=r"cannot write .*ubc/toy: the folder .* is not writable .*--data"):
        ubc.prepare_ubc(tmp_path, "toy")
    with pytest.raises(DescbenchError, match=r"cannot write .*hpatches: the folder .* is not writable .*--data"):
        hpatches.prepare_hpatches(tmp_path)


# ---------------------------------------------------------------------------------------- damaged files
def test_ubc_empty_bmp_names_the_tile_and_the_fix(tmp_path):
    raw = ubc.raw_set_dir(tmp_path, "toy")
    write_ubc_set(raw, 300)
    (raw / "patches0000.bmp").write_bytes(b"")
    with pytest.raises(DescbenchError, match=r"patches0000\.bmp is empty \(0 bytes\), not a BMP image; the tile "
                                             r"is damaged, download or generate the set again"):
        ubc.prepare_ubc(tmp_path, "toy")
    assert_nothing_left(tmp_path / "ubc")


def test_ubc_empty_last_tile_of_a_mini_set_names_make_mini(tmp_path):
    raw = ubc.raw_set_dir(tmp_path, "mini_toy")
    write_ubc_set(raw, 300)
    (raw / "patches0001.bmp").write_bytes(b"")  # the last tile, read by the info.txt check
    with pytest.raises(DescbenchError, match=r"patches0001\.bmp is empty .*`descbench make-mini --data "):
        ubc.prepare_ubc(tmp_path, "mini_toy")
    assert_nothing_left(tmp_path / "ubc")


def test_ubc_undecodable_bytes_are_a_clear_error():
    import cv2

    with pytest.raises(DescbenchError, match=r"x\.bmp is not a readable BMP image"):
        ubc.decode_tile(Path("x.bmp"), b"BM" + b"\0" * 10)
    with pytest.raises(cv2.error):  # what used to escape as a traceback
        cv2.imdecode(np.frombuffer(b"", np.uint8), cv2.IMREAD_GRAYSCALE)


def test_ubc_fix_hints(tmp_path):
    assert ubc.fix_hint(tmp_path, "liberty") == (
        f"delete {tmp_path / 'raw' / 'ubc' / 'liberty'} and run `descbench download ubc liberty --data {tmp_path}` "
        "(it unpacks the kept archive again)")
    assert ubc.fix_hint(tmp_path, "mini_yosemite") == f"generate the set again (`descbench make-mini --data {tmp_path}`)"
    assert ubc.fix_hint(tmp_path, "toy") == "download or generate the set again"


@pytest.mark.parametrize("n_true, missing", [(300, 3), (512, 3), (300, 1), (262, 4)])
def test_ubc_short_info_txt_is_blamed_not_the_pair_file(tmp_path, n_true, missing):
    raw = ubc.raw_set_dir(tmp_path, "toy")
    write_ubc_set(raw, n_true)  # the pair file names patch n_true - 1
    lines = (raw / "info.txt").read_text().splitlines(keepends=True)
    (raw / "info.txt").write_text("".join(lines[:-missing]))
    n = n_true - missing
    s = "s" if missing > 1 else ""
    pattern = (rf"info\.txt lists {n} patches, but patches0001\.bmp also holds patches {n}\.\.{n_true - 1} after "
               rf"them .*: info\.txt is (at least )?{missing} line{s} short")
    with pytest.raises(DescbenchError, match=pattern) as raised:
        ubc.prepare_ubc(tmp_path, "toy")
    assert "m50" not in str(raised.value)
    assert_nothing_left(tmp_path / "ubc")


def test_ubc_pair_file_of_another_set_is_still_blamed(tmp_path):
    raw = ubc.raw_set_dir(tmp_path, "toy")
    write_ubc_set(raw, 300)
    (raw / "m50_4_4_0.txt").write_text("0 0 0 1 0 0 0\n1 0 0 400 0 0 0\n")  # slot 400 is blank: not ours
    with pytest.raises(DescbenchError, match=r"m50_4_4_0\.txt, pair 2: patch id out of range 0\.\.299 .*the pair "
                                             r"file does not belong to this set \(info\.txt lists 300 patches and "
                                             r"the tiles agree\)"):
        ubc.prepare_ubc(tmp_path, "toy")


def test_ubc_blank_patches_inside_the_set_are_fine(tmp_path):
    raw = ubc.raw_set_dir(tmp_path, "toy")
    write_ubc_set(raw, 300)
    tile = np.asarray(Image.open(raw / "patches0001.bmp")).copy()
    tile[:64, :] = 0  # patches 256..271 are blank (e.g. saturated sky): not a sign of anything
    Image.fromarray(tile, mode="L").save(raw / "patches0001.bmp")
    assert ubc.prepare_ubc(tmp_path, "toy")["n_patches"] == 300


def test_hpatches_empty_png_names_the_file(tmp_path):
    write_hpatches(tmp_path)
    (hpatches.raw_release_dir(tmp_path) / "v_two" / "h3.png").write_bytes(b"")
    with pytest.raises(DescbenchError, match=r"v_two/h3\.png is empty \(0 bytes\), not a PNG image; delete .*"
                                             r"hpatches-release and run `descbench download hpatches --data "):
        hpatches.prepare_hpatches(tmp_path)
    assert_nothing_left(tmp_path / "hpatches")
    assert no_staging(tmp_path)


TASKS_FIX = r"; it is not an HPatches splits file, re-download it with `descbench download hpatches-tasks --data "


@pytest.mark.parametrize("content, pattern", [
    (json.dumps(["i_one", "v_two"]).encode(), r"the top level is a list, expected an object mapping split names"),
    (json.dumps({}).encode(), r"the top level is an object, expected an object mapping"),
    (json.dumps({"a": ["i_one"]}).encode(), r"split 'a' is a list, expected an object with a 'test' list"),
    (json.dumps({"a": {"name": "a", "test": "i_one"}}).encode(), r"split 'a': 'test' is a string, expected a list"),
    (json.dumps({"a": {"name": "a", "test": ["i_one"], "train": {"v_two": 1}}}).encode(),
     r"split 'a': 'train' is an object, expected a list"),
    (json.dumps({"a": {"name": "a", "test": ["i_one", 7]}}).encode(), r"split 'a': 'test' holds 7 \(a number\)"),
    (json.dumps({"a": {"name": "a"}}).encode(), r"split 'a' has no 'test' list"),
    (json.dumps({"a": {"name": 1, "test": ["i_one"]}}).encode(), r"split 'a': 'name' is a number"),
])
def test_hpatches_bad_splits_json_names_the_file_and_the_fix(tmp_path, content, pattern):
    write_hpatches(tmp_path)
    splits = hpatches.raw_tasks_dir(tmp_path) / "splits.json"
    splits.write_bytes(content)
    with pytest.raises(DescbenchError, match=r"splits\.json: " + pattern + ".*" + TASKS_FIX):
        hpatches.prepare_hpatches(tmp_path)
    assert_nothing_left(tmp_path / "hpatches")


def test_hpatches_splits_json_that_is_not_utf8(tmp_path):
    write_hpatches(tmp_path)
    splits = hpatches.raw_tasks_dir(tmp_path) / "splits.json"
    splits.write_bytes(b'{"full": {"name": "full", "test": ["i_\xe9"]}}')
    with pytest.raises(DescbenchError, match=r"splits\.json is not UTF-8 text \(byte \d+\); re-download it with "
                                             r"`descbench download hpatches-tasks --data "):
        hpatches.prepare_hpatches(tmp_path)
    assert_nothing_left(tmp_path / "hpatches")


def test_hpatches_bad_splits_of_mini_data_names_make_mini(tmp_path):
    write_hpatches(tmp_path)
    (tmp_path / "raw" / "mini.json").write_text("{}")
    (hpatches.raw_tasks_dir(tmp_path) / "splits.json").write_text("[]")
    with pytest.raises(DescbenchError, match=r"top level is a list.*generate them again \(`descbench make-mini"):
        hpatches.prepare_hpatches(tmp_path)
