"""Where the benchmark data comes from: URLs, ordered mirrors, published checksums, expected contents.

Every fact here is cited in docs/protocols.md §0, §1.1, §3.1, §4 and §5.1. Each mirror carries its own
checksum because the CTU mirror of UBC PhotoTour was re-packed (its zips differ from the historical ones).
A mirror without a checksum (the Hugging Face HPatches zip) is accepted on download, its SHA-256 is
recorded next to the archive and printed, and ``--expect-sha256`` pins it. The download functions take
these objects as arguments, so tests point them at a local server; the CLI uses ``CATALOGUE``.
"""

from __future__ import annotations

import posixpath
import urllib.parse
from dataclasses import dataclass
from typing import Mapping

CHECKSUM_ALGORITHMS = ("md5", "sha1", "sha256", "git-blob")

TEST_PAIRS_FILE = "m50_100000_100000_0.txt"  # the standard UBC test pairs: 50,000 matches + 50,000 non-matches

SEQUENCE_PREFIXES = ("i_", "v_")  # HPatches sequence folders: i_ illumination, v_ viewpoint changes

HPATCHES_IMAGE_FILES = tuple(
    f"{kind}.png" for kind in ("ref", *(f"{level}{k}" for level in "eht" for k in range(1, 6)))
)


@dataclass(frozen=True)
class Checksum:
    """A published digest of a file and where it was published (shown in every error message)."""

    algorithm: str  # one of CHECKSUM_ALGORITHMS; "git-blob" = sha1 of b"blob <len>\0" + content
    value: str
    source: str

    def __post_init__(self) -> None:
        if self.algorithm not in CHECKSUM_ALGORITHMS:
            raise ValueError(f"unknown checksum algorithm {self.algorithm!r}; use one of {CHECKSUM_ALGORITHMS}")
        object.__setattr__(self, "value", self.value.lower())

    def describe(self) -> str:
        return f"{self.algorithm} {self.value} ({self.source})"


@dataclass(frozen=True)
class Mirror:
    """One URL for a file; ``filename`` is the local name (default: the last path component of the URL)."""

    url: str
    checksum: Checksum | None = None
    filename: str = ""

    def __post_init__(self) -> None:
        if not self.filename:
            name = posixpath.basename(urllib.parse.urlsplit(self.url).path)
            object.__setattr__(self, "filename", name)


@dataclass(frozen=True)
class RemoteFile:
    """A file the benchmark needs, with its mirrors in the order they are tried."""

    name: str
    mirrors: tuple[Mirror, ...]

    @property
    def filenames(self) -> tuple[str, ...]:
        """Local names this file may have (mirrors may serve different formats, e.g. .zip and .tar.gz)."""
        return tuple(dict.fromkeys(m.filename for m in self.mirrors))


@dataclass(frozen=True)
class UBCSetSource:
    """A UBC PhotoTour subset: its archive and the content the extracted folder must have."""

    name: str
    archive: RemoteFile
    n_patches: int  # lines of info.txt; tiles hold 256 patches each
    n_test_pairs: int = 100_000  # lines of TEST_PAIRS_FILE
    patches_per_tile: int = 256


@dataclass(frozen=True)
class HPatchesSource:
    """The HPatches patch release: its archive and the expected sequence folders."""

    archive: RemoteFile
    n_sequences: int = 116
    image_files: tuple[str, ...] = HPATCHES_IMAGE_FILES


@dataclass(frozen=True)
class HPatchesSequencesSource:
    """The HPatches full-image sequences: the archive and what each sequence folder must hold."""

    archive: RemoteFile
    n_sequences: int = 116
    n_illumination: int = 57
    n_images: int = 6  # 1.ppm .. 6.ppm, and H_1_2 .. H_1_6 mapping image 1 to image k


@dataclass(frozen=True)
class TaskFilesSource:
    """The official HPatches task files, each verified by its git blob id."""

    files: tuple[RemoteFile, ...]


@dataclass(frozen=True)
class Catalogue:
    ubc: Mapping[str, UBCSetSource]
    hpatches: HPatchesSource
    hpatches_tasks: TaskFilesSource
    hpatches_sequences: HPatchesSequencesSource | None = None


CTU_UBC = "https://cmp.felk.cvut.cz/~mishkdmy/datasets/BrownPhotoTour/"
_BPR = "brown_phototour_revisited 0.3.0 dataset.py (by the CTU mirror's owner)"
_VISION_PR = "pytorch/vision PR #9002 (by the CTU mirror's owner)"
_TORCHVISION = "torchvision phototour.py"
_MVSC = "historical UBC loader (docs/protocols.md §4)"

# Historical hosts are dead or (matthewalunbrown.com) no longer the author's: they are only tried after
# the CTU mirror, and only with the checksums published for their original files.
UBC_SETS: dict[str, UBCSetSource] = {
    "liberty": UBCSetSource("liberty", RemoteFile("liberty", (
        Mirror(CTU_UBC + "liberty.zip", Checksum("md5", "abb7b7e7c8f58b953f9d10dce2cb5e9c", _BPR)),
        Mirror("http://icvl.ee.ic.ac.uk/vbalnt/liberty.zip",
               Checksum("md5", "fdd9152f138ea5ef2091746689176414", _TORCHVISION)),
        Mirror("http://www.cs.ubc.ca/~mbrown/patchdata/liberty.zip",
               Checksum("sha1", "18bffdb818146f5cba7fc6123d76f37d92c7ac20", _MVSC)),
    )), n_patches=450_092),
    "notredame": UBCSetSource("notredame", RemoteFile("notredame", (
        Mirror(CTU_UBC + "notredame.zip", Checksum("md5", "a0d36b46324d5807c559145e1f940359", _VISION_PR)),
        Mirror(CTU_UBC + "notredame/notredame.zip",
               Checksum("md5", "3fd38e77cd32a43051525532c83460ef", _BPR)),
        Mirror("http://icvl.ee.ic.ac.uk/vbalnt/notredame.zip",
               Checksum("md5", "509eda8535847b8c0a90bbb210c83484", _TORCHVISION)),
        Mirror("http://www.cs.ubc.ca/~mbrown/patchdata/notredame.zip",
               Checksum("sha1", "1db5f3e7de6a03896210fa1cabb704b00a6fb07a", _MVSC)),
    )), n_patches=468_159),
    "yosemite": UBCSetSource("yosemite", RemoteFile("yosemite", (
        Mirror(CTU_UBC + "yosemite.zip", Checksum("md5", "97f1ecc08928cdf2dba220939778779e", _BPR)),
        Mirror("http://icvl.ee.ic.ac.uk/vbalnt/yosemite.zip",
               Checksum("md5", "533b2e8eb7ede31be40abc317b2fd4f0", _TORCHVISION)),
        Mirror("http://www.cs.ubc.ca/~mbrown/patchdata/yosemite.zip",
               Checksum("sha1", "efeff1c654652e9b6e69b230a9286025dd2f57f8", _MVSC)),
    )), n_patches=633_587),
}

HPATCHES = HPatchesSource(
    archive=RemoteFile("hpatches-release", (
        # No checksum is published for the zip: its SHA-256 is recorded on first download.
        Mirror("https://huggingface.co/datasets/vbalnt/hpatches/resolve/main/hpatches-release.zip"),
        Mirror("http://icvl.ee.ic.ac.uk/vbalnt/hpatches/hpatches-release.tar.gz",
               Checksum("md5", "0ab830d37fceb2b4c86cb1cc6cc79a61", "vbalnt/tfeat hpatches.py")),
    )),
    n_sequences=116,
)

HPATCHES_SEQUENCES = HPatchesSequencesSource(
    archive=RemoteFile("hpatches-sequences-release", (
        # No checksum is published for either file: the SHA-256 is recorded on first download.
        Mirror("https://huggingface.co/datasets/vbalnt/hpatches/resolve/main/hpatches-sequences-release.zip"),
        Mirror("http://icvl.ee.ic.ac.uk/vbalnt/hpatches/hpatches-sequences-release.tar.gz"),
    )),
)

HPATCHES_BENCHMARK_COMMIT = "e0c993c7756d26129fef47f752f79e4cfe6681aa"

# git blob ids of tasks/<file> at HPATCHES_BENCHMARK_COMMIT (docs/protocols.md §0); splits.json is under tasks/splits/.
HPATCHES_TASK_BLOB_IDS: dict[str, str] = {
    "retr_distractors_split-a.csv": "40f2ec9c67b3d6f399e713402bf839b2a776c0a1",
    "retr_distractors_split-b.csv": "ed6ad6f6c254c73054338bbf5a4939644c00bd81",
    "retr_distractors_split-c.csv": "d086630881b1000506ca78a46f80d98d40d46dc8",
    "retr_distractors_split-full.csv": "905a803f7dfdbf545be669af73dcebe346941634",
    "retr_distractors_split-illum.csv": "da0c29a0c4da23f7e13730f925e6070830c0f09b",
    "retr_distractors_split-view.csv": "28fe3f0bc3659607a39f9307bb1f9c4b8bc8e7c6",
    "retr_queries_split-a.csv": "02c1941eeb64229e0a9c6fd1eee13d9ab6dcee32",
    "retr_queries_split-b.csv": "775f732d2f99e5e54828c115dc2b365ed8e5fa3c",
    "retr_queries_split-c.csv": "d7d84f0b48b7de75b1ad0203149b554c4db848ec",
    "retr_queries_split-full.csv": "c6611e510e4c8a56d75acbb4289fc12316f48a50",
    "retr_queries_split-illum.csv": "4c10749b345d11a7522d007b4877fe383485e087",
    "retr_queries_split-view.csv": "1c9176ddb060d9f46601c1dc5b22b098ced9dcba",
    "splits.json": "6690984369b884e020deafe237a6b992f9111015",
    "verif_neg_inter_split-a.csv": "eeb6f9e5667c80fe3bf70fd1c1ad420c59464272",
    "verif_neg_inter_split-b.csv": "3fe33fbb285d20ed7f1a8fe9b04539581ebe9546",
    "verif_neg_inter_split-c.csv": "64dfc23f5667ed04a6a3de4d43d07603fff11cb5",
    "verif_neg_inter_split-full.csv": "0174187de6d9fc83e574cb83ea15e6c222c11311",
    "verif_neg_inter_split-illum.csv": "343931e59bb493b18bd15ad229a7042cff12089e",
    "verif_neg_inter_split-view.csv": "e8631fb3b469dbd170e8e522aacdeb8e0d2db4ab",
    "verif_neg_intra_split-a.csv": "2e9b16b96c7c3442b9aad1fddbe5a5ef36c5eb9e",
    "verif_neg_intra_split-b.csv": "cbad706f99f2f3d677445b8a798c1fed281c1484",
    "verif_neg_intra_split-c.csv": "dc9610013502887d8d4528e0d335494e78820d72",
    "verif_neg_intra_split-full.csv": "fa411d6b7b65de01ba9e6aca0cc138d62785e4b5",
    "verif_neg_intra_split-illum.csv": "31fa250008759fd99aae1949b184b7cd2d4ed61e",
    "verif_neg_intra_split-view.csv": "aaa1574f767cb3dfd09e865488ea0f07cfa6a031",
    "verif_pos_split-a.csv": "cdea234c2f368e8d499974b2d57c90786edf03ea",
    "verif_pos_split-b.csv": "74da405294ed952673995b0eddb8699139d18db8",
    "verif_pos_split-c.csv": "ed99830075a1cbb003fdf3fcb613125348e7b608",
    "verif_pos_split-full.csv": "8d2e3c91f0a715fd5eb9e9562d4f153210c4c53b",
    "verif_pos_split-illum.csv": "f4c76eca69fcbdbaa036648cd0a817a84c70061b",
    "verif_pos_split-view.csv": "3758e751ef0f1a60428c422055a527c59cb3882f",
}


def _task_file(name: str, blob_id: str) -> RemoteFile:
    path = "tasks/splits/" + name if name == "splits.json" else "tasks/" + name
    checksum = Checksum("git-blob", blob_id, f"hpatches-benchmark@{HPATCHES_BENCHMARK_COMMIT[:12]}:{path}")
    return RemoteFile(name, (
        Mirror(f"https://raw.githubusercontent.com/hpatches/hpatches-benchmark/{HPATCHES_BENCHMARK_COMMIT}/{path}",
               checksum),
        Mirror(f"https://github.com/hpatches/hpatches-benchmark/raw/{HPATCHES_BENCHMARK_COMMIT}/{path}", checksum),
    ))


HPATCHES_TASKS = TaskFilesSource(tuple(_task_file(n, b) for n, b in sorted(HPATCHES_TASK_BLOB_IDS.items())))

CATALOGUE = Catalogue(ubc=UBC_SETS, hpatches=HPATCHES, hpatches_tasks=HPATCHES_TASKS,
                      hpatches_sequences=HPATCHES_SEQUENCES)
