"""HPatches full-image sequences: download, read the original layout, prepare arrays, generate mini ones.

Original layout (docs/protocols.md §6.1): ``DATA/raw/hpatches-sequences-release/<seq>/`` with ``1.ppm`` ..
``6.ppm`` and ``H_1_2`` .. ``H_1_6``, plain-text 3x3 matrices mapping pixel coordinates of image 1 to image k
(x_k ~ H_1_k x_1); 116 sequences, 57 ``i_`` (illumination, identity homographies) and 59 ``v_`` (viewpoint).
Images of one sequence may differ in size.

Prepared layout: ``DATA/hpatches-sequences/<seq>/{1..6}.npy`` grey uint8 (H, W) (OpenCV's BGR-to-grey
weights, as ``cv2.imread(path, IMREAD_GRAYSCALE)``), ``<seq>/H.npy`` float64 (5, 3, 3) = H_1_2 .. H_1_6, and
``meta.json`` (image sizes per sequence). The folder appears only when every sequence was read and checked.

``make_mini_sequences`` writes a few sequences in the original layout from photographs that scikit-image
ships, with known homographies, for the offline mini preset and the tests.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from descbench.data.sources import SEQUENCE_PREFIXES
from descbench.errors import DescbenchError
from descbench.fileio import atomic_dir, check_writable, write_json
from descbench.progress import progress

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
N_IMAGES = 6
IMAGE_NAMES = tuple(f"{k}.ppm" for k in range(1, N_IMAGES + 1))
HOMOGRAPHY_NAMES = tuple(f"H_1_{k}" for k in range(2, N_IMAGES + 1))
RAW_FOLDER = "hpatches-sequences-release"
PREPARED_FOLDER = "hpatches-sequences"
MINI_RECORD = "mini.json"  # written by make-mini into DATA/raw/ (descbench.data.mini.MINI_RECORD)

# The 8 sequences D2-Net's benchmark (mihaidusmanu/d2-net hpatches_sequences/download.sh) deletes for their
# resolution (images larger than 1600x1200): 5 i_ and 3 v_, leaving 108 (52 i_, 56 v_).
D2NET_EXCLUDED = ("i_contruction", "i_crownnight", "i_dc", "i_pencils", "i_whitebuilding",
                  "v_artisans", "v_astronautis", "v_talent")
SUBSETS = ("d2net", "full")

# Mini sequences: name -> scikit-image photo. The photos differ from the patch sequences' ones.
MINI_SCENES = {
    "i_coffee": "coffee",
    "i_chelsea": "chelsea",
    "v_astronaut": "astronaut",
    "v_immuno": "immunohistochemistry",
}
MINI_SIZE = (320, 240)  # width, height of image 1
MINI_MARGIN = 0.25  # the photo extends this fraction of the image size beyond image 1 on each side
# Viewpoint change of image 6 (image k gets (k - 1) / 5 of it), uniform in +-amplitude: rotation (degrees),
# log2 scale, corner shifts (fraction of the image side)
MINI_VIEW = {"rotation": 35.0, "log2_scale": 0.7, "corners": 0.12}


def raw_dir(data_root: str | Path) -> Path:
    return Path(data_root) / "raw" / RAW_FOLDER


def prepared_dir(data_root: str | Path) -> Path:
    return Path(data_root) / PREPARED_FOLDER


def category(name: str) -> str:
    """'i' (illumination) or 'v' (viewpoint), from the folder name."""
    return name[0]


def select(names: list[str], subset: str) -> list[str]:
    """The sequences of ``subset``: ``full`` keeps all, ``d2net`` leaves out ``D2NET_EXCLUDED``."""
    if subset not in SUBSETS:
        raise DescbenchError(f"unknown subset {subset!r}; use one of {', '.join(SUBSETS)}")
    return list(names) if subset == "full" else [n for n in names if n not in D2NET_EXCLUDED]


def _fix(data_root: str | Path) -> str:
    if (Path(data_root) / "raw" / MINI_RECORD).is_file():
        return f"generate it again (`descbench make-mini --out {data_root}`)"
    return (f"delete {raw_dir(data_root)} and run `descbench download hpatches-sequences --data {data_root}` "
            "(it unpacks the kept archive again)")


# --------------------------------------------------------------------------------------------------
# reading the original layout
# --------------------------------------------------------------------------------------------------
def read_homography(path: Path, fix: str = "download the sequences again") -> np.ndarray:
    """A plain-text 3x3 homography (whitespace-separated numbers) as float64."""
    if not path.is_file():
        raise DescbenchError(f"missing file {path}; {fix}")
    try:
        matrix = np.loadtxt(path, dtype=np.float64)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DescbenchError(f"{path} is not a text file of 3x3 numbers ({exc}); {fix}") from None
    if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
        raise DescbenchError(f"{path} holds {matrix.size} values of shape {matrix.shape}, expected a finite "
                             f"3x3 homography; {fix}")
    if abs(np.linalg.det(matrix)) < 1e-12:
        raise DescbenchError(f"{path} is a singular matrix, not a homography; {fix}")
    return matrix


def read_image(path: Path, fix: str = "download the sequences again") -> np.ndarray:
    """An image file as grey uint8 (H, W)."""
    import cv2

    if not path.is_file():
        raise DescbenchError(f"missing file {path}; {fix}")
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None or image.size == 0:
        raise DescbenchError(f"{path} is not a readable image; {fix}")
    return image


def list_sequences(folder: Path, fix: str = "download the sequences again") -> list[str]:
    """The ``i_*``/``v_*`` folders of a sequences release, sorted by name."""
    if not folder.is_dir():
        raise DescbenchError(f"missing folder {folder}; run `descbench download hpatches-sequences` or "
                             "`descbench make-mini` first")
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name.startswith(SEQUENCE_PREFIXES))
    if not names:
        raise DescbenchError(f"{folder} holds no i_*/v_* sequence folders; {fix}")
    return names


def missing_files(seq_dir: Path) -> list[str]:
    """The images and homography files that the sequence folder ``seq_dir`` lacks."""
    return [f for f in IMAGE_NAMES + HOMOGRAPHY_NAMES if not (seq_dir / f).is_file()]


def validate_release(folder: Path, n_sequences: int, n_illumination: int) -> str:
    """Check an unpacked release: the expected i_/v_ folders, each with 6 images and 5 homographies."""
    from descbench.data import download

    return download.check_sequence_folders(folder, "HPatches sequences", n_sequences, missing_files,
                                           f"{N_IMAGES} images + {len(HOMOGRAPHY_NAMES)} homographies",
                                           n_illumination=n_illumination)


def download_sequences(source, root: Path, *, expect_sha256: str | None = None, from_dir: Path | None = None,
                       http=None, session=None, limits=None):
    """``DATA/raw/hpatches-sequences-release/<seq>/`` from the verified archive in ``DATA/raw/archives/``,
    through the same machinery as the patch release (mirrors, resumption, safe unpacking, ``--from-dir``).
    ``source`` is a ``sources.HPatchesSequencesSource``; by default the archive may unpack to 8 GiB (the
    PPMs are stored uncompressed; the archive is 1.3 GB)."""
    from descbench.data import download

    if limits is None:
        members = source.n_sequences * (N_IMAGES + len(HOMOGRAPHY_NAMES) + 2) + 1000
        limits = download.ExtractLimits(max_bytes=8 * download.GiB, max_members=members)
    return download.download_archive_dataset(
        source.archive.name, source.archive, raw_dir(root),
        lambda folder: validate_release(folder, source.n_sequences, source.n_illumination), Path(root),
        http=http or download.HttpOptions(), expect_sha256=expect_sha256, from_dir=from_dir, session=session,
        limits=limits)


# --------------------------------------------------------------------------------------------------
# prepared arrays
# --------------------------------------------------------------------------------------------------
def prepare_sequences(data_root: str | Path) -> dict:
    """Convert ``DATA/raw/hpatches-sequences-release/`` into ``DATA/hpatches-sequences/``; returns meta.json."""
    source, out_dir = raw_dir(data_root), prepared_dir(data_root)
    fix = _fix(data_root)
    names = list_sequences(source, fix)
    incomplete = [(n, m) for n in names if (m := missing_files(source / n))]
    if incomplete:
        name, missing = incomplete[0]
        more = f" (and {len(incomplete) - 1} more sequences are incomplete)" if len(incomplete) > 1 else ""
        raise DescbenchError(f"{source / name} lacks {', '.join(missing)}{more}; {fix}")
    check_writable(out_dir, option="--data", replace=True)
    shapes: dict[str, list[list[int]]] = {}
    with atomic_dir(out_dir) as tmp:
        for name in progress(names, desc="hpatches sequences", unit="seq", leave=False, delay=0, logger=log):
            (tmp / name).mkdir()
            images = [read_image(source / name / f, fix) for f in IMAGE_NAMES]
            homographies = np.stack([read_homography(source / name / f, fix) for f in HOMOGRAPHY_NAMES])
            for k, image in enumerate(images, start=1):
                np.save(tmp / name / f"{k}.npy", image)
            np.save(tmp / name / "H.npy", homographies)
            shapes[name] = [list(image.shape) for image in images]
        meta = {
            "format_version": FORMAT_VERSION,
            "source_dir": str(source.resolve()),
            "n_sequences": len(names),
            "n_illumination": sum(category(n) == "i" for n in names),
            "n_viewpoint": sum(category(n) == "v" for n in names),
            "image_shapes": shapes,
        }
        write_json(tmp / "meta.json", meta)
    return meta


class Sequence:
    """One prepared sequence: grey images 1..6 (memory-mapped) and H_1_2 .. H_1_6."""

    def __init__(self, folder: Path):
        self.name = folder.name
        self.category = category(self.name)
        self.images = [np.load(folder / f"{k}.npy", mmap_mode="r") for k in range(1, N_IMAGES + 1)]
        self.homographies = np.load(folder / "H.npy")
        if self.homographies.shape != (N_IMAGES - 1, 3, 3):
            raise DescbenchError(f"{folder / 'H.npy'} has shape {self.homographies.shape}, expected (5, 3, 3); "
                                 "run `descbench prepare hpatches-sequences` again")


def load_sequences(data_root: str | Path, subset: str = "d2net") -> list[Sequence]:
    """The prepared sequences of ``subset`` (``d2net`` or ``full``), sorted by name."""
    base = prepared_dir(data_root)
    if not (base / "meta.json").is_file():
        raise DescbenchError(f"no prepared sequences in {base}; run `descbench prepare hpatches-sequences "
                             f"--data {data_root}` first")
    names = select(sorted(p.name for p in base.iterdir() if p.is_dir() and p.name.startswith(SEQUENCE_PREFIXES)),
                   subset)
    if not names:
        raise DescbenchError(f"{base} holds no sequences of subset {subset!r}")
    try:
        return [Sequence(base / name) for name in names]
    except (OSError, ValueError) as exc:
        raise DescbenchError(f"cannot read the prepared sequences in {base} ({exc}); run `descbench prepare "
                             "hpatches-sequences` again") from exc


# --------------------------------------------------------------------------------------------------
# mini sequences
# --------------------------------------------------------------------------------------------------
def _homography(size: tuple[int, int], k: int, rng: np.random.Generator) -> np.ndarray:
    """Viewpoint change of image k (2..6): rotation and scale about the centre plus corner perspective,
    growing with k up to the amplitudes of ``MINI_VIEW`` at image 6."""
    import cv2

    w, h = size
    step = (k - 1) / 5
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    centre = np.array([w / 2, h / 2])
    amp = MINI_VIEW
    angle = math.radians(rng.uniform(-amp["rotation"], amp["rotation"]) * step)
    scale = 2.0 ** (rng.uniform(-amp["log2_scale"], amp["log2_scale"]) * step)
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    shifts = rng.uniform(-amp["corners"], amp["corners"], (4, 2)) * step * np.array([w, h])
    moved = (corners - centre) @ rotation.T + centre + shifts
    return cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32)).astype(np.float64)


def make_mini_sequence(name: str, seed: int, part: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One generated sequence: 6 grey uint8 images and the 5 homographies H_1_k (float64).

    Image 1 is the middle of a scikit-image photo; image k of a ``v_`` sequence is the photo seen through
    H_1_k (so it shows real content where image 1 ends); of an ``i_`` sequence, image 1 under an
    illumination change (gain, gamma, gradient) with H_1_k the identity. Every image k >= 2 gets sensor noise.
    """
    import cv2

    from descbench.data.mini import _illumination_change, _to_uint8, load_photo

    rng = np.random.default_rng([seed, part])
    w, h = MINI_SIZE
    mx, my = round(MINI_MARGIN * w), round(MINI_MARGIN * h)
    photo = cv2.resize(load_photo(MINI_SCENES[name]), (w + 2 * mx, h + 2 * my), interpolation=cv2.INTER_AREA)
    photo_to_1 = np.array([[1.0, 0, -mx], [0, 1, -my], [0, 0, 1]])
    images = [np.ascontiguousarray(photo[my:my + h, mx:mx + w])]
    homographies = []
    for k in range(2, N_IMAGES + 1):
        if category(name) == "v":
            H = _homography(MINI_SIZE, k, rng)
            image = cv2.warpPerspective(photo, H @ photo_to_1, (w, h), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_REFLECT101).astype(np.float32)
        else:
            H = np.eye(3)
            image = _illumination_change(images[0], rng)
        image += rng.normal(0.0, rng.uniform(1.0, 3.0), image.shape).astype(np.float32)
        images.append(_to_uint8(image))
        homographies.append(H)
    return images, homographies


def write_sequence_raw(seq_dir: Path, images: list[np.ndarray], homographies: list[np.ndarray]) -> None:
    """The original layout: colour PPMs (grey replicated, as the real ones are colour) and text H_1_k."""
    import cv2

    for file_name, image in zip(IMAGE_NAMES, images):
        if not cv2.imwrite(str(seq_dir / file_name), cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)):
            raise DescbenchError(f"could not write {seq_dir / file_name}")
    for file_name, H in zip(HOMOGRAPHY_NAMES, homographies):
        np.savetxt(seq_dir / file_name, H, fmt="%.12g")


def make_mini_sequences(folder: Path, seed: int, first_part: int) -> dict[str, dict]:
    """Write every ``MINI_SCENES`` sequence into ``folder`` (the release folder being staged); sequence i
    draws from ``default_rng([seed, first_part + i])``. Returns what make-mini records."""
    record = {}
    for i, name in enumerate(MINI_SCENES):
        images, homographies = make_mini_sequence(name, seed, first_part + i)
        (folder / name).mkdir()
        write_sequence_raw(folder / name, images, homographies)
        record[name] = {"photo": MINI_SCENES[name], "size": list(MINI_SIZE)}
    return record
