"""Released weights: the catalogue of published checkpoints (pins), their download through the same
machinery as the datasets, safe loading and key maps into descbench's networks.

Files live in ``<weights dir>/<release name>/<file name>`` (default ``DATA/weights/``), each with the
``<file>.meta.json`` that ``descbench.data.download`` writes (origin, SHA-256, what verified it).

    descbench download weights tfeat@liberty --data data        # or: all, or 'sosnet@*'
    net = weights.load_network("tfeat@liberty", "data/weights")  # eval mode, (B,1,32,32) in [0,1]

Loading verifies every file against its pins again, reads torch files with ``weights_only=True`` only,
and loads strictly after the release's key map (``descbench.weights.loading``). Releases trained on
UBC scenes or on HPatches carry that fact; ``check_evaluation`` refuses to score them on their own
training data unless told to.
"""

from __future__ import annotations

import difflib
import fnmatch
import glob
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from descbench.data import download
from descbench.data.download import ChecksumMismatchError, FetchResult, HttpOptions
from descbench.errors import DescbenchError
from descbench.fileio import file_digests
from descbench.weights.catalogue import (HPATCHES_OVERLAPS, LICENCES, REFUSED, RELEASES, Published,
                                         RefusedRelease, Release, WeightFile, published_rows)
from descbench.weights.loading import (FAMILIES, Family, KeyMap, LoadedRelease, UnsafeCheckpointError,
                                       build_from_files, family_of, read_mean_std, read_pix_mean,
                                       read_torch_file, to_release_layout)

log = logging.getLogger(__name__)

WEIGHTS_SUBDIR = "weights"
ENV_WEIGHTS_DIR = "DESCBENCH_WEIGHTS_DIR"
ALLOW_OVERLAP_FLAG = "--allow-train-overlap"

__all__ = [
    "RELEASES", "REFUSED", "LICENCES", "FAMILIES", "HPATCHES_OVERLAPS", "Release", "RefusedRelease", "WeightFile",
    "Published", "Family", "KeyMap", "LoadedRelease", "UnsafeCheckpointError", "ReleaseDownload",
    "weights_dir_for", "default_weights_dir", "get", "is_release", "select", "release_dir", "file_path",
    "download_release", "scan_dir", "verify_local", "local_files", "load_release", "load_network",
    "build_from_files", "to_release_layout", "family_of", "read_torch_file", "read_mean_std", "read_pix_mean",
    "hpatches_overlap", "ubc_overlap", "check_evaluation", "published_rows", "ubc_test_sets", "hpatches_split_for",
]


# ------------------------------------------------------------------------------------------- names

def weights_dir_for(data_root: str | os.PathLike) -> Path:
    """``DATA/weights``: where ``descbench download weights --data DATA`` puts releases."""
    return Path(data_root) / WEIGHTS_SUBDIR


def default_weights_dir(data_root: str | os.PathLike | None = None) -> Path:
    """``$DESCBENCH_WEIGHTS_DIR`` if set, else ``<data_root>/weights`` (``data/weights`` by default)."""
    env = os.environ.get(ENV_WEIGHTS_DIR)
    if env:
        return Path(env)
    return weights_dir_for(data_root if data_root is not None else "data")


def is_release(name: str) -> bool:
    return name in RELEASES


def get(name: str, releases: Mapping[str, Release] | None = None) -> Release:
    """The release called ``name``; a refused or unknown name is an error saying why / what exists."""
    releases = RELEASES if releases is None else releases
    if name in releases:
        return releases[name]
    if name in REFUSED:
        raise UnsafeCheckpointError(REFUSED[name].message())
    close = difflib.get_close_matches(name, list(releases), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise DescbenchError(f"unknown released weights {name!r}{hint}; known: {', '.join(sorted(releases))} "
                         "(`descbench download weights --list` describes them)")


def select(patterns: Sequence[str], releases: Mapping[str, Release] | None = None) -> list[Release]:
    """Releases by exact name or shell pattern (``'sosnet@*'``); none given = all, in catalogue order."""
    releases = RELEASES if releases is None else releases
    if not patterns:
        return list(releases.values())
    chosen: dict[str, Release] = {}
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            matches = [r for n, r in releases.items() if fnmatch.fnmatchcase(n, pattern)]
            if not matches:
                raise DescbenchError(f"no released weights match {pattern!r}; known: {', '.join(sorted(releases))}")
            chosen.update({r.name: r for r in matches})
        else:
            chosen[pattern] = get(pattern, releases)
    return list(chosen.values())


def release_dir(release: Release, weights_dir: str | os.PathLike) -> Path:
    return Path(weights_dir) / release.name


def file_path(release: Release, wfile: WeightFile, weights_dir: str | os.PathLike) -> Path:
    return release_dir(release, weights_dir) / wfile.filename


# ---------------------------------------------------------------------------------------- download

@dataclass(frozen=True)
class ReleaseDownload:
    release: Release
    folder: Path
    files: tuple[FetchResult, ...]

    @property
    def reused(self) -> bool:
        return all(f.reused for f in self.files)


def download_release(release: Release, weights_dir: str | os.PathLike, *, from_dir: str | os.PathLike | None = None,
                     http: HttpOptions = HttpOptions(), expect_sha256: Mapping[str, str] | None = None,
                     session=None) -> ReleaseDownload:
    """Every file of ``release`` verified in ``<weights_dir>/<name>/``: an existing verified copy, else the
    user's copy from ``from_dir`` (searched by file name, copied in), else the mirrors in order, with
    resume and verification by git blob id / SHA-256 (``descbench.data.download.fetch``).
    ``expect_sha256``: file name -> SHA-256 the user pins (takes precedence over the catalogue)."""
    folder = release_dir(release, weights_dir)
    pins = expect_sha256 or {}
    results = []
    for wfile in release.files:
        results.append(download.fetch(wfile.remote(release.name), folder, http=http,
                                      expect_sha256=pins.get(wfile.filename),
                                      from_dir=Path(from_dir) if from_dir is not None else None,
                                      copy_from_dir=True, record_meta=True, session=session))
    return ReleaseDownload(release, folder, tuple(results))


def _matches(digests: Mapping[str, str], wfile: WeightFile, pin: str | None) -> str | None:
    if pin:
        return "sha256 matches --expect-sha256" if digests["sha256"] == pin.lower() else None
    for checksum in wfile.checksums:
        if digests.get(checksum.algorithm) == checksum.value:
            return f"{checksum.algorithm} matches {checksum.source}"
    return None


def scan_dir(releases: Iterable[Release], from_dir: str | os.PathLike,
             expect_sha256: Mapping[str, str] | None = None) -> tuple[list[Release], list[str]]:
    """For ``download weights --from-dir DIR`` without names: the releases all of whose files are in DIR
    (by name, verified against their pins), and a problem line for each file found by name that matches
    no release's pins (a damaged or tampered copy; files that belong to another release of the same
    file name, e.g. CDF's model.state_dict, are not problems)."""
    from_dir = Path(from_dir)
    if not from_dir.is_dir():
        raise DescbenchError(f"--from-dir {from_dir} is not a folder")
    pins = expect_sha256 or {}
    releases = list(releases)
    cache: dict[Path, dict[str, str]] = {}

    def digests(path: Path) -> dict[str, str]:
        if path not in cache:
            cache[path] = file_digests(path, {"sha256", "git-blob"})
        return cache[path]

    complete, claimed, seen = [], set(), {}
    for release in releases:
        ok = True
        for wfile in release.files:
            candidates = sorted(p for p in from_dir.rglob(glob.escape(wfile.filename)) if p.is_file())
            for c in candidates:
                seen.setdefault(c, wfile.filename)
            good = [c for c in candidates if _matches(digests(c), wfile, pins.get(wfile.filename))]
            claimed.update(good)
            ok = ok and bool(good)
        if ok:
            complete.append(release)
    problems = [f"{path}: matches no published pin of a file named {name} (damaged, tampered, or another "
                f"version; pin it with --expect-sha256 if you trust it)"
                for path, name in sorted(seen.items()) if path not in claimed]
    return complete, problems


# ----------------------------------------------------------------------------------------- loading

def verify_local(release: Release, wfile: WeightFile, path: Path) -> str:
    """What vouches for a file about to be loaded: a catalogue pin, or the user's --expect-sha256 pin
    recorded at download. A file matching neither is refused."""
    digests = file_digests(path, {"sha256", "git-blob", *(c.algorithm for c in wfile.checksums)})
    matched = _matches(digests, wfile, None)
    if matched:
        return matched
    try:
        meta = json.loads(path.with_name(path.name + ".meta.json").read_text())
    except (OSError, ValueError):
        meta = {}
    if meta.get("pinned") and "expect-sha256" in str(meta.get("verified_by", "")) \
            and meta.get("sha256") == digests["sha256"]:
        return "sha256 matches the --expect-sha256 pin recorded at download"
    pins = " or ".join(c.describe() for c in wfile.checksums)
    raise ChecksumMismatchError(
        f"{path} does not match its pin ({pins}); it has sha256 {digests['sha256']}, git-blob "
        f"{digests['git-blob']}. Delete it and run `descbench download weights {release.name}`")


def local_files(release: Release, weights_dir: str | os.PathLike, verify: bool = True) -> dict[str, Path]:
    """role -> path of the release's downloaded files, each verified (unless ``verify`` is False)."""
    paths = {}
    for wfile in release.files:
        path = file_path(release, wfile, weights_dir)
        if not path.is_file():
            raise DescbenchError(
                f"released weights {release.name}: {path} is missing; run `descbench download weights "
                f"{release.name} --weights-dir {Path(weights_dir)}` (or --data DATA for DATA/weights), or "
                f"place {wfile.filename} (published at {wfile.mirrors[0].url}) in a folder and pass --from-dir")
        if verify:
            log.debug("%s: %s", path, verify_local(release, wfile, path))
        paths[wfile.role] = path
    return paths


def load_release(release: Release | str, weights_dir: str | os.PathLike | None = None, *,
                 verify: bool = True) -> LoadedRelease:
    """The network of a downloaded release (eval mode, CPU) with what its checkpoint said."""
    release = get(release) if isinstance(release, str) else release
    weights_dir = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    return build_from_files(release, local_files(release, weights_dir, verify))


def load_network(release: Release | str, weights_dir: str | os.PathLike | None = None):
    """``load_release(...).network``: (B, 1, 32, 32) in [0, 1] -> (B, dim), the authors' preprocessing
    included."""
    return load_release(release, weights_dir).network


# ---------------------------------------------------------------------------------- train/test overlap

def ubc_overlap(release: Release, test_set: str) -> str | None:
    """Why scoring ``release`` on UBC ``test_set`` would measure its training data, or None."""
    if test_set in release.trained_on:
        return f"{release.name} was trained on {test_set} ({release.train_data})"
    return None


def hpatches_overlap(release: Release, sequences: Iterable[str], splits: Mapping[str, Mapping] | None = None
                     ) -> str | None:
    """Why scoring ``release`` on these HPatches test ``sequences`` would measure its training data, or None.

    ``splits`` (``splits.json`` as ``descbench.evaluate.tasks.load_splits`` reads it) tells which sequences
    a split-trained release saw.
    """
    kind = release.hpatches_overlap
    if kind in ("none", "unstated"):
        return None
    if kind == "all":
        return f"{release.name} was trained on HPatches ({release.train_data}): every sequence is training data"
    if kind == "claimed":
        return (f"{release.name}'s training data is unverified and a source says it includes HPatches "
                f"({release.train_data})")
    split = kind.split(":", 1)[1]
    train = (splits or {}).get(split, {}).get("train")
    if not train:
        return (f"{release.name} was trained on the train sequences of HPatches split {split!r}, and "
                f"splits.json has no train list for split {split!r} to check the test sequences against")
    sequences = list(sequences)
    overlap = sorted(set(sequences) & set(train))
    if not overlap:
        return None
    return (f"{release.name} was trained on the train sequences of HPatches split {split!r}; {len(overlap)} of "
            f"the {len(sequences)} test sequences are among them ({', '.join(overlap[:4])}"
            f"{' ...' if len(overlap) > 4 else ''}); evaluate it on split {split!r}")


def check_evaluation(release: Release | str, *, ubc_test_set: str | None = None,
                     hpatches_sequences: Iterable[str] | None = None, splits: Mapping[str, Mapping] | None = None,
                     allow: bool = False) -> str | None:
    """Refuse (``DescbenchError``) to score a release on its own training data unless ``allow``; returns
    the reason (logged as a warning) when allowed, None when there is no overlap."""
    release = get(release) if isinstance(release, str) else release
    reasons = []
    if ubc_test_set is not None:
        reasons.append(ubc_overlap(release, ubc_test_set))
    if hpatches_sequences is not None:
        reasons.append(hpatches_overlap(release, hpatches_sequences, splits))
        if release.hpatches_overlap == "unstated":
            log.warning("%s: its training data is not stated (%s); HPatches may overlap it", release.name,
                        release.train_data)
    reason = "; ".join(r for r in reasons if r)
    if not reason:
        return None
    if not allow:
        raise DescbenchError(f"refusing to evaluate released weights on their training data: {reason}. Pass "
                             f"{ALLOW_OVERLAP_FLAG} to evaluate anyway (the scores are then not test results)")
    log.warning("evaluating on training data (%s): %s", ALLOW_OVERLAP_FLAG, reason)
    return reason


def ubc_test_sets(release: Release | str, sets: Iterable[str]) -> list[str]:
    """The UBC sets of ``sets`` that ``release`` was not trained on (the workflow tests it on these)."""
    release = get(release) if isinstance(release, str) else release
    return [s for s in sets if s not in release.trained_on]


def hpatches_split_for(release: Release | str, split: str) -> str | None:
    """The HPatches split the workflow scores ``release`` on: ``split``; a release trained on one split's
    train sequences is scored on that split (its test sequences); None for a release trained on all of
    HPatches, or said to be (it gets no HPatches row)."""
    release = get(release) if isinstance(release, str) else release
    kind = release.hpatches_overlap
    if kind in ("all", "claimed"):
        return None
    if kind.startswith("split:"):
        return kind.split(":", 1)[1]
    return split
