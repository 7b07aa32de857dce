"""HPatches patches: read the original PNG stacks, write one memory-mappable array per sequence, load them.

Original layout (PROTOCOLS.md §1.1): ``DATA/raw/hpatches-release/<seq>/{ref,e1..e5,h1..h5,t1..t5}.png``,
each PNG one column of N 65x65 patches, shape (N*65, 65); row i of all 16 files is the same physical point.
Task files (``splits.json`` and the official csvs, §1.3-1.4) live in ``DATA/raw/hpatches-tasks/``.

Prepared layout: ``DATA/hpatches/<seq>.npy`` uint8 (16, N, 65, 65) in ``IMAGE_TYPES`` order,
``DATA/hpatches/tasks/`` (a copy of the task files) and ``DATA/hpatches/meta.json``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from descbench.errors import DescbenchError
from descbench.fileio import atomic_dir, sha256_file, write_json

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PATCH_SIZE = 65
IMAGE_TYPES = ("ref",) + tuple(f"{level}{k}" for level in "eht" for k in range(1, 6))
SEQUENCE_PREFIXES = ("i_", "v_")
SPLITS_FILE = "splits.json"


def raw_release_dir(data_root: str | Path) -> Path:
    return Path(data_root) / "raw" / "hpatches-release"


def raw_tasks_dir(data_root: str | Path) -> Path:
    return Path(data_root) / "raw" / "hpatches-tasks"


def prepared_dir(data_root: str | Path) -> Path:
    return Path(data_root) / "hpatches"


def read_stack(path: Path) -> np.ndarray:
    """One PNG stack -> (N, 65, 65) uint8 (patch i = rows 65*i .. 65*i+64)."""
    import cv2

    if not path.is_file():
        raise DescbenchError(f"missing file {path}; download or generate HPatches again")
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DescbenchError(f"{path} is not a readable PNG image; download or generate HPatches again")
    height, width = image.shape
    if width != PATCH_SIZE or height == 0 or height % PATCH_SIZE:
        raise DescbenchError(
            f"{path} is {width}x{height} pixels; an HPatches stack is {PATCH_SIZE} pixels wide and a "
            f"multiple of {PATCH_SIZE} high (one column of {PATCH_SIZE}x{PATCH_SIZE} patches); the file "
            "is damaged, download or generate HPatches again"
        )
    return image.reshape(height // PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)


def read_sequence(seq_dir: Path) -> np.ndarray:
    """The 16 stacks of one sequence -> (16, N, 65, 65) uint8 in ``IMAGE_TYPES`` order."""
    stacks = [read_stack(seq_dir / f"{image_type}.png") for image_type in IMAGE_TYPES]
    counts = {image_type: len(stack) for image_type, stack in zip(IMAGE_TYPES, stacks)}
    if len(set(counts.values())) != 1:
        listing = ", ".join(f"{k}={v}" for k, v in counts.items())
        raise DescbenchError(
            f"{seq_dir}: the 16 stacks hold different numbers of patches ({listing}); every image of a "
            "sequence must have the same N; download or generate HPatches again"
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


def _check_tasks(tasks_dir: Path, sequences: list[str]) -> list[Path]:
    """The task files to copy; the splits must only name sequences that exist."""
    splits_path = tasks_dir / SPLITS_FILE
    if not splits_path.is_file():
        raise DescbenchError(f"missing file {splits_path}; run `descbench download hpatches-tasks` "
                             "(or `descbench make-mini` for the mini data)")
    try:
        splits = json.loads(splits_path.read_text())
    except json.JSONDecodeError as exc:
        raise DescbenchError(f"{splits_path} is not valid JSON ({exc}); download it again") from None
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


def prepare_hpatches(data_root: str | Path) -> dict:
    """Convert the PNG release + task files into ``DATA/hpatches/``; returns the meta.json summary.

    The output folder appears only when every sequence was read and checked.
    """
    release_dir = raw_release_dir(data_root)
    names = list_sequences(release_dir)
    task_files = _check_tasks(raw_tasks_dir(data_root), names)
    out_dir = prepared_dir(data_root)
    counts: dict[str, int] = {}
    with atomic_dir(out_dir) as tmp:
        for name in tqdm(names, desc="hpatches sequences", unit="seq", leave=False):
            stack = read_sequence(release_dir / name)
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
                             f"--root {data_root}` first")
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
