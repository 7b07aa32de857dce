"""Atomic outputs: nothing half-written on failure, usual permissions on success; leftovers of killed writers
removed by the next run (a real ``kill -9``), full disks and unwritable output places reported clearly."""

import errno
import fcntl
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from descbench import fileio
from descbench.errors import DescbenchError

REPO = Path(__file__).resolve().parents[1]


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


# ------------------------------------------------------------------------------ leftovers of killed writers
# Writes into a staging area without end and prints the staging path once the first bytes are on disk.
WRITER = """
import sys, time
from descbench import fileio
kind, target = sys.argv[1], sys.argv[2]
with (fileio.atomic_dir(target) if kind == "dir" else fileio.atomic_path(target, suffix=".npy")) as tmp:
    with open(tmp / "part.bin" if kind == "dir" else tmp, "wb") as f:
        f.write(b"x" * 65536)
        f.flush()
        print(tmp, flush=True)
        while True:
            f.write(b"x" * 4096)
            f.flush()
            time.sleep(0.005)
"""


def first_line(proc: subprocess.Popen, timeout: float = 60) -> str:
    """The child's first line of output; a child that says nothing in time is killed and the test fails."""
    if not select.select([proc.stdout], [], [], timeout)[0]:
        proc.kill()
        proc.wait()
        pytest.fail(f"the child process printed nothing in {timeout} s")
    return proc.stdout.readline().strip()


def start_writer(kind: str, target: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, kind, str(target)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    staging = Path(first_line(proc))
    assert staging.parent == target.parent and staging.exists(), staging
    return proc, staging


def kill_hard(proc: subprocess.Popen) -> None:
    proc.kill()  # SIGKILL: no finally, no atexit
    proc.wait(timeout=10)  # reaped, so its PID is gone
    proc.stdout.close()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_killed_writer_leftover_is_removed_by_the_next_run(tmp_path, kind):
    target = tmp_path / ("set" if kind == "dir" else "a.npy")
    proc, staging = start_writer(kind, target)
    time.sleep(0.05)  # mid-write
    kill_hard(proc)
    assert staging.exists() and f"-{proc.pid}." in staging.name and ".tmp" in staging.name
    assert names(tmp_path) == [staging.name]  # what the bug report saw: the staging survives the kill

    if kind == "dir":
        with fileio.atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("done")
        assert (target / "a.txt").read_text() == "done"
    else:
        fileio.save_npy(target, np.arange(3))
        assert np.load(target).tolist() == [0, 1, 2]
    assert names(tmp_path) == [target.name]


def test_leftover_is_removed_even_if_the_next_run_fails(tmp_path):
    target = tmp_path / "set"
    proc, staging = start_writer("dir", target)
    kill_hard(proc)
    with pytest.raises(RuntimeError):
        with fileio.atomic_dir(target):
            raise RuntimeError("crash")
    assert names(tmp_path) == []


def test_a_live_writers_staging_is_kept(tmp_path):
    target = tmp_path / "set"
    proc, staging = start_writer("dir", target)
    try:
        with fileio.atomic_dir(target) as tmp:  # a second writer of the same target, at the same time
            (tmp / "a.txt").write_text("mine")
        assert staging.exists()
        assert fileio.clean_stale_staging(target) == []
    finally:
        kill_hard(proc)
    assert fileio.clean_stale_staging(target) == [staging]
    assert names(tmp_path) == ["set"]


def test_only_leftovers_of_the_same_target_are_removed(tmp_path):
    host, pid = fileio._host_tag(), dead_pid()
    for name in (f".other.{host}-{pid}.abcdefgh.tmp", f".set.x.{host}-{pid}.abcdefgh.tmp", "set.txt",
                 f".set.{host}-{pid}.abcdefgh.tmp.npy"):
        (tmp_path / name).write_text("")
    removed = fileio.clean_stale_staging(tmp_path / "set")
    assert [p.name for p in removed] == [f".set.{host}-{pid}.abcdefgh.tmp.npy"]
    assert names(tmp_path) == sorted([f".other.{host}-{pid}.abcdefgh.tmp", f".set.x.{host}-{pid}.abcdefgh.tmp",
                                      "set.txt"])


def test_own_pid_leftover_of_an_earlier_process_is_removed(tmp_path):
    # containers often give every run the same PID: a staging with our PID that we are not writing is stale
    leftover = tmp_path / f".set.{fileio._host_tag()}-{os.getpid()}.abcdefgh.tmp"
    leftover.mkdir()
    (leftover / "patches.npy").write_bytes(b"\0" * 100)
    with fileio.atomic_dir(tmp_path / "set") as tmp:
        (tmp / "a").write_text("")
    assert names(tmp_path) == ["set"]


def test_leftovers_of_unknown_writers_wait_24_hours(tmp_path):
    foreign = tmp_path / ".set.otherhost-1.abcdefgh.tmp"  # another host on a shared file system
    legacy = tmp_path / ".set.k2j_x9aa.tmp"  # naming before PIDs were embedded
    foreign.mkdir()
    (foreign / "f").write_text("")
    legacy.write_text("")
    assert fileio.clean_stale_staging(tmp_path / "set") == []
    old = time.time() - fileio.STALE_AFTER_S - 60
    os.utime(legacy, (old, old))
    os.utime(foreign, (old, old))
    assert fileio.clean_stale_staging(tmp_path / "set") == [legacy]  # foreign/f is still recent
    os.utime(foreign / "f", (old, old))
    assert fileio.clean_stale_staging(tmp_path / "set") == [foreign]


def test_a_locked_leftover_is_kept(tmp_path):
    # a dead-looking PID but a held lock (e.g. a writer in another PID namespace): keep it
    leftover = tmp_path / f".set.{fileio._host_tag()}-{dead_pid()}.abcdefgh.tmp"
    leftover.write_text("")
    with open(leftover) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert fileio.clean_stale_staging(tmp_path / "set") == []
    assert fileio.clean_stale_staging(tmp_path / "set") == [leftover]


def test_replacing_a_dir_leaves_no_aside_copy(tmp_path):
    for text in ("first", "second"):
        with fileio.atomic_dir(tmp_path / "set") as tmp:
            (tmp / "a.txt").write_text(text)
    assert (tmp_path / "set" / "a.txt").read_text() == "second"
    assert names(tmp_path) == ["set"]


# ----------------------------------------------------------------------------------------------- full disk
def test_enospc_in_the_block_is_a_disk_full_error_and_leaves_nothing(tmp_path):
    with pytest.raises(DescbenchError, match=r"disk full at .*out\.npy, need more free space"):
        with fileio.atomic_path(tmp_path / "out.npy"):
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(DescbenchError, match=r"disk full at .*set, need ~2\.5 GB free"):
        with fileio.atomic_dir(tmp_path / "set", need_bytes=2_400_000_001) as tmp:
            (tmp / "a").write_text("x")
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
    assert names(tmp_path) == []


def test_need_bytes_is_checked_before_the_block(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: shutil_usage(free=10_000_000))
    with pytest.raises(DescbenchError, match=r"disk full at .*set, need ~1\.0 GB free \(10 MB available"):
        with fileio.atomic_dir(tmp_path / "set", need_bytes=10**9):
            raise AssertionError("the block must not run")
    assert names(tmp_path) == []


def test_other_errors_are_disk_full_only_when_the_disk_is_nearly_full(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError, match="file write failed"):
        with fileio.atomic_path(tmp_path / "ckpt.pt"):
            raise RuntimeError("file write failed")
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: shutil_usage(free=4096))
    with pytest.raises(DescbenchError, match=r"disk full at .*ckpt\.pt.*RuntimeError: file write failed"):
        with fileio.atomic_path(tmp_path / "ckpt.pt"):  # what torch.save raises on a full disk
            raise RuntimeError("file write failed")
    with pytest.raises(DescbenchError, match="bad data"):  # a user error keeps its own message
        with fileio.atomic_path(tmp_path / "ckpt.pt"):
            raise DescbenchError("bad data")
    assert names(tmp_path) == []


def test_preallocate_reports_enospc_and_skips_unsupported(tmp_path, monkeypatch):
    def refuse(code):
        def fallocate(fd, offset, length):
            raise OSError(code, os.strerror(code))
        return fallocate

    with open(tmp_path / "f", "wb") as f:
        fileio.preallocate(f.fileno(), 8192)
        assert os.fstat(f.fileno()).st_size == 8192
        monkeypatch.setattr(os, "posix_fallocate", refuse(errno.EOPNOTSUPP))
        fileio.preallocate(f.fileno(), 16384)  # a file system without it: no reservation, no error
        monkeypatch.setattr(os, "posix_fallocate", refuse(errno.ENOSPC))
        with pytest.raises(OSError) as raised:
            fileio.preallocate(f.fileno(), 16384)
    assert raised.value.errno == errno.ENOSPC


def shutil_usage(free: int):
    import shutil

    return shutil._ntuple_diskusage(total=10**12, used=10**12 - free, free=free)


# ------------------------------------------------------------------------------------------ check_writable
def test_check_writable_accepts_new_and_existing_locations(tmp_path):
    assert fileio.check_writable(tmp_path / "a" / "b" / "c.json") == tmp_path / "a" / "b" / "c.json"
    assert fileio.check_writable(tmp_path) == tmp_path
    (tmp_path / "f.txt").write_text("")
    assert fileio.check_writable(tmp_path / "f.txt", replace=True) == tmp_path / "f.txt"
    assert names(tmp_path) == ["f.txt"]  # the write test leaves nothing


def test_check_writable_refuses_a_file_on_the_way(tmp_path):
    (tmp_path / "results").write_text("")
    with pytest.raises(DescbenchError, match=r"cannot write .*results/x/y: .*results is a file, not a folder; "
                                             r"choose another --out"):
        fileio.check_writable(tmp_path / "results" / "x" / "y")


def test_check_writable_refuses_unwritable_folders(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    with pytest.raises(DescbenchError, match=r"cannot write .*locked/new: the folder .*locked is not writable by "
                                             r"this user; choose another --root"):
        fileio.check_writable(locked / "new", option="--root")
    with pytest.raises(DescbenchError, match="the folder .*locked is not writable"):
        fileio.check_writable(locked)  # an existing output folder is written into
    fileio.check_writable(tmp_path / "other")
    # replacing a folder as a whole needs its parent (staging + rename) and the folder itself
    with pytest.raises(DescbenchError, match="the folder .*locked is not writable"):
        fileio.check_writable(locked / "sub", replace=True)


def test_check_writable_tries_a_real_write(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(fileio.tempfile, "mkdtemp", read_only)
    with pytest.raises(DescbenchError, match=r"cannot create files in the folder .* \(Read-only file system "
                                             r"\[EROFS\]\); choose another --out"):
        fileio.check_writable(tmp_path / "out")
