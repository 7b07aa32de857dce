"""Download, verify and unpack the benchmark data (``descbench download``).

A file is fetched from its mirrors in order. Each mirror is retried with exponential backoff after
connection errors and HTTP 5xx; a partial file (``.<name>.part`` plus a ``.json`` note of its URL, size and
validator) resumes with an HTTP Range request, in the same run or the next, but only when the server gave an
ETag or Last-Modified for it: the request carries ``If-Range``, and a 206 answer must carry the same
validator, so two different versions of a file are never spliced (without a validator the download starts
over). A mirror that delivers fewer than ``HttpOptions.stall_min_bytes`` in ``stall_window_s`` seconds is
given up like any failed mirror, and so is one that redirects from https to plain http. Nothing reaches its
final name before its checksum passes (MD5, SHA-1, SHA-256 or git blob id, per mirror); a file that fails is
removed. A mirror without a checksum (the Hugging Face HPatches zip) cannot prove a download complete, so an
archive from it is read through first (every zip CRC; every tar member and the compressed stream's trailer)
and deleted if that fails.

Archives are unpacked into a staging folder. Refused before anything is written: absolute paths, ``..``,
special files, symbolic links unless their target is a relative path without ``..`` (such a link can only
point into its own folder or below, whatever other links the archive holds, so chains of links cannot leave
the folder), and archives whose members add up to more than the dataset can hold
(``ExtractLimits.max_bytes``, from the dataset's known size) or unpack to more than ``max_ratio`` times their
compressed size (zip bombs); the byte counts are also enforced while writing. One top folder (or a chain of
them) is dropped, every link is checked once more on disk, the content is counted against the catalogue, and
only then the folder is renamed into place. An archive without a published checksum that cannot be unpacked
is deleted (with its record) so the next run downloads it again; a full disk is reported as such and the
archive is kept. ``DATA/raw/archives/<file>.meta.json`` records where each archive came from (the mirror and
the final URL after redirects) and its SHA-256, so a rerun verifies instead of downloading again.

``--from-dir`` takes the user's archives in place; one that is a symbolic link (or lies under a linked folder)
whose real location is outside the given folder is not used: the error names the link, where it leads, and
to pass that folder instead. Files that are copied in (task files, weights) are read through their link once
and the copy is what gets verified and kept.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import glob
import hashlib
import json
import logging
import lzma
import math
import os
import re
import shutil
import stat
import tarfile
import time
import urllib.parse
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import requests
import urllib3

from descbench import __version__
from descbench.data.sources import (SEQUENCE_PREFIXES, TEST_PAIRS_FILE, Checksum, HPatchesSource, Mirror,
                                    RemoteFile, TaskFilesSource, UBCSetSource)
from descbench.errors import DescbenchError
from descbench.fileio import atomic_dir, atomic_path, file_digests, write_json
from descbench.progress import progress

log = logging.getLogger(__name__)

_READ_BYTES = 1 << 20
_MAX_BACKOFF_S = 60.0
_IGNORED_ENTRIES = frozenset({"__MACOSX", ".DS_Store"})  # junk that macOS zip tools add
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_MAX_LINK_TARGET = 4096  # PATH_MAX; a longer zip symlink "target" is not one
GiB = 1 << 30


@dataclass(frozen=True)
class HttpOptions:
    """How hard to try one mirror: ``retries`` after a connection error or 5xx, waiting ``backoff_s``,
    then twice that, and so on (capped at a minute). ``timeout_s`` bounds each network read; a body that
    brings fewer than ``stall_min_bytes`` in ``stall_window_s`` seconds (a server trickling bytes just often
    enough to beat the timeout) fails the mirror, and the next one is tried."""

    retries: int = 5
    backoff_s: float = 2.0
    timeout_s: float = 60.0
    stall_window_s: float = 60.0
    stall_min_bytes: int = 64 * 1024


@dataclass(frozen=True)
class ExtractLimits:
    """What an archive may unpack to: ``max_bytes`` in all, at most ``max_ratio`` times the compressed size
    per zip member (per archive for tar; plus ``ratio_slack_bytes``, so tiny members never trip it), and
    ``max_members`` entries. The defaults are generous; the dataset downloads pass their known size."""

    max_bytes: int = 64 * GiB
    max_ratio: float = 100.0
    ratio_slack_bytes: int = 1 << 20
    max_members: int = 200_000


_UBC_TILE_BYTES = 1_049_654  # a 1024x1024 8-bit palettised BMP tile (docs/protocols.md §3.1)
_HPATCHES_RELEASE_BYTES = 4_200_000_000  # "Size of the release: 4.2 GB", 116 sequences (docs/protocols.md §1.1)


def ubc_unpack_limits(source: UBCSetSource) -> ExtractLimits:
    """Twice the BMP tiles of the set plus 1 GiB for info.txt, interest.txt, sim.txt and the m50 files
    (about 4.8 GB for liberty, which unpacks to about 2 GB)."""
    tiles = math.ceil(source.n_patches / source.patches_per_tile)
    return ExtractLimits(max_bytes=2 * tiles * _UBC_TILE_BYTES + GiB, max_members=10 * tiles + 1000)


def hpatches_unpack_limits(source: HPatchesSource) -> ExtractLimits:
    """Three times the published 4.2 GB (pro rata for fewer sequences) plus 1 GiB: about 13.7 GB."""
    share = _HPATCHES_RELEASE_BYTES * source.n_sequences / 116
    return ExtractLimits(max_bytes=int(3 * share) + GiB,
                         max_members=10 * source.n_sequences * (len(source.image_files) + 1) + 1000)


class ChecksumMismatchError(DescbenchError):
    """A file's digest differs from the published (or pinned, or recorded) one."""


_REDOWNLOAD = "The archive is damaged or not the published one; delete it and its .meta.json and download it again"


class ArchiveError(DescbenchError):
    """The archive itself is at fault (unreadable, truncated, unsafe members, a zip bomb): another copy may
    fix it. ``what`` says what is wrong, without the advice."""

    def __init__(self, what: str, advice: str = _REDOWNLOAD) -> None:
        self.what = what
        super().__init__(f"{what}. {advice}")


class ContentError(DescbenchError):
    """The archive unpacked but does not hold what the catalogue expects (kept: it may be our expectation)."""


class DiskFullError(DescbenchError):
    """No space left while unpacking or downloading; nothing is wrong with the archive."""


class MirrorsFailedError(DescbenchError):
    """No mirror delivered a verified copy (offline, every host down): the message lists each mirror's reason."""


class NotInFromDirError(DescbenchError):
    """``--from-dir`` holds no file of the wanted name."""

    def __init__(self, message: str, filename: str) -> None:
        self.filename = filename
        super().__init__(message)


def _human(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


@dataclass(frozen=True)
class FetchResult:
    """One verified file: where it is, where it came from, and what vouches for it."""

    name: str
    path: Path
    origin: str  # URL of the mirror, or the local file it was taken from
    sha256: str
    verified_by: str  # the checksum that passed, or a note that none is published
    pinned: bool  # False when no published or user-pinned checksum was checked
    reused: bool  # True when it was already there and only re-verified
    final_url: str = ""  # the URL the bytes came from after redirects ("" when not downloaded in this run)


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


class _Rejected(Exception):
    """A --from-dir candidate that did not verify (the reason is in the list of failures)."""


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


def _write_meta(dest_dir: Path, filename: str, path: Path, origin: str, verified: _Verified,
                final_url: str | None = None) -> None:
    meta = {
        "file": filename,
        "path": str(path.resolve()),
        "origin": origin,
        "size": path.stat().st_size,
        "sha256": verified.sha256,
        "verified_by": verified.verified_by,
        "pinned": verified.pinned,
        "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if final_url:
        meta["final_url"] = final_url  # where the bytes came from after redirects
    write_json(_meta_path(dest_dir, filename), meta)


def fetch(remote: RemoteFile, dest_dir: Path, *, http: HttpOptions = HttpOptions(),
          expect_sha256: str | None = None, from_dir: Path | None = None, copy_from_dir: bool = False,
          record_meta: bool = True, session: requests.Session | None = None,
          archive_limits: ExtractLimits | None = None) -> FetchResult:
    """Make a verified copy of ``remote`` available and return where it is.

    Order: a copy already verified earlier (re-verified), then ``from_dir`` (the user's files; no network
    is used with it; kept in place unless ``copy_from_dir``), then the mirrors in order. ``record_meta``
    writes ``<dest_dir>/<file>.meta.json`` (origin, final URL, SHA-256) next to the file. An archive that no
    checksum vouches for must read through intact (within ``archive_limits``) to be accepted.
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
                              copy_from_dir, record_meta, archive_limits)

    own_session = session is None
    if own_session:
        session = requests.Session()
        session.headers["User-Agent"] = f"descbench/{__version__}"
    failures = []
    try:
        for mirror in remote.mirrors:
            part, note = _partial_paths(dest_dir, mirror)
            try:
                final_url = _download(mirror, part, note, http, session)
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
            problem = None if verified.pinned else _unpinned_archive_problem(part, mirror.filename, archive_limits)
            if problem:
                _remove(part, note)
                message = (f"{problem}; no checksum is published for it, so the download was deleted and will be "
                           "downloaded again on the next try")
                log.warning("%s: %s", mirror.url, message)
                failures.append(f"{mirror.url}: {message}")
                continue
            dest = dest_dir / mirror.filename
            os.replace(part, dest)
            _remove(note, *dest_dir.glob(f".{glob.escape(mirror.filename)}.*.part*"))
            if record_meta:
                _write_meta(dest_dir, mirror.filename, dest, mirror.url, verified, final_url)
            log.info("%s: downloaded from %s (%s)", mirror.filename, final_url, verified.verified_by)
            return FetchResult(remote.name, dest, mirror.url, verified.sha256, verified.verified_by,
                               verified.pinned, reused=False, final_url=final_url)
    finally:
        if own_session:
            session.close()
    raise MirrorsFailedError(f"could not get a verified copy of {remote.name} from any mirror:\n  "
                         + "\n  ".join(failures)
                         + "\nCheck the network, or download the file yourself and pass its folder with --from-dir.")


def _unpinned_archive_problem(path: Path, filename: str, limits: ExtractLimits | None) -> str | None:
    """For a file no checksum vouches for: why it is not a complete, sound archive (None if it is one, or
    is no archive at all)."""
    if _archive_kind(path, filename) is None:
        return None
    try:
        check_archive(path, limits=limits, label=filename, kind_name=filename)
    except ArchiveError as exc:
        return exc.what
    return None


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
                               verified.pinned, reused=True, final_url=meta.get("final_url", "") if meta else "")
    return None


def _take_from_dir(remote: RemoteFile, dest_dir: Path, from_dir: Path, known: tuple[Checksum, ...],
                   allow_unpinned: bool, expect_sha256: str | None, copy: bool, record_meta: bool,
                   archive_limits: ExtractLimits | None = None) -> FetchResult:
    """Verify the user's own copy (found by file name under ``from_dir``) the same way as a download.

    Symbolic links: a file used in place (archives) must really lie inside ``from_dir``, else it is not
    used and the error names where it leads. A file that is copied in (``copy``: task files, weights) is
    read through its link once, and the copy itself is verified, so what is checked is what is kept."""
    if not from_dir.is_dir():
        raise DescbenchError(f"--from-dir {from_dir} is not a folder")
    candidates: list[Path] = []
    for filename in remote.filenames:
        candidates += [from_dir / filename] if (from_dir / filename).is_file() else []
        candidates += [p for p in sorted(from_dir.rglob(filename)) if p.is_file() and p not in candidates]
    if not candidates:
        raise NotInFromDirError(f"--from-dir {from_dir}: no file named {' or '.join(remote.filenames)} in it or "
                                f"its subfolders; it is published at {remote.mirrors[0].url}", remote.filenames[0])
    inside = from_dir.resolve()
    failures = []

    def check(path: Path, label: Path) -> _Verified | None:
        try:
            verified = _verify(path, str(label), known, allow_unpinned, expect_sha256)
        except ChecksumMismatchError as exc:
            failures.append(str(exc))
            return None
        problem = None if verified.pinned else _unpinned_archive_problem(path, label.name, archive_limits)
        if problem:
            failures.append(f"{problem}; no checksum is published for it, so this copy was not used (it was "
                            "left in place)")
            return None
        return verified

    for candidate in candidates:
        real = candidate.resolve()
        if copy:
            path = dest_dir / candidate.name
            try:
                with atomic_path(path) as tmp:
                    shutil.copyfile(candidate, tmp)
                    verified = check(tmp, candidate)
                    if verified is None:
                        raise _Rejected  # leaves the block by an exception, so the copy is not kept
            except _Rejected:
                continue
        else:
            if not real.is_relative_to(inside):
                failures.append(f"{candidate} is a symbolic link (or under a linked folder) to {real}, outside "
                                f"{from_dir}; it was not used. Pass --from-dir {real.parent}, or copy the file "
                                f"into {from_dir}")
                continue
            path = candidate
            verified = check(candidate, candidate)
            if verified is None:
                continue
        if record_meta:
            _write_meta(dest_dir, candidate.name, path, str(real), verified)
        return FetchResult(remote.name, path, str(candidate), verified.sha256, verified.verified_by,
                           verified.pinned, reused=False)
    raise DescbenchError("no verified copy of " + remote.name + " in --from-dir:\n  " + "\n  ".join(failures))


def _validator(response: requests.Response) -> str | None:
    """What identifies this version of the file: a strong ETag, else Last-Modified (None if neither)."""
    etag = response.headers.get("ETag", "")
    return etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified")


def _refuse_downgrade(response: requests.Response, *args, **kwargs) -> requests.Response:
    """A response hook, run on every hop before requests follows it: refuse https -> http redirects."""
    if response.is_redirect:
        target = urllib.parse.urljoin(response.url, response.headers.get("Location", ""))
        if urllib.parse.urlsplit(response.url).scheme == "https" and urllib.parse.urlsplit(target).scheme != "https":
            response.close()
            raise _MirrorFailed(f"{response.url} redirects to {target}, from https to plain http; refusing the "
                                "downgrade (the file could be altered on the way)")
    return response


def _download(mirror: Mirror, part: Path, note: Path, http: HttpOptions, session: requests.Session) -> str:
    """Bring ``part`` to the complete content of ``mirror.url``, resuming what an earlier try left; return
    the URL it came from after redirects."""
    failures_in_a_row = 0
    while True:
        state = _read_json(note) or {}
        offset = part.stat().st_size if part.exists() and state.get("url") == mirror.url else 0
        if offset and not state.get("validator"):
            log.info("%s: the server gave neither ETag nor Last-Modified, so the partial download cannot be "
                     "resumed safely; starting over", mirror.url)
            offset = 0
        if offset == 0:
            _remove(part, note)
            state = {}
        elif state.get("total") == offset:
            return state.get("final_url") or mirror.url
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = state["validator"]
        received = 0
        try:
            with session.get(mirror.url, headers=headers, stream=True, timeout=http.timeout_s,
                             hooks={"response": [_refuse_downgrade]}) as response:
                total = _start_body(response, mirror.url, offset, part, note, state)
                final_url = response.url
                if response.status_code == 200 and offset:
                    log.info("%s: the server sent the whole file instead of the rest; starting over",
                             mirror.url)
                    offset = 0
                try:
                    with open(part, "ab" if offset else "wb") as out, \
                            progress(total=total, initial=offset, unit="B", unit_scale=True,
                                     unit_divisor=1024, desc=mirror.filename, logger=log) as bar:
                        broken, received = _receive(response, out, bar, mirror.url, http)
                except OSError as exc:
                    if exc.errno in _DISK_FULL:
                        need = f"about {_human(total - part.stat().st_size)} more" if total else "more"
                        raise DiskFullError(f"disk full at {part.parent} while downloading {mirror.filename}: "
                                            f"it needs {need} free space; free some space and run again (the "
                                            "partial download is kept and resumes)") from exc
                    raise
            size = part.stat().st_size
            if broken is not None or (total is not None and size != total):
                cause = f" ({type(broken).__name__})" if broken is not None else ""
                raise _Retryable(f"the connection broke after {size:,} of "
                                 f"{'?' if total is None else f'{total:,}'} bytes{cause}")
            return final_url
        except _NOT_RETRIED as exc:  # malformed URL, redirect loop: the same request would fail again
            raise _MirrorFailed(str(exc)) from exc
        except (_Retryable, requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            if _host_not_found(exc):
                raise _MirrorFailed(f"host {urllib.parse.urlsplit(mirror.url).hostname} not found") from exc
            kept = bool(received) and bool((_read_json(note) or {}).get("validator"))  # resumable progress
            failures_in_a_row = 1 if kept else failures_in_a_row + 1
            if failures_in_a_row > http.retries:
                raise _MirrorFailed(f"{exc} (gave up after {http.retries} retries)") from exc
            delay = min(_MAX_BACKOFF_S, http.backoff_s * 2 ** (failures_in_a_row - 1))
            log.warning("%s: %s; retrying in %.1f s (%d of %d)", mirror.url, exc, delay, failures_in_a_row,
                        http.retries)
            time.sleep(delay)


def _receive(response: requests.Response, out, bar, url: str, http: HttpOptions) -> tuple[Exception | None, int]:
    """Copy the body to ``out`` as it arrives (each read returns what one socket read brings, so a trickle
    cannot hide inside one big read); return the error that broke it (or None) and the bytes received.
    Raises ``_MirrorFailed`` when fewer than ``http.stall_min_bytes`` arrive in ``http.stall_window_s``."""
    received = 0
    window_start, window_bytes = time.monotonic(), 0
    try:
        while chunk := response.raw.read1(_READ_BYTES, decode_content=False):
            out.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
            now = time.monotonic()
            if now - window_start >= http.stall_window_s:
                if received - window_bytes < http.stall_min_bytes:
                    raise _MirrorFailed(
                        f"{url} stalled: {received - window_bytes:,} bytes in {now - window_start:.1f} s, fewer than "
                        f"the {http.stall_min_bytes:,} bytes per {http.stall_window_s:g} s a live mirror gives "
                        f"(after {received:,} bytes in all)")
                window_start, window_bytes = now, received
    except (urllib3.exceptions.HTTPError, requests.RequestException) as exc:
        return exc, received
    return None, received


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


def _start_body(response: requests.Response, url: str, offset: int, part: Path, note: Path,
                state: dict | None = None) -> int | None:
    """Check the status of a (ranged) GET; return the full size if the server says it. Raises
    ``_Retryable`` for 5xx/429 and a range the server could not serve (or served from another version of
    the file), ``_MirrorFailed`` for other errors."""
    state = state or {}
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
        total = None if match.group(3) == "*" else int(match.group(3))
        validator = _validator(response)
        if validator != state.get("validator") or (state.get("total") is not None and total != state["total"]):
            _remove(part, note)
            raise _Retryable(f"the server resumed another version of the file (validator {validator!r}, size "
                             f"{total}; the partial file had {state.get('validator')!r}, {state.get('total')}); "
                             "the partial file was dropped")
        return total
    if code != 200:
        raise _MirrorFailed(f"unexpected HTTP {code} {response.reason}")
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    write_json(note, {"url": url, "total": total, "validator": _validator(response), "final_url": response.url})
    return total


# ----------------------------------------------------------------------------------------------- extract

def _unsafe_name(name: str) -> str | None:
    """Why an archive member name would land outside the target folder, or None if it would not."""
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "it is an absolute path"
    if ".." in re.split(r"[/\\]+", name):
        return "it contains '..'"
    return None


def _unsafe_link(target: str) -> str | None:
    """Why a symbolic link to ``target`` is refused. Only relative targets without ``..`` are kept: each
    step of resolving one stays in the link's folder or below, so no chain of links can lead out."""
    if not target:
        return "it is a symbolic link with an empty target"
    reason = _unsafe_name(target)
    if reason:
        return (f"it is a symbolic link to {target!r} ({reason.removeprefix('it ')}); only links to a relative "
                "path without '..' are kept, as only they cannot lead outside the target folder")
    return None


def _member_key(name: str) -> str:
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def _check_link_layout(label: str, names: list[tuple[str, bool]]) -> None:
    """Refuse a symbolic link that shares its name with another member, or that other members would be
    written through (its name is a folder of theirs): extraction would fail, or follow the link."""
    kinds: dict[str, bool] = {}
    for name, is_link in names:
        key = _member_key(name)
        if key in kinds and (is_link or kinds[key]):
            raise _refuse(label, name, "it appears twice, once as a symbolic link")
        kinds[key] = is_link
    links = {key for key, is_link in kinds.items() if is_link}
    if not links:
        return
    for name, _ in names:
        parts = _member_key(name).split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in links:
                raise _refuse(label, name, f"it would be written through the symbolic link {'/'.join(parts[:i])!r}")


def _refuse(archive: Path | str, member: str, reason: str) -> ArchiveError:
    return ArchiveError(f"{archive}: refusing to extract member {member!r}: {reason}")


def _too_big(label: Path | str, total: int, limits: ExtractLimits) -> ArchiveError:
    return ArchiveError(f"{label}: refusing to unpack it: its members add up to {_human(total)} (at least), more "
                        f"than the {_human(limits.max_bytes)} the dataset can take (ExtractLimits.max_bytes; the "
                        "published data is far smaller), as only a zip bomb does")


def _ratio_reason(size: int, compressed: int, limits: ExtractLimits) -> str | None:
    if size > limits.max_ratio * compressed + limits.ratio_slack_bytes:
        return (f"it unpacks to more than {_human(size)} from {_human(compressed)} (over {limits.max_ratio:g} to 1, "
                "ExtractLimits.max_ratio), as only a zip bomb does")
    return None


def _damaged(label: Path | str, member: str | None, exc: BaseException) -> ArchiveError:
    where = f"member {member!r} cannot be read" if member else "cannot be read"
    return ArchiveError(f"{label}: {where} ({type(exc).__name__}: {exc}); it is damaged or truncated")


def _disk_full(where: Path, label: Path | str, need: int) -> DiskFullError:
    error = DiskFullError(f"disk full at {where} while unpacking {label}: it needs about {_human(need)} free; free "
                         "some space (or put DATA on a larger disk) and run again. The archive was kept: it is not "
                         "damaged and will not be downloaded again")
    error.need = need
    return error


# Errors that mean the archive's bytes are bad (OSError without errno, e.g. BadGzipFile, counts too).
_READ_ERRORS = (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, NotImplementedError,
                RuntimeError)


def _is_damage(exc: BaseException) -> bool:
    return isinstance(exc, _READ_ERRORS) or (isinstance(exc, OSError) and exc.errno is None)


def _archive_kind(path: Path, name: str | None = None) -> str | None:
    """"zip" or "tar" by file name (``name`` if given), else by content; None if neither."""
    name = (name or path.name).lower()
    if name.endswith(".zip"):
        return "zip"
    if re.search(r"\.(tar|tgz|tbz2?|txz)(\.\w+)?$", name):
        return "tar"
    try:
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04" or zipfile.is_zipfile(path):
                return "zip"
        return "tar" if tarfile.is_tarfile(path) else None
    except (OSError, EOFError, tarfile.TarError, zlib.error, lzma.LZMAError):
        return None


def safe_extract(archive: Path, dest: Path, *, limits: ExtractLimits | None = None) -> None:
    """Unpack a zip or tar archive into the existing folder ``dest``; refuse members with absolute paths or
    ``..``, links that could lead outside ``dest``, special files, and more bytes than ``limits`` allow
    (in all, or per compressed byte), before anything is written where possible and while writing."""
    archive = Path(archive)
    _unpack(archive, Path(dest), limits or ExtractLimits(), str(archive), None)


def check_archive(archive: Path, *, limits: ExtractLimits | None = None, label: str | None = None,
                  kind_name: str | None = None) -> None:
    """Read the whole archive without writing anything, with the checks of ``safe_extract``: every zip
    member against its CRC, every tar member and the compressed stream to its end. Raises ``ArchiveError``."""
    archive = Path(archive)
    _unpack(archive, None, limits or ExtractLimits(), label or str(archive), kind_name)


def _unpack(archive: Path, dest: Path | None, limits: ExtractLimits, label: str, kind_name: str | None) -> None:
    kind = _archive_kind(archive, kind_name)
    if kind == "zip":
        _extract_zip(archive, dest, limits, label)
    elif kind == "tar":
        _extract_tar(archive, dest, limits, label)
    else:
        raise ArchiveError(f"{label} is neither a zip nor a tar archive")


def _zip_plan(zf: zipfile.ZipFile, label: str,
              limits: ExtractLimits) -> tuple[list[zipfile.ZipInfo], dict[str, str], int]:
    """Check every member before anything is written; return them, the symbolic links (name -> target) and
    the size the headers announce."""
    members = zf.infolist()
    if len(members) > limits.max_members:
        raise ArchiveError(f"{label}: it has {len(members):,} members, more than the {limits.max_members:,} "
                           "allowed (ExtractLimits.max_members)")
    links: dict[str, str] = {}
    total = 0
    for info in members:
        reason = _unsafe_name(info.filename)
        is_link = stat.S_ISLNK(info.external_attr >> 16)
        if reason is None and info.flag_bits & 0x1:
            reason = "it is encrypted"
        if reason is None and is_link:
            if info.is_dir() or info.file_size > _MAX_LINK_TARGET:
                reason = "it is marked as a symbolic link but is not one"
            else:
                try:
                    links[info.filename] = zf.read(info).decode("utf-8", "surrogateescape")
                except Exception as exc:
                    if _is_damage(exc):
                        raise _damaged(label, info.filename, exc) from exc
                    raise
                reason = _unsafe_link(links[info.filename])
        if reason is None:
            reason = _ratio_reason(info.file_size, info.compress_size, limits)
        if reason:
            raise _refuse(label, info.filename, reason)
        total += info.file_size
        if total > limits.max_bytes:
            raise _too_big(label, total, limits)
    _check_link_layout(label, [(info.filename, info.filename in links) for info in members])
    return members, links, total


class _Budget:
    """Bytes written (or read through) so far against ``ExtractLimits.max_bytes``."""

    def __init__(self, label: str, limits: ExtractLimits) -> None:
        self.label, self.limits, self.total = label, limits, 0

    def take(self, n: int) -> None:
        if self.total + n > self.limits.max_bytes:
            raise _too_big(self.label, self.total + n, self.limits)
        self.total += n


def _copy_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: Path | None, budget: _Budget) -> None:
    """Stream one member to ``out`` (or nowhere), counting what comes out rather than trusting its header."""
    limits, label = budget.limits, budget.label
    member_limit = limits.max_ratio * info.compress_size + limits.ratio_slack_bytes
    try:
        src = zf.open(info)
    except Exception as exc:
        if _is_damage(exc):
            raise _damaged(label, info.filename, exc) from exc
        raise
    with src, (open(out, "wb") if out is not None else contextlib.nullcontext()) as dst:
        written = 0
        while True:
            try:
                chunk = src.read(_READ_BYTES)
            except Exception as exc:
                if _is_damage(exc):
                    raise _damaged(label, info.filename, exc) from exc
                raise
            if not chunk:
                break
            written += len(chunk)
            if written > member_limit:
                raise _refuse(label, info.filename, _ratio_reason(written, info.compress_size, limits))
            budget.take(len(chunk))
            if dst is not None:
                dst.write(chunk)


def _extract_zip(archive: Path, dest: Path | None, limits: ExtractLimits, label: str) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise ArchiveError(f"{label}: not a readable zip file ({exc}); it is damaged or truncated") from exc
    with zf:
        members, links, total = _zip_plan(zf, label, limits)
        budget = _Budget(label, limits)
        root = dest.resolve() if dest is not None else None
        verb = "unzip" if dest is not None else "test"
        try:
            for info in progress(members, desc=f"{verb} {archive.name}", unit="file", leave=False,
                                 logger=log):
                if dest is None:
                    if not info.is_dir() and info.filename not in links:
                        _copy_zip_member(zf, info, None, budget)
                    continue
                out = dest / info.filename
                if not out.resolve().is_relative_to(root):  # a parent is an in-archive link that leads out
                    raise _refuse(label, info.filename, "it would be written outside the target folder")
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                if info.filename in links:
                    os.symlink(links[info.filename], out)
                    continue
                _copy_zip_member(zf, info, out, budget)
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                raise _disk_full(dest, label, total) from exc
            raise


def _tar_plan(tf: tarfile.TarFile, archive: Path, label: str,
              limits: ExtractLimits) -> tuple[list[tarfile.TarInfo], int]:
    """Read the headers one by one (stopping at the first bad one, before the rest is decompressed) and
    check every member; return them and the bytes they hold."""
    members: list[tarfile.TarInfo] = []
    total = 0
    ratio_limit = limits.max_ratio * archive.stat().st_size + limits.ratio_slack_bytes
    for member in tf:
        if len(members) >= limits.max_members:
            raise ArchiveError(f"{label}: it has more than the {limits.max_members:,} members allowed "
                               "(ExtractLimits.max_members)")
        reason = _unsafe_name(member.name)
        if reason is None and member.issym():
            reason = _unsafe_link(member.linkname)
        if reason is None and member.islnk() and _unsafe_name(member.linkname):
            reason = f"it is a hard link to {member.linkname!r}, outside the target folder"
        if reason is None and not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            reason = "it is a device, FIFO or other special file"
        if reason:
            raise _refuse(label, member.name, reason)
        if member.isfile():
            total += member.size
            if total > limits.max_bytes:
                raise _too_big(label, total, limits)
            if total > ratio_limit:
                raise _refuse(label, member.name, f"the archive unpacks to more than {_human(total)} from "
                              f"{_human(archive.stat().st_size)} (over {limits.max_ratio:g} to 1, "
                              "ExtractLimits.max_ratio), as only a tar bomb does")
        members.append(member)
    _check_link_layout(label, [(m.name, m.issym() or m.islnk()) for m in members])
    return members, total


def _extract_tar(archive: Path, dest: Path | None, limits: ExtractLimits, label: str) -> None:
    total = 0
    try:
        with tarfile.open(archive) as tf:
            members, total = _tar_plan(tf, archive, label, limits)
            budget = _Budget(label, limits)
            verb = "untar" if dest is not None else "test"
            for member in progress(members, desc=f"{verb} {archive.name}", unit="file", leave=False,
                                   logger=log):
                if dest is not None:
                    if member.isfile():
                        budget.take(member.size)  # tarfile writes exactly member.size bytes, or fails
                    tf.extract(member, dest, filter="data")  # the stdlib's own guard against what slipped through
                elif member.isfile():
                    src = tf.extractfile(member)
                    while chunk := src.read(_READ_BYTES):
                        budget.take(len(chunk))
            # Read to the end, so a gzip/bz2/xz stream checks its CRC and length trailer (a cut file fails here).
            drained, ratio_limit = 0, limits.max_ratio * archive.stat().st_size + limits.ratio_slack_bytes
            while chunk := tf.fileobj.read(_READ_BYTES):
                drained += len(chunk)
                if total + drained > ratio_limit:
                    raise ArchiveError(f"{label}: more than {_human(drained)} of padding follow the last member "
                                       f"(over {limits.max_ratio:g} to 1), as only a tar bomb does")
    except tarfile.FilterError as exc:
        raise _refuse(label, exc.tarinfo.name, str(exc)) from exc
    except ArchiveError:
        raise
    except Exception as exc:
        if _is_damage(exc):
            raise ArchiveError(f"{label}: cannot be unpacked ({type(exc).__name__}: {exc}); it is damaged or "
                               "truncated") from exc
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            raise _disk_full(dest, label, total) from exc
        raise


def _content_root(folder: Path) -> Path:
    """Descend through single top folders (``liberty/`` or ``hpatches-release/``), so zips made with or
    without one unpack to the same layout."""
    while True:
        entries = [e for e in folder.iterdir() if e.name not in _IGNORED_ENTRIES]
        if len(entries) != 1 or not entries[0].is_dir() or entries[0].is_symlink():
            return folder
        folder = entries[0]


def _check_links_inside(archive: Path, folder: Path) -> None:
    """Every symbolic link in the unpacked tree, resolved on disk with the whole tree in place, must end
    inside ``folder`` (already guaranteed by the link rule; checked again after dropping top folders)."""
    root = folder.resolve()
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink() and not Path(os.path.realpath(path)).is_relative_to(root):
                raise _refuse(archive, str(path.relative_to(folder)),
                              f"it is a symbolic link to {os.readlink(path)!r}, which leads outside the folder")


def extract_archive(archive: Path, target: Path, validate: Callable[[Path], str], *,
                    limits: ExtractLimits | None = None) -> str:
    """Unpack ``archive`` so its content (without top folders) becomes ``target``; ``validate`` checks the
    content first and returns its summary. On any error ``target`` is left as it was. Raises
    ``ArchiveError`` when the archive is at fault, ``ContentError`` when it holds other data than expected,
    ``DiskFullError`` when the disk fills up (the archive is fine)."""
    archive, target = Path(archive), Path(target)
    try:
        with atomic_dir(target) as staging:
            unpacked = staging / ".unpacked"
            unpacked.mkdir()
            safe_extract(archive, unpacked, limits=limits)
            root = _content_root(unpacked)
            for entry in list(root.iterdir()):
                if entry.name not in _IGNORED_ENTRIES:
                    os.replace(entry, staging / entry.name)
            shutil.rmtree(unpacked)
            _check_links_inside(archive, staging)
            try:
                return validate(staging)
            except DescbenchError as exc:
                raise ContentError(f"{archive} does not hold the expected data: {exc}. Delete the archive and "
                                   "its .meta.json and download it again") from exc
    except DiskFullError as exc:  # name the folder the user knows, not the staging folder
        raise _disk_full(target.parent, archive, exc.need) from exc.__cause__
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise _disk_full(target.parent, archive, archive.stat().st_size) from exc
        raise DescbenchError(f"cannot unpack {archive} into {target}: {exc}. The archive was kept; check that "
                             f"{target.parent} is writable") from exc


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


def check_sequence_folders(folder: Path, label: str, n_sequences: int, missing_files: Callable[[Path], list[str]],
                           contents: str, n_illumination: int | None = None) -> str:
    """Check an unpacked HPatches-style release (the patch release, the full-image sequences): ``n_sequences``
    folders named i_*/v_* (``n_illumination`` of them i_, where given), none of which ``missing_files`` (a
    sequence folder -> the files it lacks) finds incomplete. Every problem goes into one error that starts with
    ``label``; the summary is '<n> sequences (<i> i_, <v> v_) x <contents>'."""
    sequences = sorted(d for d in folder.iterdir() if d.is_dir() and d.name not in _IGNORED_ENTRIES)
    n_illum = sum(d.name.startswith("i_") for d in sequences)
    problems = []
    if len(sequences) != n_sequences:
        problems.append(f"{len(sequences)} sequence folders, expected {n_sequences}")
    misnamed = [d.name for d in sequences if not d.name.startswith(SEQUENCE_PREFIXES)]
    if misnamed:
        more = " ..." if len(misnamed) > 5 else ""
        problems.append(f"folders not named i_* or v_*: {', '.join(misnamed[:5])}{more}")
    elif n_illumination is not None and len(sequences) == n_sequences and n_illum != n_illumination:
        problems.append(f"{n_illum} i_ sequences, expected {n_illumination}")
    incomplete = [(d.name, missing) for d in sequences if (missing := missing_files(d))]
    for name, missing in incomplete[:5]:
        problems.append(f"{name} lacks {', '.join(missing)}")
    if len(incomplete) > 5:
        problems.append(f"and {len(incomplete) - 5} more incomplete sequences")
    if problems:
        raise DescbenchError(f"{label}: " + "; ".join(problems))
    return f"{len(sequences)} sequences ({n_illum} i_, {len(sequences) - n_illum} v_) x {contents}"


def validate_hpatches_folder(folder: Path, source: HPatchesSource) -> str:
    """Check the unpacked patch release: the expected i_/v_ sequence folders, each with its 16 PNGs."""
    return check_sequence_folders(folder, "HPatches release", source.n_sequences,
                                  lambda seq: [f for f in source.image_files if not (seq / f).is_file()],
                                  f"{len(source.image_files)} PNGs")


# ------------------------------------------------------------------------------------------------ datasets

def download_ubc_set(source: UBCSetSource, root: Path, *, http: HttpOptions = HttpOptions(),
                     expect_sha256: str | None = None, from_dir: Path | None = None,
                     session: requests.Session | None = None, limits: ExtractLimits | None = None) -> DatasetResult:
    """``DATA/raw/ubc/<set>/`` from the set's verified archive in ``DATA/raw/archives/``; the archive may unpack
    to ``limits`` (default: from the set's size, ``ubc_unpack_limits``)."""
    return download_archive_dataset(source.name, source.archive, Path(root) / "raw" / "ubc" / source.name,
                                    lambda folder: validate_ubc_folder(folder, source), Path(root), http=http,
                                    expect_sha256=expect_sha256, from_dir=from_dir, session=session,
                                    limits=limits or ubc_unpack_limits(source))


def download_hpatches(source: HPatchesSource, root: Path, *, http: HttpOptions = HttpOptions(),
                      expect_sha256: str | None = None, from_dir: Path | None = None,
                      session: requests.Session | None = None, limits: ExtractLimits | None = None) -> DatasetResult:
    """``DATA/raw/hpatches-release/<seq>/`` from the verified release archive in ``DATA/raw/archives/``; the
    archive may unpack to ``limits`` (default: from the release's size, ``hpatches_unpack_limits``)."""
    return download_archive_dataset(source.archive.name, source.archive, Path(root) / "raw" / "hpatches-release",
                                    lambda folder: validate_hpatches_folder(folder, source), Path(root), http=http,
                                    expect_sha256=expect_sha256, from_dir=from_dir, session=session,
                                    limits=limits or hpatches_unpack_limits(source))


def download_hpatches_tasks(source: TaskFilesSource, root: Path, *, http: HttpOptions = HttpOptions(),
                            from_dir: Path | None = None, session: requests.Session | None = None) -> DatasetResult:
    """``DATA/raw/hpatches-tasks/``: splits.json and the task csvs side by side, each matching its git blob id.
    One error names every file that is missing: from ``from_dir`` each file is looked for; from the network the
    first file's failure (every mirror's reason) stands for the rest, which are not tried."""
    folder = Path(root) / "raw" / "hpatches-tasks"
    fetched, absent, failed, untried = [], [], [], []
    for remote in source.files:
        if failed and from_dir is None:
            untried.append(remote.name)
            continue
        try:
            fetched.append(fetch(remote, folder, http=http, from_dir=from_dir, copy_from_dir=True,
                                 record_meta=False, session=session))
        except NotInFromDirError as exc:
            absent.append(exc.filename)
        except DiskFullError:
            raise
        except DescbenchError as exc:  # every mirror failed, or the user's copy did not verify
            failed.append(str(exc))
    if absent or failed:
        raise _missing_task_files(source, from_dir, absent, failed, untried)
    files = tuple(fetched)
    n_pinned = sum(f.pinned for f in files)
    return DatasetResult("hpatches-tasks", folder, f"{len(files)} task files, {n_pinned} matching a published "
                         "checksum", files, reused=all(f.reused for f in files))


def _missing_task_files(source: TaskFilesSource, from_dir: Path | None, absent: list[str], failed: list[str],
                        untried: list[str]) -> DescbenchError:
    """One error naming every task file that is missing, and why."""
    n_missing = len(absent) + len(failed) + len(untried)
    lines = [f"hpatches-tasks: {n_missing} of {len(source.files)} task files missing"]
    if absent:
        url = source.files[0].mirrors[0].url.rsplit("/tasks/", 1)[0] + "/tasks/"
        lines.append(f"not in --from-dir {from_dir} or its subfolders ({len(absent)}): {', '.join(absent)}; "
                     f"they are published under {url}")
    lines += failed
    if untried:
        lines.append(f"not tried after that failure ({len(untried)}): {', '.join(untried)}")
    return MirrorsFailedError("\n".join(lines)) if from_dir is None else DescbenchError("\n".join(lines))


def download_archive_dataset(name: str, remote: RemoteFile, target: Path, validate: Callable[[Path], str],
                             root: Path, *, http: HttpOptions = HttpOptions(), expect_sha256: str | None = None,
                             from_dir: Path | None = None, session: requests.Session | None = None,
                             limits: ExtractLimits | None = None) -> DatasetResult:
    """``target`` unpacked from the archive ``remote``, kept verified in ``root/raw/archives/``: the way every
    dataset that is one archive arrives. A ``target`` that passes ``validate`` (content check -> summary) is
    kept when its archive still verifies, or when only the archive's record is left; otherwise the archive is
    fetched (``fetch``: pins, mirrors, ``from_dir``) and unpacked within ``limits`` (``extract_archive``)."""
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
                        session=session, archive_limits=limits)
    if summary is not None and fetched.reused:
        return DatasetResult(name, target, summary, (fetched,), reused=True)
    log.info("unpacking %s into %s", fetched.path, target)
    try:
        summary = extract_archive(fetched.path, target, validate, limits=limits)
    except ArchiveError as exc:
        if fetched.pinned:  # the published file itself: another download brings the same bytes
            raise
        raise _discard_unpinned(fetched, archives, exc) from exc
    return DatasetResult(name, target, summary, (fetched,), reused=False)


def _discard_unpinned(fetched: FetchResult, archives: Path, exc: ArchiveError) -> ArchiveError:
    """An archive no checksum vouches for failed to unpack: forget it, so a rerun does not reuse it. Our own
    download is deleted; the user's file (--from-dir) is left in place, only its record goes."""
    meta = _meta_path(archives, fetched.path.name)
    if fetched.path.parent.resolve() == archives.resolve():
        _remove(fetched.path, meta)
        log.warning("%s: deleted (%s)", fetched.path, exc.what)
        return ArchiveError(exc.what, f"No checksum is published for it, so it was deleted (and {meta.name}); run "
                                      "the command again to download it afresh")
    _remove(meta)
    return ArchiveError(exc.what, f"No checksum is published for it and it is your own file ({fetched.path}, left in "
                                  "place); replace it with a good copy, or run without --from-dir to download one")


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
