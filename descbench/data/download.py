"""Download, verify and unpack the benchmark data (``descbench download``).

A file is fetched from its mirrors in order. Each mirror is retried with exponential backoff after
connection errors and HTTP 5xx; a partial file (``.<name>.part`` plus a ``.json`` note of its URL)
resumes with an HTTP Range request, in the same run or the next. Nothing reaches its final name before
its checksum passes (MD5, SHA-1, SHA-256 or git blob id, per mirror); a file that fails is removed.
Archives are unpacked into a staging folder that refuses absolute paths, ``..`` and links leading out
of it, one top folder (or a chain of them) is dropped, the content is counted against the catalogue,
and only then the folder is renamed into place. ``DATA/raw/archives/<file>.meta.json`` records where
each archive came from and its SHA-256, so a rerun verifies instead of downloading again.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import json
import logging
import math
import os
import posixpath
import re
import shutil
import stat
import tarfile
import time
import urllib.parse
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import requests
import urllib3
from tqdm import tqdm

from descbench import __version__
from descbench.data.sources import (TEST_PAIRS_FILE, Checksum, HPatchesSource, Mirror, RemoteFile,
                                    TaskFilesSource, UBCSetSource)
from descbench.errors import DescbenchError
from descbench.fileio import atomic_dir, atomic_path, file_digests, write_json

log = logging.getLogger(__name__)

_READ_BYTES = 1 << 20
_MAX_BACKOFF_S = 60.0
_IGNORED_ENTRIES = frozenset({"__MACOSX", ".DS_Store"})  # junk that macOS zip tools add


@dataclass(frozen=True)
class HttpOptions:
    """How hard to try one mirror: ``retries`` after a connection error or 5xx, waiting ``backoff_s``,
    then twice that, and so on (capped at a minute)."""

    retries: int = 5
    backoff_s: float = 2.0
    timeout_s: float = 60.0


class ChecksumMismatchError(DescbenchError):
    """A file's digest differs from the published (or pinned, or recorded) one."""


@dataclass(frozen=True)
class FetchResult:
    """One verified file: where it is, where it came from, and what vouches for it."""

    name: str
    path: Path
    origin: str  # URL, or the local file it was taken from
    sha256: str
    verified_by: str  # the checksum that passed, or a note that none is published
    pinned: bool  # False when no published or user-pinned checksum was checked
    reused: bool  # True when it was already there and only re-verified


@dataclass(frozen=True)
class DatasetResult:
    """A downloaded dataset folder, what it holds, and the verified files it was made from."""

    name: str
    folder: Path
    summary: str
    files: tuple[FetchResult, ...]
    reused: bool


# --------------------------------------------------------------------------------------------- checksums

@dataclass(frozen=True)
class _Verified:
    sha256: str
    verified_by: str
    pinned: bool


def _verify(path: Path, label: str, known: tuple[Checksum, ...], allow_unpinned: bool,
            expect_sha256: str | None, recorded_sha256: str | None = None) -> _Verified:
    """Check ``path`` against, in this order of authority: the user's pin, the SHA-256 recorded when it was
    first verified, the published checksums (any one may match). Without any of these, accept only if
    ``allow_unpinned`` (a mirror that publishes none)."""
    digests = file_digests(path, {"sha256", *(c.algorithm for c in known)})
    sha256 = digests["sha256"]

    def mismatch(expected: str) -> ChecksumMismatchError:
        return ChecksumMismatchError(f"checksum mismatch for {label}: expected {expected}, got "
                                     + ", ".join(f"{a} {digests[a]}" for a in sorted(digests)))

    if expect_sha256:
        if sha256 != expect_sha256.lower():
            raise mismatch(f"sha256 {expect_sha256.lower()} (--expect-sha256)")
        return _Verified(sha256, "sha256 matches --expect-sha256", True)
    if recorded_sha256 and sha256 != recorded_sha256:
        raise mismatch(f"sha256 {recorded_sha256} (recorded when the file was first verified)")
    for checksum in known:
        if digests[checksum.algorithm] == checksum.value:
            return _Verified(sha256, f"{checksum.algorithm} matches {checksum.source}", True)
    if known and not allow_unpinned:
        raise mismatch(" or ".join(c.describe() for c in known))
    if recorded_sha256:
        return _Verified(sha256, "sha256 matches the one recorded at first download", False)
    return _Verified(sha256, "no published checksum; sha256 recorded", False)


# ------------------------------------------------------------------------------------------------- fetch

class _MirrorFailed(Exception):
    """This mirror cannot deliver the file; the next one is tried."""


class _Retryable(Exception):
    """A transient failure (5xx, dropped connection): retry the same mirror after a pause."""


_NOT_RETRIED = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema, requests.exceptions.TooManyRedirects)


def _meta_path(dest_dir: Path, filename: str) -> Path:
    return dest_dir / f"{filename}.meta.json"


def _partial_paths(dest_dir: Path, mirror: Mirror) -> tuple[Path, Path]:
    """Where a mirror's unfinished download and its note (URL, size, validator) live; one pair per URL,
    so trying a fallback mirror never discards another mirror's partial file."""
    key = hashlib.sha1(mirror.url.encode()).hexdigest()[:10]
    part = dest_dir / f".{mirror.filename}.{key}.part"
    return part, part.with_name(part.name + ".json")


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _write_meta(dest_dir: Path, filename: str, path: Path, origin: str, verified: _Verified) -> None:
    write_json(_meta_path(dest_dir, filename), {
        "file": filename,
        "path": str(path.resolve()),
        "origin": origin,
        "size": path.stat().st_size,
        "sha256": verified.sha256,
        "verified_by": verified.verified_by,
        "pinned": verified.pinned,
        "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })


def fetch(remote: RemoteFile, dest_dir: Path, *, http: HttpOptions = HttpOptions(),
          expect_sha256: str | None = None, from_dir: Path | None = None, copy_from_dir: bool = False,
          record_meta: bool = True, session: requests.Session | None = None) -> FetchResult:
    """Make a verified copy of ``remote`` available and return where it is.

    Order: a copy already verified earlier (re-verified), then ``from_dir`` (the user's files; no network
    is used with it; kept in place unless ``copy_from_dir``), then the mirrors in order. ``record_meta``
    writes ``<dest_dir>/<file>.meta.json`` (origin, SHA-256) next to the file.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    known = tuple(m.checksum for m in remote.mirrors if m.checksum is not None)
    allow_unpinned = any(m.checksum is None for m in remote.mirrors)

    existing = _reuse_existing(remote, dest_dir, known, allow_unpinned, expect_sha256, record_meta)
    if existing is not None:
        return existing
    if from_dir is not None:
        return _take_from_dir(remote, dest_dir, Path(from_dir), known, allow_unpinned, expect_sha256,
                              copy_from_dir, record_meta)

    own_session = session is None
    if own_session:
        session = requests.Session()
        session.headers["User-Agent"] = f"descbench/{__version__}"
    failures = []
    try:
        for mirror in remote.mirrors:
            part, note = _partial_paths(dest_dir, mirror)
            try:
                _download(mirror, part, note, http, session)
            except _MirrorFailed as exc:
                log.warning("%s: %s", mirror.url, exc)
                failures.append(f"{mirror.url}: {exc}")
                continue
            try:
                verified = _verify(part, mirror.filename, (mirror.checksum,) if mirror.checksum else (),
                                   mirror.checksum is None, expect_sha256)
            except ChecksumMismatchError as exc:
                _remove(part, note)
                log.warning("%s: %s; removed the download", mirror.url, exc)
                failures.append(f"{mirror.url}: {exc}; the downloaded file was removed")
                continue
            dest = dest_dir / mirror.filename
            os.replace(part, dest)
            _remove(note, *dest_dir.glob(f".{glob.escape(mirror.filename)}.*.part*"))
            if record_meta:
                _write_meta(dest_dir, mirror.filename, dest, mirror.url, verified)
            log.info("%s: downloaded from %s (%s)", mirror.filename, mirror.url, verified.verified_by)
            return FetchResult(remote.name, dest, mirror.url, verified.sha256, verified.verified_by,
                               verified.pinned, reused=False)
    finally:
        if own_session:
            session.close()
    raise DescbenchError(f"could not get a verified copy of {remote.name} from any mirror:\n  "
                         + "\n  ".join(failures)
                         + "\nCheck the network, or download the file yourself and pass its folder with --from-dir.")


def _reuse_existing(remote: RemoteFile, dest_dir: Path, known: tuple[Checksum, ...], allow_unpinned: bool,
                    expect_sha256: str | None, record_meta: bool) -> FetchResult | None:
    """A copy verified in an earlier run (in ``dest_dir``, or where its meta.json says) if it still verifies."""
    for filename in remote.filenames:
        meta = _read_json(_meta_path(dest_dir, filename)) if record_meta else None
        candidates = [dest_dir / filename]
        if meta and meta.get("path") and Path(meta["path"]) != candidates[0].resolve():
            candidates.append(Path(meta["path"]))
        for path in candidates:
            if not path.is_file():
                continue
            try:
                verified = _verify(path, filename, known, allow_unpinned, expect_sha256,
                                   meta.get("sha256") if meta else None)
            except ChecksumMismatchError as exc:
                if path.parent != dest_dir:
                    raise DescbenchError(f"{exc}. It was verified earlier as {path}; restore it, or delete "
                                         f"{_meta_path(dest_dir, filename)} to download it again") from exc
                log.warning("%s: %s; downloading it again", path, exc)
                _remove(path, _meta_path(dest_dir, filename))
                continue
            if record_meta and meta is None:
                _write_meta(dest_dir, filename, path, str(path.resolve()), verified)
            origin = meta.get("origin", str(path)) if meta else str(path)
            return FetchResult(remote.name, path, origin, verified.sha256, verified.verified_by,
                               verified.pinned, reused=True)
    return None


def _take_from_dir(remote: RemoteFile, dest_dir: Path, from_dir: Path, known: tuple[Checksum, ...],
                   allow_unpinned: bool, expect_sha256: str | None, copy: bool, record_meta: bool) -> FetchResult:
    """Verify the user's own copy (found by file name under ``from_dir``) the same way as a download."""
    if not from_dir.is_dir():
        raise DescbenchError(f"--from-dir {from_dir} is not a folder")
    candidates: list[Path] = []
    for filename in remote.filenames:
        candidates += [from_dir / filename] if (from_dir / filename).is_file() else []
        candidates += [p for p in sorted(from_dir.rglob(filename)) if p.is_file() and p not in candidates]
    if not candidates:
        raise DescbenchError(f"--from-dir {from_dir}: no file named {' or '.join(remote.filenames)} in it or "
                             f"its subfolders; it is published at {remote.mirrors[0].url}")
    failures = []
    for candidate in candidates:
        try:
            verified = _verify(candidate, str(candidate), known, allow_unpinned, expect_sha256)
        except ChecksumMismatchError as exc:
            failures.append(str(exc))
            continue
        path = candidate
        if copy:
            path = dest_dir / candidate.name
            with atomic_path(path) as tmp:
                shutil.copyfile(candidate, tmp)
        if record_meta:
            _write_meta(dest_dir, candidate.name, path, str(candidate.resolve()), verified)
        return FetchResult(remote.name, path, str(candidate), verified.sha256, verified.verified_by,
                           verified.pinned, reused=False)
    raise DescbenchError("no verified copy of " + remote.name + " in --from-dir:\n  " + "\n  ".join(failures))


def _download(mirror: Mirror, part: Path, note: Path, http: HttpOptions, session: requests.Session) -> None:
    """Bring ``part`` to the complete content of ``mirror.url``, resuming what an earlier try left."""
    failures_in_a_row = 0
    while True:
        state = _read_json(note) or {}
        offset = part.stat().st_size if part.exists() and state.get("url") == mirror.url else 0
        if offset == 0:
            _remove(part, note)
            state = {}
        elif state.get("total") == offset:
            return
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if state.get("validator"):
                headers["If-Range"] = state["validator"]
        received = 0
        try:
            with session.get(mirror.url, headers=headers, stream=True, timeout=http.timeout_s) as response:
                total = _start_body(response, mirror.url, offset, part, note)
                if response.status_code == 200 and offset:
                    log.info("%s: the server sent the whole file instead of the rest; starting over",
                             mirror.url)
                    offset = 0
                with open(part, "ab" if offset else "wb") as out, \
                        tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                             desc=mirror.filename) as bar:
                    try:
                        for chunk in response.raw.stream(_READ_BYTES, decode_content=False):
                            out.write(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
                    except (urllib3.exceptions.HTTPError, requests.RequestException) as exc:
                        broken = exc
                    else:
                        broken = None
            size = part.stat().st_size
            if broken is not None or (total is not None and size != total):
                cause = f" ({type(broken).__name__})" if broken is not None else ""
                raise _Retryable(f"the connection broke after {size:,} of "
                                 f"{'?' if total is None else f'{total:,}'} bytes{cause}")
            return
        except _NOT_RETRIED as exc:  # malformed URL, redirect loop: the same request would fail again
            raise _MirrorFailed(str(exc)) from exc
        except (_Retryable, requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            if _host_not_found(exc):
                raise _MirrorFailed(f"host {urllib.parse.urlsplit(mirror.url).hostname} not found") from exc
            failures_in_a_row = 1 if received else failures_in_a_row + 1
            if failures_in_a_row > http.retries:
                raise _MirrorFailed(f"{exc} (gave up after {http.retries} retries)") from exc
            delay = min(_MAX_BACKOFF_S, http.backoff_s * 2 ** (failures_in_a_row - 1))
            log.warning("%s: %s; retrying in %.1f s (%d of %d)", mirror.url, exc, delay, failures_in_a_row,
                        http.retries)
            time.sleep(delay)


def _host_not_found(exc: BaseException) -> bool:
    """Whether DNS has no such host (a dead mirror's domain), somewhere in the chain of wrapped errors."""
    pending, seen = [exc], set()
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, urllib3.exceptions.NameResolutionError):
            return True
        pending += [arg for arg in error.args if isinstance(arg, BaseException)]
        pending += [getattr(error, "reason", None), error.__cause__, error.__context__]
    return False


def _start_body(response: requests.Response, url: str, offset: int, part: Path, note: Path) -> int | None:
    """Check the status of a (ranged) GET; return the full size if the server says it. Raises
    ``_Retryable`` for 5xx/429 and a range the server could not serve, ``_MirrorFailed`` for other errors."""
    code = response.status_code
    if code >= 500 or code == 429:
        raise _Retryable(f"HTTP {code} {response.reason}")
    if code == 416:
        _remove(part, note)
        raise _Retryable(f"HTTP 416: the server cannot resume at byte {offset:,}; the partial file was dropped")
    if code >= 400:
        raise _MirrorFailed(f"HTTP {code} {response.reason}")
    if code == 206:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != offset:
            _remove(part, note)
            raise _Retryable(f"the server resumed at a different byte ({response.headers.get('Content-Range')!r}) "
                             f"than {offset:,}; the partial file was dropped")
        return None if match.group(3) == "*" else int(match.group(3))
    if code != 200:
        raise _MirrorFailed(f"unexpected HTTP {code} {response.reason}")
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    etag = response.headers.get("ETag", "")
    validator = etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified")
    write_json(note, {"url": url, "total": total, "validator": validator})
    return total


# ----------------------------------------------------------------------------------------------- extract

def _unsafe_name(name: str) -> str | None:
    """Why an archive member name would land outside the target folder, or None if it would not."""
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "it is an absolute path"
    if ".." in re.split(r"[/\\]+", name):
        return "it contains '..'"
    return None


def _link_leaves(member: str, target: str, relative_to_member: bool) -> bool:
    """Whether a link ``member`` -> ``target`` points outside the extraction folder."""
    target = target.replace("\\", "/")
    if target.startswith("/") or re.match(r"[A-Za-z]:", target):
        return True
    base = posixpath.dirname(member.replace("\\", "/")) if relative_to_member else ""
    resolved = posixpath.normpath(posixpath.join(base, target))
    return resolved == ".." or resolved.startswith("../")


def _refuse(archive: Path, member: str, reason: str) -> DescbenchError:
    return DescbenchError(f"{archive}: refusing to extract member {member!r}: {reason}. The archive is damaged "
                          "or not the published one; delete it and download it again")


def safe_extract(archive: Path, dest: Path) -> None:
    """Unpack a zip or tar archive into the existing folder ``dest``; refuse members with absolute paths or
    ``..``, links pointing outside ``dest``, and special files, before anything is written."""
    name = archive.name.lower()
    if name.endswith(".zip") or (not re.search(r"\.(tar|tgz|tbz2|txz)(\.\w+)?$", name) and zipfile.is_zipfile(archive)):
        _extract_zip(archive, dest)
    elif tarfile.is_tarfile(archive):
        _extract_tar(archive, dest)
    else:
        raise DescbenchError(f"{archive} is neither a zip nor a tar archive; delete it and download it again")


def _extract_zip(archive: Path, dest: Path) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise DescbenchError(f"{archive}: not a readable zip file ({exc}); delete it and download it again") from exc
    with zf:
        members = zf.infolist()
        links = {}
        for info in members:
            reason = _unsafe_name(info.filename)
            if reason is None and stat.S_ISLNK(info.external_attr >> 16):
                links[info.filename] = zf.read(info).decode("utf-8", "surrogateescape")
                if _link_leaves(info.filename, links[info.filename], relative_to_member=True):
                    reason = f"it is a symbolic link to {links[info.filename]!r}, outside the target folder"
            if reason:
                raise _refuse(archive, info.filename, reason)
        root = dest.resolve()
        for info in tqdm(members, desc=f"unzip {archive.name}", unit="file", leave=False):
            out = dest / info.filename
            if not out.resolve().is_relative_to(root):  # a parent is an in-archive link that leads out
                raise _refuse(archive, info.filename, "it would be written outside the target folder")
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            if info.filename in links:
                os.symlink(links[info.filename], out)
                continue
            try:
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, _READ_BYTES)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise DescbenchError(f"{archive}: member {info.filename!r} cannot be read ({exc}); the archive "
                                     "is damaged, delete it and download it again") from exc


def _extract_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for member in members:
                reason = _unsafe_name(member.name)
                if reason is None and member.issym() and _link_leaves(member.name, member.linkname, True):
                    reason = f"it is a symbolic link to {member.linkname!r}, outside the target folder"
                if reason is None and member.islnk() and (_unsafe_name(member.linkname)
                                                          or _link_leaves(member.name, member.linkname, False)):
                    reason = f"it is a hard link to {member.linkname!r}, outside the target folder"
                if reason is None and not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                    reason = "it is a device, FIFO or other special file"
                if reason:
                    raise _refuse(archive, member.name, reason)
            for member in tqdm(members, desc=f"untar {archive.name}", unit="file", leave=False):
                tf.extract(member, dest, filter="data")  # the stdlib's own guard against what slipped through
    except tarfile.FilterError as exc:
        raise _refuse(archive, exc.tarinfo.name, str(exc)) from exc
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DescbenchError(f"{archive}: cannot be unpacked ({exc}); the archive is damaged, delete it and "
                             "download it again") from exc


def _content_root(folder: Path) -> Path:
    """Descend through single top folders (``liberty/`` or ``hpatches-release/``), so zips made with or
    without one unpack to the same layout."""
    while True:
        entries = [e for e in folder.iterdir() if e.name not in _IGNORED_ENTRIES]
        if len(entries) != 1 or not entries[0].is_dir() or entries[0].is_symlink():
            return folder
        folder = entries[0]


def extract_archive(archive: Path, target: Path, validate: Callable[[Path], str]) -> str:
    """Unpack ``archive`` so its content (without top folders) becomes ``target``; ``validate`` checks the
    content first and returns its summary. On any error ``target`` is left as it was."""
    with atomic_dir(target) as staging:
        unpacked = staging / ".unpacked"
        unpacked.mkdir()
        safe_extract(archive, unpacked)
        root = _content_root(unpacked)
        for entry in list(root.iterdir()):
            if entry.name not in _IGNORED_ENTRIES:
                os.replace(entry, staging / entry.name)
        shutil.rmtree(unpacked)
        try:
            return validate(staging)
        except DescbenchError as exc:
            raise DescbenchError(f"{archive} does not hold the expected data: {exc}. Delete the archive and "
                                 "its .meta.json and download it again") from exc


# ---------------------------------------------------------------------------------------- content checks

def count_lines(path: Path) -> int:
    """Number of lines, counting a last line without a newline."""
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(_READ_BYTES):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


def validate_ubc_folder(folder: Path, source: UBCSetSource) -> str:
    """Check the unpacked UBC set: one info.txt line per patch, enough 16x16 BMP tiles for them, and the
    standard test pairs file with its 100,000 pairs."""
    problems = []
    info = folder / "info.txt"
    if info.is_file():
        n_info = count_lines(info)
        if n_info != source.n_patches:
            problems.append(f"info.txt has {n_info:,} lines, expected {source.n_patches:,} (one per patch)")
    else:
        problems.append("info.txt is missing")
    tiles = sorted(folder.glob("patches*.bmp"))
    needed = math.ceil(source.n_patches / source.patches_per_tile)
    if len(tiles) < needed:
        problems.append(f"{len(tiles):,} patches*.bmp tiles, expected at least {needed:,} "
                        f"({source.n_patches:,} patches, {source.patches_per_tile} per tile)")
    pairs = folder / TEST_PAIRS_FILE
    if pairs.is_file():
        n_pairs = count_lines(pairs)
        if n_pairs != source.n_test_pairs:
            problems.append(f"{TEST_PAIRS_FILE} has {n_pairs:,} lines, expected {source.n_test_pairs:,}")
    else:
        problems.append(f"{TEST_PAIRS_FILE} is missing")
    if problems:
        raise DescbenchError(f"UBC set {source.name}: " + "; ".join(problems))
    return f"{source.n_patches:,} patches in {len(tiles):,} tiles, {source.n_test_pairs:,} test pairs"


def validate_hpatches_folder(folder: Path, source: HPatchesSource) -> str:
    """Check the unpacked release: the expected number of i_/v_ sequence folders, each with its 16 PNGs."""
    sequences = sorted(d for d in folder.iterdir() if d.is_dir() and d.name not in _IGNORED_ENTRIES)
    problems = []
    if len(sequences) != source.n_sequences:
        problems.append(f"{len(sequences)} sequence folders, expected {source.n_sequences}")
    misnamed = [d.name for d in sequences if not d.name.startswith(("i_", "v_"))]
    if misnamed:
        more = " ..." if len(misnamed) > 5 else ""
        problems.append(f"folders not named i_* or v_*: {', '.join(misnamed[:5])}{more}")
    incomplete = [(d.name, missing) for d in sequences
                  if (missing := [f for f in source.image_files if not (d / f).is_file()])]
    for name, missing in incomplete[:5]:
        problems.append(f"{name} lacks {', '.join(missing)}")
    if len(incomplete) > 5:
        problems.append(f"and {len(incomplete) - 5} more incomplete sequences")
    if problems:
        raise DescbenchError("HPatches release: " + "; ".join(problems))
    n_illum = sum(d.name.startswith("i_") for d in sequences)
    return (f"{len(sequences)} sequences ({n_illum} i_, {len(sequences) - n_illum} v_) x "
            f"{len(source.image_files)} PNGs")


# ------------------------------------------------------------------------------------------------ datasets

def download_ubc_set(source: UBCSetSource, root: Path, *, http: HttpOptions = HttpOptions(),
                     expect_sha256: str | None = None, from_dir: Path | None = None,
                     session: requests.Session | None = None) -> DatasetResult:
    """``DATA/raw/ubc/<set>/`` from the set's verified archive in ``DATA/raw/archives/``."""
    return _archive_dataset(source.name, source.archive, Path(root) / "raw" / "ubc" / source.name,
                            lambda folder: validate_ubc_folder(folder, source), Path(root), http,
                            expect_sha256, from_dir, session)


def download_hpatches(source: HPatchesSource, root: Path, *, http: HttpOptions = HttpOptions(),
                      expect_sha256: str | None = None, from_dir: Path | None = None,
                      session: requests.Session | None = None) -> DatasetResult:
    """``DATA/raw/hpatches-release/<seq>/`` from the verified release archive in ``DATA/raw/archives/``."""
    return _archive_dataset(source.archive.name, source.archive, Path(root) / "raw" / "hpatches-release",
                            lambda folder: validate_hpatches_folder(folder, source), Path(root), http,
                            expect_sha256, from_dir, session)


def download_hpatches_tasks(source: TaskFilesSource, root: Path, *, http: HttpOptions = HttpOptions(),
                            from_dir: Path | None = None, session: requests.Session | None = None) -> DatasetResult:
    """``DATA/raw/hpatches-tasks/``: splits.json and the task csvs side by side, each matching its git blob id."""
    folder = Path(root) / "raw" / "hpatches-tasks"
    files = tuple(fetch(remote, folder, http=http, from_dir=from_dir, copy_from_dir=True, record_meta=False,
                        session=session) for remote in source.files)
    n_pinned = sum(f.pinned for f in files)
    return DatasetResult("hpatches-tasks", folder, f"{len(files)} task files, {n_pinned} matching a published "
                         "checksum", files, reused=all(f.reused for f in files))


def _archive_dataset(name: str, remote: RemoteFile, target: Path, validate: Callable[[Path], str], root: Path,
                     http: HttpOptions, expect_sha256: str | None, from_dir: Path | None,
                     session: requests.Session | None) -> DatasetResult:
    archives = root / "raw" / "archives"
    summary = None
    if target.is_dir():
        try:
            summary = validate(target)
        except DescbenchError as exc:
            log.warning("%s: %s; unpacking it again", target, exc)
    fetched = _recorded_only(remote, archives, expect_sha256) if summary else None
    if fetched is None:
        fetched = fetch(remote, archives, http=http, expect_sha256=expect_sha256, from_dir=from_dir,
                        session=session)
    if summary is not None and fetched.reused:
        return DatasetResult(name, target, summary, (fetched,), reused=True)
    log.info("unpacking %s into %s", fetched.path, target)
    summary = extract_archive(fetched.path, target, validate)
    return DatasetResult(name, target, summary, (fetched,), reused=False)


def _recorded_only(remote: RemoteFile, archives: Path, expect_sha256: str | None) -> FetchResult | None:
    """For a folder already unpacked whose archive was since deleted: the archive's record, if one exists."""
    for filename in remote.filenames:
        meta = _read_json(_meta_path(archives, filename))
        if meta is None or Path(meta.get("path", "")).is_file() or (archives / filename).is_file():
            continue
        if expect_sha256 and meta.get("sha256") != expect_sha256.lower():
            raise ChecksumMismatchError(
                f"{filename} was recorded with sha256 {meta.get('sha256')} but --expect-sha256 is "
                f"{expect_sha256.lower()}; delete {_meta_path(archives, filename)} to download it again")
        return FetchResult(remote.name, Path(meta["path"]), meta.get("origin", ""), meta.get("sha256", ""),
                           meta.get("verified_by", ""), bool(meta.get("pinned")), reused=True)
    return None
