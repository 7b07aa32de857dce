"""Atomic outputs: nothing half-written on failure, usual permissions on success."""

import os

import numpy as np
import pytest

from descbench import fileio


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_failed_dir_keeps_previous_content(tmp_path):
    target = tmp_path / "set"
    with fileio.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with fileio.atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("second")
            raise RuntimeError("crash")
    assert (target / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_outputs_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        fileio.write_json(tmp_path / "m.json", {"x": np.int64(3)})
        fileio.save_npy(tmp_path / "a.npy", np.arange(3))
        with fileio.atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("")
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "a.npy").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert np.load(tmp_path / "a.npy").tolist() == [0, 1, 2]
