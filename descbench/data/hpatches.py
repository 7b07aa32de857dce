"""HPatches patches: read the original PNG stacks, write one memory-mappable array per sequence, load them.

Original layout (docs/protocols.md §1.1): ``DATA/raw/hpatches-release/<seq>/{ref,e1..e5,h1..h5,t1..t5}.png``,
each PNG one column of N 65x65 patches, shape (N*65, 65); row i of all 16 files is the same physical point.
Task files (``splits.json`` and the official csvs, §1.3-1.4) live in ``DATA/raw/hpatches-tasks/``.

Prepared layout: ``DATA/hpatches/<seq>.npy`` uint8 (16, N, 65, 65) in ``IMAGE_TYPES`` order,
``DATA/hpatches/tasks/`` (a copy of the task files) and ``DATA/hpatches/meta.json``.

Everything is written with ordinary file writes (``np.save``, ``shutil.copyfile``); the free space is checked
first (the size is known from the PNG headers), and a full disk is a "disk full" error that leaves no staging.
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
from pathlib import Path

import numpy as np

from descbench.data.sources import SEQUENCE_PREFIXES
from descbench.errors import DescbenchError
from descbench.fileio import atomic_dir, check_writable, sha256_file, write_json
from descbench.progress import progress

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PATCH_SIZE = 65
IMAGE_TYPES = ("ref",) + tuple(f"{level}{k}" for level in "eht" for k in range(1, 6))
SPLITS_FILE = "splits.json"
MINI_RECORD = "mini.json"  # written by make-mini into DATA/raw/ (descbench.data.mini.MINI_RECORD)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def raw_release_dir(data_root: str | Path) -> Path:
    return Path(data_root) / "raw" / "hpatches-release"


def raw_tasks_dir(data_root: str | Path) -> Path:
    return Path(data_root) / "raw" / "hpatches-tasks"


def prepared_dir(data_root: str | Path) -> Path:
    return Path(data_root) / "hpatches"


def _is_mini(data_root: str | Path) -> bool:
    return (Path(data_root) / "raw" / MINI_RECORD).is_file()


def release_fix(data_root: str | Path) -> str:
    """How to get a good patch release again (the end of every bad-release message)."""
    if _is_mini(data_root):
        return f"generate it again (`descbench make-mini --data {data_root}`)"
    # a release folder that passes download's own check is reused, so it must go first
    return (f"delete {raw_release_dir(data_root)} and run `descbench download hpatches --data {data_root}` "
            "(it unpacks the kept archive again)")


def tasks_fix(data_root: str | Path) -> str:
    """How to get good task files again."""
    if _is_mini(data_root):
        return f"generate them again (`descbench make-mini --data {data_root}`)"
    return f"re-download it with `descbench download hpatches-tasks --data {data_root}`"


def png_height(path: Path) -> int | None:
    """The pixel height from a PNG's header (without decoding it), or None if it is not a PNG."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
    except OSError:
        return None
    if len(head) < 24 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">I", head[20:24])[0]


def read_stack(path: Path, fix: str = "download or generate HPatches again") -> np.ndarray:
    """One PNG stack -> (N, 65, 65) uint8 (patch i = rows 65*i .. 65*i+64)."""
    import cv2

    if not path.is_file():
        raise DescbenchError(f"missing file {path}; {fix}")
    if path.stat().st_size == 0:
        raise DescbenchError(f"{path} is empty (0 bytes), not a PNG image; {fix}")
    try:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    except cv2.error as exc:
        raise DescbenchError(f"{path} is not a readable PNG image (OpenCV: {exc.err}); {fix}") from None
    if image is None:
        raise DescbenchError(f"{path} is not a readable PNG image; {fix}")
    height, width = image.shape
    if width != PATCH_SIZE or height == 0 or height % PATCH_SIZE:
        raise DescbenchError(
            f"{path} is {width}x{height} pixels; an HPatches stack is {PATCH_SIZE} pixels wide and a "
            f"multiple of {PATCH_SIZE} high (one column of {PATCH_SIZE}x{PATCH_SIZE} patches); the file "
            f"is damaged, {fix}"
        )
    return image.reshape(height // PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)


def read_sequence(seq_dir: Path, fix: str = "download or generate HPatches again") -> np.ndarray:
    """The 16 stacks of one sequence -> (16, N, 65, 65) uint8 in ``IMAGE_TYPES`` order."""
    stacks = [read_stack(seq_dir / f"{image_type}.png", fix) for image_type in IMAGE_TYPES]
    counts = {image_type: len(stack) for image_type, stack in zip(IMAGE_TYPES, stacks)}
    if len(set(counts.values())) != 1:
        listing = ", ".join(f"{k}={v}" for k, v in counts.items())
        raise DescbenchError(
            f"{seq_dir}: the 16 stacks hold different numbers of patches ({listing}); every image of a "
            f"sequence must have the same N; {fix}"
        )
    return np.stack(stacks)


def list_sequences(release_dir: Path) -> list[str]:
    """Sequence folders (``i_*``, ``v_*``) under the release folder, sorted by name."""
    if not release_dir.is_dir():
        raise DescbenchError(f"missing folder {release_dir}; run `descbench download hpatches` "
                             "or `descbench make-mini` first")
    names = sorted(p.name for p in release_dir.iterdir() if p.is_dir() and p.name.startswith(SEQUENCE_PREFIXES))
    ignored = sorted(p.name for p in release_dir.iterdir() if p.name not in names)
    if ignored:
        log.info("%s: ignoring entries that are not i_*/v_* sequence folders: %s", release_dir, ignored)
    if not names:
        raise DescbenchError(f"{release_dir} holds no i_*/v_* sequence folders; download or generate "
                             "HPatches again")
    return names


def read_splits(splits_path: Path, fix: str = "download it again") -> dict[str, dict]:
    """``splits.json``: an object mapping split names to objects with a ``test`` list of sequence names and
    optionally ``train`` (a list) and ``name`` (a string). Anything else raises ``DescbenchError``."""
    if not splits_path.is_file():
        raise DescbenchError(f"missing file {splits_path}; {fix}")
    try:
        text = splits_path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DescbenchError(f"{splits_path} is not UTF-8 text (byte {exc.start}); {fix}") from None
    try:
        splits = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DescbenchError(f"{splits_path} is not valid JSON ({exc}); {fix}") from None

    def bad(what: str) -> DescbenchError:
        return DescbenchError(f"{splits_path}: {what}; it is not an HPatches splits file, {fix}")

    if not isinstance(splits, dict) or not splits:
        raise bad(f"the top level is {_json_type(splits)}, expected an object mapping split names to splits")
    for split_name, split in splits.items():
        if not isinstance(split, dict):
            raise bad(f"split {split_name!r} is {_json_type(split)}, expected an object with a 'test' list")
        if "test" not in split:
            raise bad(f"split {split_name!r} has no 'test' list")
        for key in ("test", "train"):
            if key not in split:
                continue
            if not isinstance(split[key], list):
                raise bad(f"split {split_name!r}: {key!r} is {_json_type(split[key])}, expected a list of "
                          "sequence names")
            odd = [n for n in split[key] if not isinstance(n, str)]
            if odd:
                raise bad(f"split {split_name!r}: {key!r} holds {json.dumps(odd[0])} ({_json_type(odd[0])}), "
                          "expected sequence names (strings)")
        if "name" in split and not isinstance(split["name"], str):
            raise bad(f"split {split_name!r}: 'name' is {_json_type(split['name'])}, expected a string")
    return splits


def _json_type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _check_tasks(tasks_dir: Path, sequences: list[str], fix: str | None = None) -> list[Path]:
    """The task files to copy; the splits must only name sequences that exist."""
    splits_path = tasks_dir / SPLITS_FILE
    if not splits_path.is_file():
        raise DescbenchError(f"missing file {splits_path}; " + (
            fix.replace("re-download it", "download it") if fix else
            "run `descbench download hpatches-tasks` (or `descbench make-mini` for the mini data)"))
    splits = read_splits(splits_path, fix or "download it again")
    for split_name, split in splits.items():
        named = set(split.get("test", [])) | set(split.get("train", []))
        unknown = sorted(named - set(sequences))
        if unknown:
            raise DescbenchError(
                f"{splits_path}: split {split_name!r} names sequences that are not in the release: "
                f"{unknown[:5]}{' ...' if len(unknown) > 5 else ''}; the task files do not belong to "
                "this HPatches folder"
            )
    return [splits_path] + sorted(tasks_dir.glob("*.csv"))


def prepared_bytes(release_dir: Path, names: list[str], task_files: list[Path]) -> int:
    """About how many bytes ``prepare_hpatches`` writes (the PNG heights give N without decoding)."""
    total = 64 << 10
    for name in names:
        height = png_height(release_dir / name / "ref.png") or 0
        total += len(IMAGE_TYPES) * height * PATCH_SIZE + 128
    return total + sum(path.stat().st_size for path in task_files)


def prepare_hpatches(data_root: str | Path) -> dict:
    """Convert the PNG release + task files into ``DATA/hpatches/``; returns the meta.json summary.

    The output folder appears only when every sequence was read and checked.
    """
    release_dir = raw_release_dir(data_root)
    out_dir = prepared_dir(data_root)
    names = list_sequences(release_dir)
    check_writable(out_dir, option="--data", replace=True)
    task_files = _check_tasks(raw_tasks_dir(data_root), names, tasks_fix(data_root))
    fix = release_fix(data_root)
    counts: dict[str, int] = {}
    with atomic_dir(out_dir, need_bytes=prepared_bytes(release_dir, names, task_files)) as tmp:
        for name in progress(names, desc="hpatches sequences", unit="seq", leave=False, delay=0, logger=log):
            stack = read_sequence(release_dir / name, fix)
            counts[name] = int(stack.shape[1])
            np.save(tmp / f"{name}.npy", stack)
        (tmp / "tasks").mkdir()
        for path in task_files:
            shutil.copyfile(path, tmp / "tasks" / path.name)
        meta = {
            "format_version": FORMAT_VERSION,
            "source_dir": str(release_dir.resolve()),
            "image_types": list(IMAGE_TYPES),
            "n_sequences": len(names),
            "n_illumination": sum(n.startswith("i_") for n in names),
            "n_viewpoint": sum(n.startswith("v_") for n in names),
            "n_patches": sum(counts.values()),
            "sequences": counts,
            "task_files": {path.name: sha256_file(path) for path in task_files},
        }
        write_json(tmp / "meta.json", meta)
    return meta


def load_sequences(data_root: str | Path) -> dict[str, np.ndarray]:
    """Memory-map every prepared sequence: name -> uint8 (16, N, 65, 65)."""
    base = prepared_dir(data_root)
    paths = sorted(base.glob("*.npy")) if base.is_dir() else []
    if not paths:
        raise DescbenchError(f"no prepared sequences in {base}; run `descbench prepare hpatches "
                             f"--data {data_root}` first")
    sequences = {}
    for path in paths:
        array = np.load(path, mmap_mode="r")
        if array.ndim != 4 or array.shape[0] != len(IMAGE_TYPES) or array.shape[2:] != (PATCH_SIZE, PATCH_SIZE):
            raise DescbenchError(f"{path} has shape {array.shape}, expected (16, N, 65, 65); run "
                                 "`descbench prepare hpatches` again")
        sequences[path.stem] = array
    return sequences


def tasks_dir(data_root: str | Path) -> Path:
    """Where the prepared copy of the task files lives."""
    return prepared_dir(data_root) / "tasks"
