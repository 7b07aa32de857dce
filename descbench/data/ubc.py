"""UBC PhotoTour (Brown) patches: read the original BMP tiles, ``info.txt`` and ``m50_*`` pair files,
write memory-mappable arrays, and load them back.

Original layout (docs/protocols.md §3.1), one folder per set ``DATA/raw/ubc/<set>/``:

- ``patches*.bmp``: 1024x1024 8-bit grayscale tiles, each a 16x16 grid of 64x64 patches in row-major
  order; global patch id = 256 * tile + 16 * row + col with tiles in ascending file-name order.
- ``info.txt``: one line ``<3D point id> <image id>`` per patch, in patch-id order. Its line count is
  the set's length N; the last tile is only partly used.
- ``m50_<n>_<n>_0.txt``: pair files, 7 integers a line:
  ``patchID1 pointID1 unused patchID2 pointID2 unused unused``; a pair matches iff the point ids agree.

Length rules (what counts as a broken set): the tiles must hold the N patches and no more than one tile's
worth beyond them, i.e. the number of tiles must equal ceil(N / 256). More patches in ``info.txt`` than the
tiles can hold means missing tiles; a whole unused tile means a truncated ``info.txt``. For the published
sets (liberty, notredame, yosemite and their _harris variants) N must equal the published length exactly.

Pair-file rule: the standard test pairs are ``m50_100000_100000_0.txt`` (50,000 matches + 50,000
non-matches), required for the published sets. Any other set (e.g. the generated ``mini_*`` sets) uses the
``m50_<n>_<n>_0.txt`` file with the largest n present. Whichever file is used is stored as
``pairs_100k.npy`` (the name is the contract; ``meta.json`` records the source file and count).

Consistency of ``info.txt`` with the tiles: the unused slots of the last tile are blank (one grey value;
make-mini writes zeros). For sets without a published length, a non-blank slot right after patch N-1 means
``info.txt`` lost lines, and it is blamed rather than the pair file that names the lost patches.

Output: ``patches.npy`` is written through ordinary file writes into space reserved up front
(``posix_fallocate``), never through a memory map, so a full disk is a "disk full" error (and the staging
folder is removed) instead of a SIGBUS.
"""

from __future__ import annotations

import hashlib
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from descbench.data.sources import CATALOGUE
from descbench.errors import DescbenchError
from descbench.fileio import atomic_dir, check_writable, preallocate, sha256_file, write_json
from descbench.progress import progress

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PATCH_SIZE = 64
TILE_SIZE = 1024
PATCHES_PER_TILE = (TILE_SIZE // PATCH_SIZE) ** 2
TEST_PAIRS_FILE = "m50_100000_100000_0.txt"
# Published lengths (torchvision ``PhotoTour.lens``, docs/protocols.md §3.1).
PUBLISHED_LENGTHS = {
    "liberty": 450_092,
    "notredame": 468_159,
    "yosemite": 633_587,
    "liberty_harris": 379_587,
    "notredame_harris": 325_295,
    "yosemite_harris": 450_912,
}
INFO_COLUMNS = 2
PAIR_COLUMNS = 7
_PAIR_FILE_RE = re.compile(r"^m50_(\d+)_(\d+)_0\.txt$")
DEFAULT_FIX = "download or generate the set again"


@dataclass(frozen=True)
class UBCSet:
    """A prepared set: patches (N,64,64) uint8, labels (N,) int64 3D point ids, pairs (M,3) int64
    ``idx1, idx2, is_match`` (all memory-mapped)."""

    patches: np.ndarray
    labels: np.ndarray
    pairs: np.ndarray


def raw_set_dir(data_root: str | Path, set_name: str) -> Path:
    return Path(data_root) / "raw" / "ubc" / set_name


def prepared_set_dir(data_root: str | Path, set_name: str) -> Path:
    return Path(data_root) / "ubc" / set_name


def fix_hint(data_root: str | Path, set_name: str) -> str:
    """How to get good raw files for ``set_name`` again (the end of every bad-input message)."""
    if set_name in CATALOGUE.ubc:
        # a folder that passes download's own check is reused, so it must go first
        return (f"delete {raw_set_dir(data_root, set_name)} and run `descbench download ubc {set_name} "
                f"--data {data_root}` (it unpacks the kept archive again)")
    if set_name.startswith("mini_"):
        return f"generate the set again (`descbench make-mini --data {data_root}`)"
    return DEFAULT_FIX


def read_int_table(path: Path, n_columns: int, fix: str = DEFAULT_FIX) -> np.ndarray:
    """Read a whitespace-separated integer table with exactly ``n_columns`` per line.

    Blank lines are skipped. A bad line raises ``DescbenchError`` naming the file, its line number and ``fix``.
    """
    if not path.is_file():
        raise DescbenchError(f"missing file {path}; {fix}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # numpy warns on empty input; handled below
            table = np.loadtxt(path, dtype=np.int64, ndmin=2)
    except ValueError:
        table = None
    if table is None or table.shape[1] != n_columns or table.size == 0:
        _raise_first_bad_line(path, n_columns, fix)
    return table


def _raise_first_bad_line(path: Path, n_columns: int, fix: str = DEFAULT_FIX) -> None:
    """Scan ``path`` line by line (only after the fast reader failed) to name the offending line."""
    n_lines = 0
    with open(path, encoding="ascii", errors="replace") as fh:
        for line_no, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            n_lines += 1
            if len(fields) != n_columns:
                raise DescbenchError(
                    f"{path}, line {line_no}: {len(fields)} columns, expected {n_columns} "
                    f"({line.strip()!r}); the file is damaged, {fix}"
                )
            for field in fields:
                try:
                    int(field)
                except ValueError:
                    raise DescbenchError(
                        f"{path}, line {line_no}: {field!r} is not an integer; the file is damaged, {fix}"
                    ) from None
    if n_lines == 0:
        raise DescbenchError(f"{path} is empty; {fix}")
    raise DescbenchError(f"{path}: cannot read it as a table of {n_columns} integers per line; {fix}")


def tile_files(raw_dir: Path) -> list[Path]:
    """The ``patches*.bmp`` tiles of a set, in ascending file-name order (= patch-id order)."""
    return sorted(raw_dir.glob("patches*.bmp"), key=lambda p: p.name)


def tile_to_patches(tile: np.ndarray) -> np.ndarray:
    """(1024,1024) tile -> (256,64,64) patches in row-major grid order."""
    grid = TILE_SIZE // PATCH_SIZE
    return tile.reshape(grid, PATCH_SIZE, grid, PATCH_SIZE).transpose(0, 2, 1, 3).reshape(
        PATCHES_PER_TILE, PATCH_SIZE, PATCH_SIZE)


def decode_tile(path: Path, data: bytes, fix: str = DEFAULT_FIX) -> np.ndarray:
    """Decode one BMP tile to (1024,1024) uint8 and check its size."""
    import cv2

    if not data:
        raise DescbenchError(f"{path} is empty (0 bytes), not a BMP image; the tile is damaged, {fix}")
    try:
        tile = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    except cv2.error as exc:
        raise DescbenchError(f"{path} is not a readable BMP image (OpenCV: {exc.err}); {fix}") from None
    if tile is None:
        raise DescbenchError(f"{path} is not a readable BMP image; {fix}")
    if tile.shape != (TILE_SIZE, TILE_SIZE):
        raise DescbenchError(
            f"{path} is {tile.shape[1]}x{tile.shape[0]} pixels, expected {TILE_SIZE}x{TILE_SIZE} "
            f"(a 16x16 grid of 64x64 patches); the tile is damaged, {fix}"
        )
    return tile


def select_pairs_file(raw_dir: Path, set_name: str, fix: str | None = None) -> Path:
    """The standard 100K test pairs for published sets; otherwise the m50 file with the largest n."""
    if set_name in PUBLISHED_LENGTHS:
        path = raw_dir / TEST_PAIRS_FILE
        if not path.is_file():
            raise DescbenchError(f"missing file {path}; " + (fix or f"download the set again "
                                                                   f"(descbench download ubc {set_name})"))
        return path
    candidates = [(int(m.group(1)), p) for p in raw_dir.iterdir()
                  if (m := _PAIR_FILE_RE.match(p.name)) and p.is_file()]
    if not candidates:
        raise DescbenchError(f"missing pair file: no m50_<n>_<n>_0.txt in {raw_dir}; {fix or DEFAULT_FIX}")
    return max(candidates, key=lambda c: (c[0], c[1].name))[1]


def _check_length(set_name: str, info_path: Path, n_patches: int, tiles: list[Path], raw_dir: Path,
                  fix: str = DEFAULT_FIX) -> None:
    if not tiles:
        raise DescbenchError(f"missing files: no patches*.bmp tiles in {raw_dir}; {fix}")
    capacity = len(tiles) * PATCHES_PER_TILE
    if n_patches > capacity:
        raise DescbenchError(
            f"{info_path} lists {n_patches} patches but the {len(tiles)} tiles in {raw_dir} hold at most "
            f"{capacity}; tiles are missing, {fix}"
        )
    if n_patches <= capacity - PATCHES_PER_TILE:
        raise DescbenchError(
            f"{info_path} lists only {n_patches} patches but the {len(tiles)} tiles in {raw_dir} hold more "
            f"than {capacity - PATCHES_PER_TILE} (a whole tile would be unused); info.txt is truncated, {fix}"
        )
    published = PUBLISHED_LENGTHS.get(set_name)
    if published is not None and n_patches != published:
        raise DescbenchError(
            f"{info_path} lists {n_patches} patches but the published {set_name} set has {published}; "
            f"the file is damaged, {fix}"
        )


def _is_blank(patches: np.ndarray) -> np.ndarray:
    """Per patch: True if every pixel has the same value (how the unused slots of a last tile look)."""
    flat = patches.reshape(len(patches), -1)
    return flat.min(axis=1) == flat.max(axis=1)


def _check_unused_slots(info_path: Path, n_patches: int, tiles: list[Path], fix: str = DEFAULT_FIX) -> None:
    """A short ``info.txt``: the slot right after the last listed patch still holds a (non-blank) patch."""
    used = n_patches - (len(tiles) - 1) * PATCHES_PER_TILE
    if used >= PATCHES_PER_TILE:
        return  # the last tile is full: nothing to compare
    last = tiles[-1]
    unused = tile_to_patches(decode_tile(last, last.read_bytes(), fix))[used:]
    blank = _is_blank(unused)
    if blank[0]:
        return
    filled = int(np.argmax(blank)) if blank.any() else len(blank)  # non-blank slots right after N-1
    at_least = "" if blank.any() else "at least "
    raise DescbenchError(
        f"{info_path} lists {n_patches} patches, but {last.name} also holds patches {n_patches}.."
        f"{n_patches + filled - 1} after them (slots that are blank in a complete set): info.txt is "
        f"{at_least}{filled} line{'s' if filled > 1 else ''} short (truncated or lines lost), {fix}"
    )


def prepared_bytes(n_patches: int, n_pairs: int) -> int:
    """About how many bytes ``prepare_ubc`` writes for a set (patches, labels, pairs, headers, meta)."""
    return n_patches * (PATCH_SIZE * PATCH_SIZE + 8) + n_pairs * 3 * 8 + (64 << 10)


def _write_rows(fh, rows: np.ndarray) -> None:
    """Append ``rows`` (C-contiguous) to the open file ``fh`` with an ordinary write."""
    fh.write(np.ascontiguousarray(rows).reshape(-1).data)


def _write_patches(path: Path, tiles: list[Path], n_patches: int, set_name: str, fix: str,
                   digest: "hashlib._Hash") -> None:
    """``patches.npy`` (N,64,64) uint8 from the tiles, through ordinary writes into space reserved first."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
              "shape": (n_patches, PATCH_SIZE, PATCH_SIZE)}
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.flush()
        preallocate(fh.fileno(), fh.tell() + n_patches * PATCH_SIZE * PATCH_SIZE)
        for tile_index, tile_path in enumerate(progress(tiles, desc=f"{set_name} tiles", unit="tile", leave=False,
                                                              logger=log)):
            data = tile_path.read_bytes()
            digest.update(data)
            start = tile_index * PATCHES_PER_TILE
            stop = min(start + PATCHES_PER_TILE, n_patches)
            _write_rows(fh, tile_to_patches(decode_tile(tile_path, data, fix))[: stop - start])


def prepare_ubc(data_root: str | Path, set_name: str) -> dict:
    """Convert ``DATA/raw/ubc/<set>/`` into ``DATA/ubc/<set>/{patches,labels,pairs_100k}.npy`` + meta.json.

    Everything is checked before the arrays are written, and the output folder appears only when complete.
    A full disk raises a ``DescbenchError`` (free space is checked first) and leaves no staging folder.
    Returns the summary stored in ``meta.json``.
    """
    raw_dir = raw_set_dir(data_root, set_name)
    out_dir = prepared_set_dir(data_root, set_name)
    if not raw_dir.is_dir():
        raise DescbenchError(f"missing folder {raw_dir}; run `descbench download ubc {set_name} --data "
                             f"{data_root}` or `descbench make-mini --data {data_root}` first")
    check_writable(out_dir, option="--data", replace=True)
    fix = fix_hint(data_root, set_name)
    info_path = raw_dir / "info.txt"
    info = read_int_table(info_path, INFO_COLUMNS, fix)
    labels = info[:, 0].copy()
    n_patches = len(labels)
    tiles = tile_files(raw_dir)
    _check_length(set_name, info_path, n_patches, tiles, raw_dir, fix)
    if set_name not in PUBLISHED_LENGTHS:  # published sets: the exact length above is the check
        _check_unused_slots(info_path, n_patches, tiles, fix)

    pairs_path = select_pairs_file(raw_dir, set_name, fix)
    m50 = read_int_table(pairs_path, PAIR_COLUMNS, fix)
    idx1, idx2 = m50[:, 0], m50[:, 3]
    bad = np.flatnonzero((idx1 < 0) | (idx1 >= n_patches) | (idx2 < 0) | (idx2 >= n_patches))
    if bad.size:
        line = int(bad[0]) + 1
        raise DescbenchError(
            f"{pairs_path}, pair {line}: patch id out of range 0..{n_patches - 1} "
            f"({m50[bad[0], 0]}, {m50[bad[0], 3]}); the pair file does not belong to this set "
            f"({info_path.name} lists {n_patches} patches and the tiles agree); {fix}"
        )
    # Match = equal 3D point ids in the pair file (as torchvision and HardNet read it).
    is_match = (m50[:, 1] == m50[:, 4]).astype(np.int64)
    pairs = np.stack([idx1, idx2, is_match], axis=1)
    label_mismatches = int(np.count_nonzero((labels[idx1] != m50[:, 1]) | (labels[idx2] != m50[:, 4])))
    if label_mismatches:
        log.warning("%s: %d pairs name a 3D point id that differs from info.txt", pairs_path, label_mismatches)

    tiles_digest = hashlib.sha256()
    with atomic_dir(out_dir, need_bytes=prepared_bytes(n_patches, len(pairs))) as tmp:
        _write_patches(tmp / "patches.npy", tiles, n_patches, set_name, fix, tiles_digest)
        np.save(tmp / "labels.npy", labels)
        np.save(tmp / "pairs_100k.npy", pairs)
        meta = {
            "format_version": FORMAT_VERSION,
            "set": set_name,
            "source_dir": str(raw_dir.resolve()),
            "n_patches": n_patches,
            "n_points": int(np.unique(labels).size),
            "n_tiles": len(tiles),
            "pairs_file": pairs_path.name,
            "n_pairs": int(len(pairs)),
            "n_matches": int(is_match.sum()),
            "n_nonmatches": int(len(pairs) - is_match.sum()),
            "pair_label_mismatches": label_mismatches,
            "sha256": {
                "info.txt": sha256_file(info_path),
                pairs_path.name: sha256_file(pairs_path),
                "tiles": tiles_digest.hexdigest(),
            },
        }
        write_json(tmp / "meta.json", meta)
    return meta


def load_ubc(data_root: str | Path, set_name: str) -> UBCSet:
    """Memory-map a prepared set (``descbench prepare ubc`` writes it)."""
    set_dir = prepared_set_dir(data_root, set_name)
    paths = {name: set_dir / f"{name}.npy" for name in ("patches", "labels", "pairs_100k")}
    for path in paths.values():
        if not path.is_file():
            raise DescbenchError(f"missing file {path}; run `descbench prepare ubc --data {data_root} "
                                 f"{set_name}` first")
    ubc_set = UBCSet(
        patches=np.load(paths["patches"], mmap_mode="r"),
        labels=np.load(paths["labels"], mmap_mode="r"),
        pairs=np.load(paths["pairs_100k"], mmap_mode="r"),
    )
    if ubc_set.patches.shape[1:] != (PATCH_SIZE, PATCH_SIZE) or len(ubc_set.labels) != len(ubc_set.patches):
        raise DescbenchError(f"{set_dir} holds inconsistent arrays (patches {ubc_set.patches.shape}, "
                             f"labels {ubc_set.labels.shape}); run `descbench prepare ubc` again")
    return ubc_set


def raw_sets(data_root: str | Path) -> list[str]:
    """Names of the sets under ``DATA/raw/ubc/`` (folders that have an ``info.txt``)."""
    base = Path(data_root) / "raw" / "ubc"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "info.txt").is_file())
