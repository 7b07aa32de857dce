"""File output and checksums. Every produced file is written to a temporary name and renamed into
place, so a crash never leaves a half-written file that looks finished.

Staging names and leftovers
---------------------------
``atomic_path(T)`` / ``atomic_dir(T)`` stage their output next to ``T`` as
``.<T's name>.<host>-<pid>.<random>.tmp[<suffix>]`` and hold an exclusive ``flock`` on it while the block
runs. A writer killed hard (``kill -9``, OOM killer, power loss) cannot delete its staging, so every
``atomic_path``/``atomic_dir`` for ``T`` first calls ``clean_stale_staging(T)``, which removes leftovers of
the same target only (never other files) when both hold:

1. the writer is known to be gone: the name has this host's tag and a PID that is not alive
   (``os.kill(pid, 0)`` fails with ESRCH; for this process's own PID: a staging it is not writing, i.e. a
   leftover of an earlier process that had the same PID, common in containers); for names without a PID of
   this host (another host on a shared file system, or the older ``.<name>.<random>.tmp`` naming), nothing
   in it was modified for ``STALE_AFTER_S`` (24 h);
2. nobody holds the flock (a lock dies with its process, even with ``kill -9``; this guards against PID
   namespaces that share a host name; where the file system has no flock, e.g. some NFS setups, rule 1
   decides alone). PID reuse only ever keeps a leftover longer.

Zombie or reused PIDs keep a leftover until a later run; nothing is removed on non-POSIX systems.

Full disks: an ``OSError`` ENOSPC/EDQUOT raised inside the block (or another error while the file system has
under 1 MiB left, e.g. ``torch.save``'s ``RuntimeError``) becomes a ``DescbenchError`` "disk full at PATH,
need ~N GB free", and the staging is removed. ``need_bytes`` makes the check happen before any work.

Output locations: ``check_writable(path, option=..., replace=...)`` fails fast, before any work, with
"cannot write PATH: REASON; choose another OPTION".
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from descbench.errors import DescbenchError
from descbench.progress import progress

if TYPE_CHECKING:  # numpy and pandas load only where a writer needs them (a fast CLI start)
    import numpy as np
    import pandas as pd

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

log = logging.getLogger(__name__)

_READ_BYTES = 1 << 20
STALE_AFTER_S = 24 * 3600
"""A leftover whose writer cannot be checked (another host, old naming) is removed after this long untouched."""
NEARLY_FULL_BYTES = 1 << 20
"""Below this much free space a failed write is reported as a full disk."""
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)

_active_staging: set[str] = set()  # staging paths this process is writing right now
_active_lock = threading.Lock()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------------------------ output locations

def _not_writable(folder: Path) -> str | None:
    """Why this process cannot create entries in ``folder``, or None if it can (permission bits, then a real
    try, which also catches read-only mounts, root squash and exhausted inodes)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable by this user"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".descbench-write-test.", dir=folder))
    except OSError as exc:
        code = errno.errorcode.get(exc.errno, "") if isinstance(exc.errno, int) else ""
        return f"cannot create files in the folder {folder} ({exc.strerror or exc}{f' [{code}]' if code else ''})"
    return None


def check_writable(path: str | os.PathLike, *, option: str = "--out", replace: bool = False) -> Path:
    """Check, before any work starts, that the output ``path`` (a file or folder, existing or to be
    created) can be written; returns it made absolute.

    An existing folder must be writable (outputs are created in it); otherwise the nearest existing ancestor
    must be a writable folder. ``replace=True`` is for a target that is replaced as a whole by renaming a
    staging sibling into place (``atomic_dir``/``atomic_path``): then the nearest existing ancestor of its
    parent must be a writable folder, and an existing ``path`` folder too (its old content is deleted).
    Raises ``DescbenchError`` "cannot write PATH: REASON; choose another OPTION".
    """
    path = Path(os.path.abspath(os.fspath(path)))

    def refuse(reason: str) -> DescbenchError:
        return DescbenchError(f"cannot write {path}: {reason}; choose another {option}")

    folders = []
    if path.is_dir():
        folders.append(path)
    if replace or not path.is_dir():
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            if folder.is_symlink():
                raise refuse(f"{folder} is a broken symbolic link")
            folder = folder.parent
        if not folder.is_dir():
            raise refuse(f"{folder} is a file, not a folder")
        folders.insert(0, folder)
    for folder in folders:
        reason = _not_writable(folder)
        if reason:
            raise refuse(reason)
    return path


def free_bytes(path: str | os.PathLike) -> int:
    """Free space (for this user) on the file system that holds ``path`` or its nearest existing ancestor."""
    path = Path(os.path.abspath(os.fspath(path)))
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def _size(n_bytes: int, up: bool = True) -> str:
    """``n_bytes`` in GB (1e9) from 1 GB on, else in MB; rounded up (needs) or down (what is available)."""
    unit, scale, step = ("GB", 1e9, 10) if n_bytes >= 1e9 else ("MB", 1e6, 1)
    value = n_bytes / scale * step
    value = (-(-value // 1) if up else value // 1) / step
    return f"{value:.1f} {unit}" if unit == "GB" else f"{value:.0f} {unit}"


def disk_full_error(path: str | os.PathLike, need_bytes: int | None = None,
                    cause: BaseException | None = None) -> DescbenchError:
    """The ``DescbenchError`` for a full disk at ``path``: "disk full at PATH, need ~N GB free (...)"."""
    try:
        available = f"{_size(free_bytes(path), up=False)} available"
    except OSError:
        available = "free space unknown"
    need = f"need ~{_size(need_bytes)} free" if need_bytes else "need more free space"
    why = f"; {type(cause).__name__}: {cause}" if cause is not None else ""
    return DescbenchError(f"disk full at {path}, {need} ({available}{why}); free some space there or write "
                          "the output elsewhere")


def check_free_space(path: str | os.PathLike, need_bytes: int) -> None:
    """Raise the disk-full ``DescbenchError`` now if the file system of ``path`` has under ``need_bytes`` free."""
    if free_bytes(path) < need_bytes:
        raise disk_full_error(path, need_bytes)


def _is_disk_full(exc: BaseException, where: Path) -> bool:
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
        return True
    if isinstance(exc, DescbenchError) or not isinstance(exc, Exception):
        return False
    try:  # e.g. torch.save wraps the failed write in a RuntimeError
        return free_bytes(where) < NEARLY_FULL_BYTES
    except OSError:
        return False


@contextlib.contextmanager
def _disk_full_as_error(target: Path, where: Path, need_bytes: int | None) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if _is_disk_full(exc, where):
            raise disk_full_error(target, need_bytes, exc) from exc
        raise


def preallocate(fd: int, n_bytes: int) -> None:
    """Reserve ``n_bytes`` for the open file ``fd`` (``posix_fallocate``), so a full disk shows up as an
    ENOSPC ``OSError`` now rather than later; a no-op where the system or file system cannot do it."""
    if n_bytes <= 0 or not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fd, 0, n_bytes)
    except OSError as exc:
        if exc.errno in _DISK_FULL_ERRNOS:
            raise
        log.debug("posix_fallocate not supported here (%s); writing without reserving space", exc)


# ------------------------------------------------------------------------------------------ staging

def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname().split(".")[0])[:32] or "host"


def _staging_prefix(target: Path) -> str:
    return f".{target.name}.{_host_tag()}-{os.getpid()}."


def _staging_pattern(target: Path) -> re.Pattern[str]:
    name = re.escape(target.name)
    return re.compile(rf"\.{name}\.(?:(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+|[A-Za-z0-9_]{{8}})"
                      rf"\.tmp(?:\..*)?")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def _untouched_for(path: Path, seconds: float) -> bool:
    limit = time.time() - seconds
    try:
        if path.lstat().st_mtime > limit:
            return False
        if path.is_dir() and not path.is_symlink():
            for folder, dirs, files in os.walk(path):
                for name in dirs + files:
                    if os.lstat(os.path.join(folder, name)).st_mtime > limit:
                        return False
    except FileNotFoundError:
        pass
    return True


def _lock(fd: int) -> bool:
    """Take an exclusive flock on ``fd`` without waiting; False if someone else holds one."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # a file system without locks: the PID rule alone decides
        return True
    return True


def _writer_gone(path: Path, match: re.Match[str]) -> bool:
    pid, host = match["pid"], match["host"]
    if pid is not None and host == _host_tag():
        if int(pid) == os.getpid():
            with _active_lock:
                return str(path) not in _active_staging
        return not _pid_alive(int(pid))
    return _untouched_for(path, STALE_AFTER_S)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def clean_stale_staging(target: str | os.PathLike) -> list[Path]:
    """Remove what interrupted ``atomic_path``/``atomic_dir`` runs for ``target`` left next to it
    (``.<name>.*.tmp*``), by the rule in this module's docstring; returns the removed paths."""
    target = Path(target)
    if os.name != "posix":
        return []
    pattern, prefix = _staging_pattern(target), f".{target.name}."
    try:
        with os.scandir(target.parent) as scan:
            entries = [e.name for e in scan if e.name.startswith(prefix)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for name in entries:
        path = target.parent / name
        match = pattern.fullmatch(name)
        if match is None or path.is_symlink() or not _writer_gone(path, match):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot check leftover %s (%s); leaving it", path, exc)
            continue
        try:
            if not _lock(fd):
                continue
            _remove(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot remove leftover %s of an interrupted run (%s)", path, exc)
            continue
        finally:
            os.close(fd)
        log.info("removed %s, left by an interrupted run", path)
        removed.append(path)
    return removed


def _unregister(*paths: Path) -> None:
    with _active_lock:
        _active_staging.difference_update(map(str, paths))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", *, need_bytes: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    ``suffix`` lets writers that append an extension themselves (``np.save``) keep it. Leftovers of killed
    earlier writes of ``path`` are removed first (``clean_stale_staging``). With ``need_bytes`` the free space
    is checked before the block runs; a full disk during the block raises the disk-full ``DescbenchError``.
    """
    path = Path(path)
    with _disk_full_as_error(path, path.parent, need_bytes):
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_staging(path)
        if need_bytes:
            check_free_space(path, need_bytes)
        with _active_lock:  # created and registered at once: a cleaner in this process never sees it unclaimed
            fd, tmp = tempfile.mkstemp(prefix=_staging_prefix(path), suffix=".tmp" + suffix, dir=path.parent)
            tmp_path = Path(tmp)
            _active_staging.add(tmp)
        try:
            _lock(fd)
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
            with _disk_full_as_error(path, path.parent, need_bytes):  # measured before the cleanup
                yield tmp_path
            os.replace(tmp_path, path)
        finally:
            os.close(fd)
            if os.path.lexists(tmp_path):
                tmp_path.unlink()
            _unregister(tmp_path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, need_bytes: int | None = None) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; it replaces ``path`` only if the block succeeds.

    Leftovers, ``need_bytes`` and full disks as in ``atomic_path``. The previous ``path`` is renamed aside
    and deleted only after the new one is in place.
    """
    path = Path(path)
    with _disk_full_as_error(path, path.parent, need_bytes):
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_staging(path)
        if need_bytes:
            check_free_space(path, need_bytes)
        with _active_lock:
            tmp = Path(tempfile.mkdtemp(prefix=_staging_prefix(path), suffix=".tmp", dir=path.parent))
            aside = tmp.with_name(tmp.name + ".old")
            _active_staging.update((str(tmp), str(aside)))
        fd = None
        try:
            if fcntl is not None:
                fd = os.open(tmp, os.O_RDONLY)
                _lock(fd)
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
            with _disk_full_as_error(path, path.parent, need_bytes):  # measured before the cleanup
                yield tmp
            if os.path.lexists(path):
                os.replace(path, aside)
                try:
                    os.replace(tmp, path)
                except BaseException:
                    os.replace(aside, path)
                    raise
                try:
                    _remove(aside)
                except OSError as exc:
                    log.warning("cannot remove the previous %s, renamed to %s (%s)", path, aside, exc)
            else:
                os.replace(tmp, path)
        finally:
            if fd is not None:
                os.close(fd)
            if os.path.lexists(tmp):
                _remove(tmp)
            if os.path.lexists(aside) and os.path.lexists(path):  # else it holds the only copy: keep it
                _remove(aside)
            _unregister(tmp, aside)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_csv(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    """A table as pandas writes it without the index, with ``\n`` line ends on every platform."""
    write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    import numpy as np

    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def file_digests(path: str | os.PathLike, algorithms: Iterable[str]) -> dict[str, str]:
    """Hex digests of ``path`` for every algorithm (md5, sha1, sha256, git-blob), in one read."""
    path = Path(path)
    size = path.stat().st_size
    hashers = {}
    for algorithm in set(algorithms):
        if algorithm == "git-blob":
            hashers[algorithm] = hashlib.sha1(b"blob %d\0" % size)
        else:
            hashers[algorithm] = hashlib.new(algorithm)
    with open(path, "rb") as f, progress(total=size, unit="B", unit_scale=True, unit_divisor=1024,
                                         desc=f"verify {path.name}", leave=False, logger=log) as bar:
        while chunk := f.read(_READ_BYTES):
            for hasher in hashers.values():
                hasher.update(chunk)
            bar.update(len(chunk))
    return {algorithm: hasher.hexdigest() for algorithm, hasher in hashers.items()}


def sha256_file(path: str | os.PathLike) -> str:
    return file_digests(path, ("sha256",))["sha256"]


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
