"""Every released patch-descriptor checkpoint descbench knows, by name ``<method>@<train set>``.

Each release lists its files with their mirrors in the order they are tried (the authors' repository
at the pinned commit first, then other repositories holding the same git blob, then the Hugging Face
copy kornia uses, where one exists), every known pin (git blob id of the file at that commit, SHA-256
where one is known), the file format and key layout, the network family it loads into
(``descbench.weights.loading.FAMILIES``), the preprocessing of the authors' extractor, whether the
output is unit-norm, the training data, the repository, commit and licence as the repository states
it, and the numbers the authors published for that exact file where they did.

A git blob id is ``sha1(b"blob <len>\\0" + content)``: it pins a raw download at the commit exactly.
SHA-256 values marked "third-party" were pinned by other projects and are only extra evidence: any one
matching pin is enough, so a wrong third-party value can never make a wrong file pass.

``REFUSED`` names published files descbench will not load, with the reason and the safe alternative.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, replace
from typing import Callable, Mapping

from descbench.data.sources import Checksum, Mirror, RemoteFile

# ------------------------------------------------------------------------------------------ repositories

HARDNET = ("DagnyT/hardnet", "35bc1d79910c4477e61ca486a4712b3b7496d43e")
AFFNET = ("ducha-aiki/affnet", "da7cf51ba09cb92e3cf0f46c12a89881f79e5051")
KEYNET = ("axelBarroso/Key.Net-Pytorch", "74fe0a75998445bb47b74b642b764543b25dc90a")
SOSNET = ("yuruntian/SOSNet", "7ae3730e76eaaac9331df10d28fc2d4a5b1f7688")
SOSNET_ORIGINAL = ("scape-research/SOSNet", "511e47557f937dd43c0b5dc9c2426a265d41d9c0")
HYNET = ("yuruntian/HyNet", "267aa6c00849eb6c776bccf37569bf39d1f1331d")
TFEAT = ("vbalnt/tfeat", "9434ffaade966efee9ee89304f59b6c224d3b039")
SDGMNET = ("ACuOoOoO/SDGMNet", "643fb91123cbf63ca6571ae65a521629f14daa36")
CDF = ("lg-zhang/dynamic-soft-margin-pytorch", "6766ff3b7c962cee33c244bddf10485a2f130d4c")
SELF_TNET = ("zonszer/Self-TNet", "6a4e53283852f17f46e336344ee9f679da6dd506")
L2NET = ("yuruntian/L2-Net", "521633c43193c1897399f289d539e0a35ab74153")
IMC_BASELINES = ("vcg-uvic/image-matching-benchmark-baselines", "01510c4d2c07cad89727013241a359bb22689a1b")
HARDNET8_TRAINING = ("pultarmi/HardNet_MultiDataset", "ed9363f3561955274fa534aeff04558f230adf2f")

HF = "https://huggingface.co/kornia/{repo}/resolve/main/{file}"
CTU_HARDNET8 = ("https://cmp.felk.cvut.cz/~mishkdmy/models/hardnet8v2.pt",  # the source of kornia's HF upload
                "https://cmp.felk.cvut.cz/~mishkdmy/hardnet8v2.pt")  # kornia 0.9.0's fallback URL

# What each repository states (its LICENSE file; "none" when it has none: all rights reserved).
LICENCES = {
    "DagnyT/hardnet": "MIT",
    "ducha-aiki/affnet": "MIT",
    "axelBarroso/Key.Net-Pytorch": "MIT",
    "yuruntian/SOSNet": "none stated (no LICENSE file)",
    "yuruntian/HyNet": "MIT",
    "vbalnt/tfeat": "MIT",
    "ACuOoOoO/SDGMNet": "none stated (no LICENSE file)",
    "lg-zhang/dynamic-soft-margin-pytorch": "none stated (no LICENSE file)",
    "zonszer/Self-TNet": "none stated (no LICENSE file)",
    "yuruntian/L2-Net": "none stated (no LICENSE file)",
    "vcg-uvic/image-matching-benchmark-baselines": "Apache-2.0",
    "pultarmi/HardNet_MultiDataset": "MIT",
}

HPATCHES_OVERLAPS = ("none", "all", "split:a", "claimed", "unstated")


# ---------------------------------------------------------------------------------------------- types

@dataclass(frozen=True)
class Published:
    """A number the authors published for this exact file (or, where ``note`` says so, probably)."""

    benchmark: str  # "hpatches" or "ubc"
    split: str  # HPatches split, or "<train>-><test>" for UBC
    scores: tuple[tuple[str, float], ...]  # (metric, value): HPatches mAP in %, UBC FPR95 in %
    source: str
    note: str = ""

    def describe(self) -> str:
        values = ", ".join(f"{metric} {value:g}" for metric, value in self.scores)
        extra = f"; {self.note}" if self.note else ""
        return f"{self.benchmark} {self.split}: {values} ({self.source}{extra})"


@dataclass(frozen=True)
class WeightFile:
    """One file of a release: where to get it, what pins it, and what it is."""

    role: str  # "weights" (the checkpoint), "mean_std" (CDF's normalisation), "pixmean" (L2-Net's .mat)
    filename: str  # the local name: the file's name in the authors' repository
    mirrors: tuple[Mirror, ...]
    checksums: tuple[Checksum, ...]  # every pin; any one matching verifies the file
    source: str  # owner/repo@commit7:path of the authors' copy (or the URL when there is no repository)
    format: str
    size: int | None = None  # bytes, where known

    def remote(self, release: str) -> RemoteFile:
        """The file as descbench.data.download fetches it."""
        return RemoteFile(f"{release}: {self.filename}", self.mirrors)


@dataclass(frozen=True)
class Release:
    """A released checkpoint: files, network, preprocessing, provenance."""

    name: str  # <method>@<train set>
    method: str
    family: str  # key of descbench.weights.loading.FAMILIES
    files: tuple[WeightFile, ...]
    train_data: str  # in words, as the sources state it
    trained_on: tuple[str, ...]  # UBC set names (liberty, notredame, yosemite) and/or "hpatches"
    hpatches_overlap: str  # one of HPATCHES_OVERLAPS
    repo: str  # owner/name of the authors' repository ("" when the file lives outside git)
    commit: str
    licence: str
    citation: str
    layout: str  # nesting and key layout of the checkpoint
    preprocessing: str  # the authors' extractor, and what descbench does
    unit_norm: bool
    dim: int
    patch_size: int = 32
    published: tuple[Published, ...] = ()
    notes: str = ""

    def __post_init__(self) -> None:
        if self.hpatches_overlap not in HPATCHES_OVERLAPS:
            raise ValueError(f"{self.name}: hpatches_overlap must be one of {HPATCHES_OVERLAPS}")
        if not any(f.role == "weights" for f in self.files):
            raise ValueError(f"{self.name}: a release needs a 'weights' file")

    def file(self, role: str) -> WeightFile:
        for f in self.files:
            if f.role == role:
                return f
        raise KeyError(f"{self.name} has no {role!r} file")

    @property
    def pin(self) -> str:
        """The repository and commit in short, for listings."""
        return f"{self.repo}@{self.commit[:7]}" if self.repo else "no git repository (sha256 pin only)"

    @property
    def trained_on_hpatches(self) -> bool:
        return self.hpatches_overlap in ("all", "split:a", "claimed")

    def summary(self) -> str:
        """One line for ``descbench list``: released weights, source, commit, licence, training data."""
        return f"released weights ({self.pin}, licence: {self.licence}; training data: {self.train_data})"

    def with_mirrors(self, mirrors: Callable[[WeightFile], tuple[Mirror, ...]],
                     checksums: Callable[[WeightFile], tuple[Checksum, ...]] | None = None) -> "Release":
        """A copy whose files come from other mirrors (tests point them at a local server)."""
        files = tuple(replace(f, mirrors=tuple(mirrors(f)),
                              checksums=tuple(checksums(f)) if checksums else f.checksums)
                      for f in self.files)
        return replace(self, files=files)


@dataclass(frozen=True)
class RefusedRelease:
    """A published file descbench does not load, and why."""

    name: str
    what: str
    reason: str
    alternative: str

    def message(self) -> str:
        return f"{self.name} ({self.what}) is refused: {self.reason}. Instead: {self.alternative}"


# ------------------------------------------------------------------------------------------- builders

def _blob(blob_id: str, repo: tuple[str, str], path: str) -> Checksum:
    return Checksum("git-blob", blob_id, f"{repo[0]}@{repo[1][:7]}:{path}")


def _github(repo: tuple[str, str], path: str, checksum: Checksum, filename: str) -> tuple[Mirror, ...]:
    """The raw file at the pinned commit, from both GitHub hosts."""
    quoted = urllib.parse.quote(path, safe="/")
    return (
        Mirror(f"https://raw.githubusercontent.com/{repo[0]}/{repo[1]}/{quoted}", checksum, filename),
        Mirror(f"https://github.com/{repo[0]}/raw/{repo[1]}/{quoted}", checksum, filename),
    )


def _hf(repo: str, file: str, checksum: Checksum, filename: str) -> Mirror:
    return Mirror(HF.format(repo=repo, file=urllib.parse.quote(file)), checksum, filename)


def _weight_file(role: str, repo: tuple[str, str], path: str, blob_id: str, fmt: str, *,
                 sha256: tuple[str, str] | None = None, also: tuple[tuple[tuple[str, str], str], ...] = (),
                 hf: tuple[str, str] | None = None, size: int | None = None,
                 filename: str | None = None) -> WeightFile:
    """A file of ``repo`` at its commit: mirrors are the authors' copy, then ``also`` (other repositories
    holding the same blob: (repo, path)), then the Hugging Face copy ``hf`` = (kornia repo, file).
    ``sha256`` = (value, where it was published)."""
    filename = filename or path.rsplit("/", 1)[-1]
    blob = _blob(blob_id, repo, path)
    checksums = [blob]
    if sha256:
        checksums.append(Checksum("sha256", sha256[0], sha256[1]))
    mirrors = list(_github(repo, path, blob, filename))
    for other, other_path in also:
        mirrors += _github(other, other_path, _blob(blob_id, other, other_path), filename)
    if hf:
        # kornia's upload script copies the source bytes unchanged: the same blob id pins the copy.
        mirrors.append(_hf(hf[0], hf[1], Checksum("git-blob", blob_id, f"{blob.source} (byte copy on "
                                                  f"huggingface.co/kornia/{hf[0]})"), filename))
    return WeightFile(role, filename, tuple(mirrors), tuple(checksums), f"{repo[0]}@{repo[1][:7]}:{path}",
                      fmt, size)


# ------------------------------------------------------------------------------------------ citations

CITE_HARDNET = ("A. Mishchuk, D. Mishkin, F. Radenovic, J. Matas. Working hard to know your neighbor's "
                "margins: Local descriptor learning loss. NeurIPS 2017")
CITE_HARDNET8 = "M. Pultar. Improving the HardNet Descriptor. Master's thesis, CTU Prague, 2020"
CITE_SOSNET = ("Y. Tian, X. Yu, B. Fan, F. Wu, H. Heijnen, V. Balntas. SOSNet: Second Order Similarity "
               "Regularization for Local Descriptor Learning. CVPR 2019")
CITE_HYNET = ("Y. Tian, A. Barroso-Laguna, T. Ng, V. Balntas, K. Mikolajczyk. HyNet: Learning Local "
              "Descriptor with Hybrid Similarity Measure and Triplet Loss. NeurIPS 2020")
CITE_TFEAT = ("V. Balntas, E. Riba, D. Ponsa, K. Mikolajczyk. Learning local feature descriptors with "
              "triplets and shallow convolutional neural networks. BMVC 2016")
CITE_SDGMNET = ("J. Ma, Y. Deng. SDGMNet: Statistic-based Dynamic Gradient Modulation for Local "
                "Descriptor Learning. arXiv 2106.04434, 2021")
CITE_CDF = ("L. Zhang, S. Rusinkiewicz. Learning Local Descriptors with a CDF-Based Dynamic Soft Margin. "
            "ICCV 2019")
CITE_SELF_TNET = ("J. Zhang, D. Tian, T. Wu, Y. Cao, Y. Du, Y. Wei. Self-supervised Example Difficulty "
                  "Balancing for Local Descriptor Learning. ACML, PMLR 222:1654-1669")
CITE_L2NET = ("Y. Tian, B. Fan, F. Wu. L2-Net: Deep Learning of Discriminative Patch Descriptor in "
              "Euclidean Space. CVPR 2017")

SET_NAMES = {"liberty": "Liberty", "notredame": "Notre Dame", "yosemite": "Yosemite"}
UBC_SETS = tuple(SET_NAMES)

HARDNET_FIGURE = "DagnyT/hardnet README figure img/hardnet-datasets.png"
HARDNET_FIGURE_2 = "DagnyT/hardnet README figure img/hardnet_hpatches.png"


def _hpatches(split: str, source: str, note: str = "", **scores: float) -> Published:
    return Published("hpatches", split, tuple(scores.items()), source, note)


# ------------------------------------------------------------------------------------------- HardNet

_HARDNET_LAYOUT = ("dict {'epoch', 'state_dict'}; state_dict: 28 keys of the L2-Net with BatchNorm "
                   "(features.{0,3,6,9,12,15,19}.weight convolutions without bias, BatchNorm running "
                   "statistics at features.{1,4,7,10,13,16,20}); num_batches_tracked may be missing")
_HARDNET_PRE = ("authors' extractor: cv2.resize to 32x32 (bilinear), /255, minus 0.443728476019, divided by "
                "0.20197947209 (Liberty), then the per-patch standardisation inside the net (unbiased std "
                "+ 1e-7); descbench applies the same fixed mean/std to its [0, 1] patches")
_HARDNET_FORMAT = "torch checkpoint (pickle of a dict of tensors), about 5.35 MB"


def _hardnet(name: str, path: str, blob_id: str, train_data: str, trained_on: tuple[str, ...], *,
             overlap: str = "none", sha256: tuple[str, str] | None = None, hf: str | None = None,
             also: tuple[tuple[tuple[str, str], str], ...] = (), published: tuple[Published, ...] = (),
             notes: str = "", filename: str | None = None) -> Release:
    method = name.split("@")[0]
    return Release(
        name=name, method=method, family="hardnet",
        files=(_weight_file("weights", HARDNET, path, blob_id, _HARDNET_FORMAT, sha256=sha256, also=also,
                            hf=("hardnet", hf) if hf else None, filename=filename),),
        train_data=train_data, trained_on=trained_on, hpatches_overlap=overlap, repo=HARDNET[0],
        commit=HARDNET[1], licence=LICENCES[HARDNET[0]], citation=CITE_HARDNET, layout=_HARDNET_LAYOUT,
        preprocessing=_HARDNET_PRE, unit_norm=True, dim=128, published=published, notes=notes)


HARDNET_RELEASES = (
    _hardnet("hardnet@liberty", "pretrained/train_liberty/checkpoint_liberty_no_aug.pth",
             "8694b2a670aec840800966e42cd8c79e3be66e9a", "UBC Liberty, no augmentation (--fliprot=False)",
             ("liberty",),
             published=(_hpatches("(not stated; full per DagnyT/hardnet issue #36)", HARDNET_FIGURE_2 + ", bar "
                                  "'HardNet'", "attributed to this file by inference", matching=52.18,
                                  retrieval=69.44),),
             notes="the weights of 2018-01-11 (b606d53, lr 10, dropout 0.3); the NIPS 2017 file is at 9349e2a"),
    _hardnet("hardnet-plus@liberty", "pretrained/train_liberty_with_aug/checkpoint_liberty_with_aug.pth",
             "c1b2a5f4e79a5f3e50ec9a1ac98a428965cef37b",
             "UBC Liberty with flip and 90-degree rotation augmentation (--fliprot=True): HardNet+", ("liberty",),
             sha256=("1e9a41b19f1dc93c986e91df9aaf5696d1a777ac1d67498492856a65d6f49c16",
                     "third-party: HF page of a copy (Dexter/compvis) and two projects' pins"),
             hf="checkpoint_liberty_with_aug.pth",
             published=(_hpatches("full", HARDNET_FIGURE + ", bar 'Liberty' (HardNet+)",
                                  "split full per DagnyT/hardnet issue #36 (python benchmark)",
                                  verification=88.43, matching=52.76, retrieval=69.66),),
             notes="the weights of 2018-01-11 (b606d53); kornia's HardNet(pretrained=True)"),
    _hardnet("hardnet-plus@notredame", "pretrained/train_notredame_with_aug/checkpoint_notredame_with_aug.pth",
             "e3d10581066a9408db8c9a6b545e08318bdead2c", "UBC Notre Dame with flip + rot90 augmentation",
             ("notredame",), notes="added 2020-09-15 (644b36e)"),
    _hardnet("hardnet-plus@yosemite", "pretrained/train_yosemite_with_aug/checkpoint_yosemite_with_aug.pth",
             "ec9124d045fa7c05cefa76a7ae48a016754aae85", "UBC Yosemite with flip + rot90 augmentation",
             ("yosemite",), notes="added 2020-09-15 (644b36e)"),
    _hardnet("hardnet++", "pretrained/pretrained_all_datasets/HardNet++.pth",
             "84aa9c230b7cd6d0a8a7d13b65b39cfb0f406eec",
             "UBC Liberty + Notre Dame + Yosemite and HPatches (renamed from checkpoint_BrownHPatches.pth)",
             ("liberty", "notredame", "yosemite", "hpatches"), overlap="all",
             sha256=("9fe80a335fe72d1225fdd1ae0943418b12489f95014bd51dddc9819d6ffa33c7",
                     "HF page kornia/hardnet HardNetPP.pth (and a third-party pin)"),
             also=((AFFNET, "HardNet++.pth"), (KEYNET, "model/HyNet/weights/HardNet++.pth")),
             hf="HardNetPP.pth",
             notes="trained on HPatches: HPatches scores are not comparable; never updated after 2017-11-07"),
    _hardnet("hardnet@brown6", "pretrained/6Brown/hardnetBr6.pth", "26df901859b3bbfc0cafaca504f09e771ac7b427",
             "all six Brown subsets (code/train_hardnet_on_6Brown.sh)", ("liberty", "notredame", "yosemite"),
             published=(_hpatches("(not stated)", HARDNET_FIGURE + ", bar 'FullBrown6'", verification=89.29,
                                  matching=54.64, retrieval=72.66),),
             notes="trained on every UBC scene: UBC FPR95 of this file is not a test result"),
)

# ------------------------------------------------------------------------------------------ HardNet8

HARDNET8_RELEASE = Release(
    name="hardnet8v2", method="hardnet8", family="hardnet8",
    files=(WeightFile(
        "weights", "hardnet8v2.pt",
        (Mirror(HF.format(repo="hardnet", file="hardnet8v2.pt"),
                Checksum("sha256", "5982f6d2c647545f13e74e8b011110fea2408130015a1496713253d9c00a941b",
                         "third-party: liutao23/LightStab@6504549 WEIGHTS_SETUP.md"), "hardnet8v2.pt"),
         *(Mirror(url, Checksum("sha256", "5982f6d2c647545f13e74e8b011110fea2408130015a1496713253d9c00a941b",
                                "third-party: liutao23/LightStab@6504549 WEIGHTS_SETUP.md"), "hardnet8v2.pt")
           for url in CTU_HARDNET8)),
        (Checksum("sha256", "5982f6d2c647545f13e74e8b011110fea2408130015a1496713253d9c00a941b",
                  "third-party: liutao23/LightStab@6504549 WEIGHTS_SETUP.md"),),
        "huggingface.co/kornia/hardnet hardnet8v2.pt", "torch state_dict (bare), about 34.5 MiB"),),
    train_data=("not verified: the kornia/hardnet model card says HPatches; pultarmi/HardNet_MultiDataset "
                "trained HardNet8-PTv2 on Liberty + Colosseum + Notre Dame with the PCA fitted on Liberty"),
    trained_on=("liberty", "notredame", "hpatches"), hpatches_overlap="claimed",
    repo="", commit="", licence="MIT (kornia/hardnet model card; training code pultarmi/HardNet_MultiDataset: MIT)",
    citation=CITE_HARDNET8,
    layout=("bare state_dict, 34 keys: features.{0,3,...,18,22}.weight (seven 3x3 convolutions "
            "32-32-64-64-128-128-256 and an 8x8 one to 512, no bias), BatchNorm running statistics at "
            "features.{1,4,...,19,23}, components (512, 128) and mean (512,): the PCA as tensors"),
    preprocessing=("kornia HardNet8.forward: per-patch standardisation (std + 1e-7), 512-D features, L2, minus "
                   "mean, times components, L2; cv2-resized [0, 1] patches (the range does not matter)"),
    unit_norm=True, dim=128,
    notes="no git repository holds it: the pin is a third-party SHA-256 (override with --expect-sha256); "
          "no published numbers for this file")

# -------------------------------------------------------------------------------------------- SOSNet

_SOSNET_LAYOUT = ("bare state_dict, 28 keys: layers.{1,4,7,10,13,16,20}.weight convolutions without bias, "
                  "BatchNorm running statistics at layers.{2,5,8,11,14,17,21} (layers.0 is a parameter-free "
                  "InstanceNorm)")
_SOSNET_PRE = ("InstanceNorm on the input (range irrelevant up to eps); the authors' trainer and demo feed "
               "cv2-resized 0-255 patches, so descbench scales its [0, 1] patches by 255; output LRN = L2")


def _sosnet(train: str, blob_id: str, *, hf: bool = False, sha256: tuple[str, str] | None = None) -> Release:
    path = f"sosnet-weights/sosnet_32x32_{train}.pth"
    hpatches = train.startswith("hpatches")
    return Release(
        name=f"sosnet@{train}", method="sosnet", family="sosnet",
        files=(_weight_file("weights", SOSNET, path, blob_id, "torch state_dict (bare), about 5.35 MB",
                            sha256=sha256, also=((SOSNET_ORIGINAL, f"sosnet-weights/sosnet-32x32-{train}.pth"),),
                            hf=("sosnet", f"sosnet_32x32_{train}.pth") if hf else None),),
        train_data=("HPatches split 'a', its train sequences" if hpatches else f"UBC {SET_NAMES[train]}"),
        trained_on=("hpatches",) if hpatches else (train,), hpatches_overlap="split:a" if hpatches else "none",
        repo=SOSNET[0], commit=SOSNET[1], licence=LICENCES[SOSNET[0]], citation=CITE_SOSNET,
        layout=_SOSNET_LAYOUT, preprocessing=_SOSNET_PRE, unit_norm=True, dim=128,
        notes=("evaluate only on split 'a' (its test sequences); other splits overlap its training data"
               if hpatches else "no published numbers in either SOSNet repository"))


SOSNET_RELEASES = (
    _sosnet("liberty", "e1654f36def583bb942cccbe149b0162d57d3d2a", hf=True,
            sha256=("baa575c55a5d1b7b140206ece4af56b735395409f2bb3c924069faf6a7ededa0",
                    "third-party experiment spec (from the GitHub raw URL)")),
    _sosnet("notredame", "386016b63ca2f18a77370b9a5254b0784428323c"),
    _sosnet("yosemite", "3b16e9f3afba50bb8138586bf829255f58fb0465"),
    _sosnet("hpatches_a", "9154f47b3ead6f6eadd21bec48bd9b61e256e704", hf=True),
)

# --------------------------------------------------------------------------------------------- HyNet

_HYNET_LAYOUT = ("bare state_dict, 44 keys in layer1..layer7: FRN weight/bias/eps (eps a (1,) buffer), TLU "
                 "tau, convolutions with bias (layer1.2, layer2.0 ... layer6.0), layer7.1.weight (128, 128, 8, "
                 "8) and layer7.2 BatchNorm running statistics; mapped onto L2NetFRN's features.*")
_HYNET_PRE = ("FRN on the raw patch (scale-invariant, not offset-invariant): the authors train on and Key.Net "
              "feeds cv2-resized 0-255 patches, so descbench scales its [0, 1] patches by 255; output L2")


def _hynet(train: str, short: str, blob_id: str, sha256: tuple[str, str] | None = None) -> Release:
    path = f"weights/HyNet_{short}.pth"
    return Release(
        name=f"hynet@{train}", method="hynet", family="hynet",
        files=(_weight_file("weights", HYNET, path, blob_id, "torch state_dict (bare), about 5.35 MB",
                            sha256=sha256, also=((KEYNET, f"model/HyNet/weights/HyNet_{short}.pth"),),
                            hf=("hynet", f"HyNet_{short}.pth")),),
        train_data=f"UBC {SET_NAMES[train]}", trained_on=(train,), hpatches_overlap="none",
        repo=HYNET[0], commit=HYNET[1], licence=LICENCES[HYNET[0]], citation=CITE_HYNET,
        layout=_HYNET_LAYOUT, preprocessing=_HYNET_PRE, unit_norm=True, dim=128,
        notes="the training code keeps the checkpoint with the best mean FPR95 on the two test scenes")


HYNET_RELEASES = (
    _hynet("liberty", "LIB", "30e43b29b92162617e7b34f0c7cc6c454798943d",
           ("d92559e90b8b228e7ed121935f64d2629a015c2bf9d7d7ee14b43798c5a2af13", "HF page kornia/hynet HyNet_LIB.pth")),
    _hynet("notredame", "ND", "0592b59d1c560c0fb0c4f702950478dd91fc2408"),
    _hynet("yosemite", "YOS", "060fb65541317560504c816e353fe6ea249c80bc",
           ("0050f41cba5513e212a8da83e3fa7383be3d1006f2e9d8a30513d176be20ff6b", "HF page kornia/hynet HyNet_YOS.pth")),
)

# --------------------------------------------------------------------------------------------- TFeat

_TFEAT = {
    "liberty": ("0f28ae87db5e2fc95ae691faf3aa9c2c631060b2",
                "1f2e9516b03c45876161da006ce8047e0a66ef08cc91d3fbf96a75f1a80f445a"),
    "notredame": ("47f6f3ec28047f9dbab748d1df9c25d09e49c2fc",
                  "71b9fe3e2a5ec4b90eb5c92c9eb0565504fba8bd2b6a7fa3b7e79d9df6e146a6"),
    "yosemite": ("4554f4d9208414a4c2c035eb9ff9002fd54ecf85",
                 "548d65103b9e4d7c1f9242d613df96df14a456a2b44565f2c7faed7cbd928e8d"),
}

TFEAT_RELEASES = tuple(
    Release(
        name=f"tfeat@{train}", method="tfeat", family="tfeat",
        files=(_weight_file("weights", TFEAT, f"pretrained-models/tfeat-{train}.params", blob_id,
                            "legacy (pre-1.6, non-zip) torch serialisation of an OrderedDict state_dict",
                            sha256=(sha256, f"{TFEAT[0]}@{TFEAT[1][:7]} file bytes"),
                            hf=("tfeat", f"tfeat-{train}.params"), size=2_400_533),),
        train_data=f"UBC {SET_NAMES[train]} (rot90 + flipud augmentation)", trained_on=(train,),
        hpatches_overlap="none", repo=TFEAT[0], commit=TFEAT[1], licence=LICENCES[TFEAT[0]],
        citation=CITE_TFEAT,
        layout=("bare OrderedDict, 6 keys: features.1 (32, 1, 7, 7) and features.4 (64, 32, 6, 6) convolutions "
                "with bias, descr.0 Linear (128, 4096) with bias"),
        preprocessing=("InstanceNorm on the input; the authors' HPatches loader feeds cv2-resized 0-255 patches, "
                       "so descbench scales its [0, 1] patches by 255 (the outputs differ by <= 5e-4 either way)"),
        unit_norm=False, dim=128,
        notes="output is tanh, not unit-norm (row norms around 8-10); compare with L2 distances")
    for train, (blob_id, sha256) in _TFEAT.items())

HARDTFEAT_RELEASE = Release(
    name="hardtfeat", method="hardtfeat", family="hardtfeat",
    files=(_weight_file("weights", AFFNET, "HardTFeat.pth", "57acd11280b9ad937f5d9a85bf9159161e8e94d7",
                        "legacy (pre-1.6, non-zip) torch serialisation of {'epoch': 2, 'state_dict': ...}",
                        sha256=("cd935728293309b666c20525696c8d323be5ffdac07b3340f4c1c1314e0b6542",
                                f"{AFFNET[0]}@{AFFNET[1][:7]} file bytes"), size=2_401_008),),
    train_data="not documented (TFeat layers trained with the HardNet loss)", trained_on=(),
    hpatches_overlap="unstated", repo=AFFNET[0], commit=AFFNET[1], licence=LICENCES[AFFNET[0]],
    citation=CITE_HARDNET + " [HardTFeat: TFeat's layers with the HardNet loss]",
    layout=("dict {'epoch', 'state_dict'}: features.0 (32, 1, 7, 7) and features.3 (64, 32, 6, 6) convolutions "
            "with bias, classifier.1 convolution (128, 64, 8, 8) with bias, plus the unused SIFT.gx.0, SIFT.gy.0, "
            "SIFT.pk.0 weights of an embedded SIFT module (dropped)"),
    preprocessing="per-patch standardisation (std + 1e-7), no InstanceNorm; range irrelevant; output L2",
    unit_norm=True, dim=128,
    published=(_hpatches("(not stated)", HARDNET_FIGURE_2 + ", bar 'HardTFeat'", "the figure may not be this "
                         "exact file", matching=38.07, retrieval=55.12),),
    notes="added to affnet 2018-07-15 (789419a)")

# ------------------------------------------------------------------------------------------- SDGMNet

_SDGMNET_LAYOUT = ("dict {'epoch', 'model_state_dict', 'FPR', 'opt'} (optimizer state included, ignored); "
                   "model_state_dict holds every tensor twice, under layerN.* and features.(N-1).* (the same "
                   "HyNet layout as HyNet's release, FRN eps buffers included)")
_SDGMNET_PRE = ("the authors' test transform: PIL Resize(32) + ToTensor, i.e. [0, 1], no mean/std (FRN first); "
                "descbench feeds cv2-resized [0, 1] patches; output L2")


def _sdgmnet(name: str, path: str, blob_id: str, train: str, *, train_data: str = "",
             published: tuple[Published, ...] = (), notes: str = "", overlap: str = "none") -> Release:
    return Release(
        name=name, method=name.split("@")[0], family="sdgmnet",
        files=(_weight_file("weights", SDGMNET, path, blob_id, "torch checkpoint (dict), size unknown (>= 4 MiB)"),),
        train_data=train_data or f"UBC {SET_NAMES[train]}", trained_on=(train,), hpatches_overlap=overlap,
        repo=SDGMNET[0], commit=SDGMNET[1], licence=LICENCES[SDGMNET[0]], citation=CITE_SDGMNET,
        layout=_SDGMNET_LAYOUT, preprocessing=_SDGMNET_PRE, unit_norm=True, dim=128, published=published,
        notes=notes or "the file name does not say whether it is the last or the best-on-test checkpoint: "
                       "descbench logs its 'epoch' and 'FPR' entries when it loads it")


def _sdgm_log(train: str, a: tuple[str, float], b: tuple[str, float], log: str) -> Published:
    return Published("ubc", f"{train}->{a[0]},{b[0]}", ((f"fpr95 {a[0]}", a[1]), (f"fpr95 {b[0]}", b[1])),
                     f"{SDGMNET[0]}@{SDGMNET[1][:7]}:pretrained/loggers/{log}, last epoch (199)",
                     "training log; may not be the released checkpoint's epoch")


SDGMNET_RELEASES = (
    _sdgmnet("sdgmnet@liberty", "pretrained/models/model_li.pt", "e2650cf32c26ba22882cb78fd073b4eb5c6b6fb7",
             "liberty", published=(_sdgm_log("liberty", ("yosemite", 0.928), ("notredame", 0.296), "logger_li.log"),)),
    _sdgmnet("sdgmnet@notredame", "pretrained/models/model_no.pt", "c3e60f2d52b034054f2487f5e1ac3fe91ae85980",
             "notredame", published=(_sdgm_log("notredame", ("liberty", 0.864), ("yosemite", 0.924), "logger_no.log"),)),
    _sdgmnet("sdgmnet@yosemite", "pretrained/models/model_yo.pt", "558979de60e14abe3c2fe2258f894115d59372fe",
             "yosemite", published=(_sdgm_log("yosemite", ("liberty", 1.488), ("notredame", 0.456), "logger_yo.log"),)),
    _sdgmnet("sdgmnet-finetuned@liberty", "pretrained/Fine-tuned/model_li.pt",
             "cc1eb77e0022959e9037ee9f91e8945aea004465", "liberty",
             train_data="UBC Liberty, then fine-tuned for the Image Matching Challenge (fine-tuning data not stated)",
             overlap="unstated", notes="the README's IMC 'Fine-tuned' model (PhotoTourism validation mAA 65.39); "
                                      "added 2022-04-04 (3c1df8b)"),
)

# --------------------------------------------------------------------------------------------- Self-TNet

_SELF_TNET_LAYOUT = ("dict with 'model_arch' (SDGMNet128) and 'state_dict' or, for teacher/student files, "
                     "'S_state_dict' (+ 'T_state_dict', the teacher, ignored); an optional 'pca' entry, refused "
                     "if it is a pickled object; every tensor stored twice (layerN.* and features.(N-1).*)")


def _self_tnet(name: str, file: str, blob_id: str, train: str | None) -> Release:
    return Release(
        name=name, method="self-tnet", family="self-tnet",
        files=(_weight_file("weights", SELF_TNET, f"Pretrained-Models/{file}", blob_id,
                            "torch checkpoint (dict), size unknown (>= 4 MiB; plain git blob, not Git LFS)"),),
        train_data=f"UBC {SET_NAMES[train]}" if train else "not stated", trained_on=(train,) if train else (),
        hpatches_overlap="none" if train else "unstated", repo=SELF_TNET[0], commit=SELF_TNET[1],
        licence=LICENCES[SELF_TNET[0]], citation=CITE_SELF_TNET, layout=_SELF_TNET_LAYOUT,
        preprocessing=("testFPR.py: PIL Resize(32) + ToTensor, i.e. [0, 1] (the HPatches extractor feeds 0-255; "
                       "FRN first, so only eps differs); descbench feeds cv2-resized [0, 1] patches; output L2"),
        unit_norm=True, dim=128, notes="SDGMNet_128 network (HyNet's layers); no published numbers in the README")


SELF_TNET_RELEASES = (
    _self_tnet("self-tnet@liberty", "Self-TNet_lib.pt", "f0a23bbb979ca43888c6dbb053b132311964fdb8", "liberty"),
    _self_tnet("self-tnet@notredame", "Self-TNet_nd.pt", "9d5332a28a77a62efb8895c6a80e26b5a1ed4cd2", "notredame"),
    _self_tnet("self-tnet@yosemite", "Self-TNet_yos.pt", "66eec538df64f4d597adee684984fbd4a10831c4", "yosemite"),
    _self_tnet("self-tnet", "Self-TNet.pt", "d0f5522a91e14388c6e48f7577335ca69ea48e9a", None),
)

# ----------------------------------------------------------------------------------------------- CDF

_CDF_MEAN_STD = {  # blob id, sha256 (both read from the file bytes), mean, std
    "liberty": ("02a4fe8b130f0b2081c69f7525f4071019757a38",
                "ff5c93ee57794c5ad9edb7cb60ce6c97b4f124ba4792bae9ce54a711265d6075"),
    "notredame": ("6549ceaa015b6dbc1e49bd9c42811d9de2ded580",
                  "9c6d7b1720794c8d629e09688da744429edca89c02e0bfaeaaddab58163d34de"),
    "yosemite": ("c9aac328d797c1c7cc8d336d45ba981d10f11389",
                 "5657c05be66343f16ca7c93653bb5c1bed6d3e6ee1fad80c62f46c039df616e7"),
}
_CDF_MODELS = {
    ("liberty", False): "a93d2b10b0f0f0609f4c072662cf74cd58bcd9f0",
    ("liberty", True): "fe4d41a0b9255eeaa7024210fc950dad03a18ee6",
    ("notredame", False): "3471c95f922fafacc4bccd9c814a0a5fa28ee235",
    ("notredame", True): "98b1a7153038b6ed4d45866ea0dab3828f2ddf4e",
    ("yosemite", False): "293b8586165c6f3d7794498ebd36f07b0dfc8375",
    ("yosemite", True): "55e4815c727303dd0d64f4f7c5a6eb22187daabe",
}


def _cdf(train: str, binary: bool) -> Release:
    folder = f"pretrained/{train}_{'binary' if binary else 'float'}"
    ms_blob, ms_sha = _CDF_MEAN_STD[train]
    return Release(
        name=f"cdf{'-binary' if binary else ''}@{train}", method="cdf-binary" if binary else "cdf",
        family="cdf-binary" if binary else "cdf",
        files=(
            _weight_file("weights", CDF, f"{folder}/model.state_dict", _CDF_MODELS[(train, binary)],
                         "torch state_dict (bare, DataParallel unwrapped), size unknown (>= 4 MiB)"),
            _weight_file("mean_std", CDF, f"{folder}/mean_std.pt", ms_blob,
                         "torch file: dict {'mean': float, 'std': float}",
                         sha256=(ms_sha, f"{CDF[0]}@{CDF[1][:7]} file bytes"), size=190),
        ),
        train_data=f"UBC {SET_NAMES[train]}{' (binary)' if binary else ''}; flags in args.txt where present",
        trained_on=(train,),
        hpatches_overlap="none", repo=CDF[0], commit=CDF[1], licence=LICENCES[CDF[0]], citation=CITE_CDF,
        layout=("bare state_dict of the L2-Net with BatchNorm (features.*, HardNet's indices and shapes; BatchNorm "
                "affine=False)" + ("; out_dim 256: features.19 (256, 128, 8, 8), features.20 (256)" if binary else "")),
        preprocessing=("cv2.resize to 32 (bilinear), ToTensor ([0, 1]), Normalize(mean, std) from mean_std.pt, "
                       "then the per-patch standardisation (std + 1e-7); descbench applies the same"),
        unit_norm=not binary, dim=256 if binary else 128,
        notes=("256-D tanh output (binarise by sign); compared with L2 distances here" if binary else
               "the README says the retrained models differ subtly from the paper's numbers"))


CDF_RELEASES = tuple(_cdf(train, binary) for binary in (False, True) for train in UBC_SETS)

# -------------------------------------------------------------------------------------- L2-Net (port)

L2NET_PORT_RELEASE = Release(
    name="l2net-plus@liberty", method="l2net-plus", family="l2net-port",
    files=(
        _weight_file("weights", IMC_BASELINES, "third_party/l2net_config/l2net_ported_weights_lib+.pth",
                     "8f851835227680be3be3317bcdb63ebfe731995f", "torch state_dict (bare), size unknown",
                     also=((IMC_BASELINES, "misc/l2net/l2net_ported_weights_lib+.pth"),)),
        _weight_file("pixmean", L2NET, "matlab/L2Net-LIB+.mat", "fb13559c8c954266c790fe68bb3c9871233d243b",
                     "MATLAB v5 .mat (MatConvNet net, netCen, pixMean, pixMeanCen); only pixMean is read"),
    ),
    train_data="UBC Liberty with augmentation (L2-Net's flagAug): L2-Net+", trained_on=("liberty",),
    hpatches_overlap="none", repo=IMC_BASELINES[0], commit=IMC_BASELINES[1],
    licence="port: Apache-2.0 (vcg-uvic/image-matching-benchmark-baselines); weights: none stated (yuruntian/L2-Net)",
    citation=CITE_L2NET,
    layout=("bare state_dict converted from L2Net-LIB+.mat: features.{0,3,...,15,18} convolutions with bias, "
            "affine BatchNorm (eps 1e-10) at features.{1,4,...,16,19}"),
    preprocessing=("extract_descriptors_l2net.py: cv2.resize to 32 on 0-255, minus the per-pixel pixMean of "
                   "L2Net-LIB+.mat, per-patch standardisation (std + 1e-12), output LRN with k = 0.5 "
                   "(x / sqrt(0.5 + |x|^2)); descbench scales its [0, 1] patches by 255 and does the same"),
    unit_norm=False, dim=128,
    published=(_hpatches("(not stated)", HARDNET_FIGURE_2 + ", bar 'L2Net+'", "the figure does not name the "
                         ".mat file", matching=45.04, retrieval=63.37),),
    notes="norms just below 1 (k = 0.5 in the LRN); the .mat holds the central-surround net too (not used)")

# ------------------------------------------------------------------------------------------- refused

REFUSED: dict[str, RefusedRelease] = {r.name: r for r in (
    RefusedRelease(
        "hardnet8-original",
        "pultarmi's HardNet8 checkpoints, http://cmp.felk.cvut.cz/~qqpultar/Weights/Weights-HardNet8.zip",
        "each .pt stores a pickled sklearn.decomposition.PCA object under 'pca' (Notebooks/add_pca.ipynb of "
        f"{HARDNET8_TRAINING[0]}); reading it needs torch.load(weights_only=False) and sklearn, i.e. running "
        "arbitrary code from the file",
        "use hardnet8v2 (kornia's plain state_dict: the same network with the PCA stored as tensors)"),
    RefusedRelease(
        "hardnet-plus-jit", f"{HARDNET[0]}@{HARDNET[1][:7]}:notebook/HardNetLib+JIT.pt",
        "it is a TorchScript archive, which carries code and is loaded with torch.jit.load",
        "use hardnet-plus@liberty (the checkpoint it was traced from)"),
    RefusedRelease(
        "hardnetps", f"{HARDNET[0]}@{HARDNET[1][:7]}:pretrained/3rd_party/HardNetPS/HardNetPS.pth",
        "its network differs (conv biases, affine BatchNorm, no final BatchNorm) and its key layout is "
        "unverified, so descbench has no network to load it into strictly",
        "use hardnet-plus@liberty or hardnet@brown6"),
)}

RELEASES: dict[str, Release] = {r.name: r for r in (
    *HARDNET_RELEASES, HARDNET8_RELEASE, *SOSNET_RELEASES, *HYNET_RELEASES, *TFEAT_RELEASES, HARDTFEAT_RELEASE,
    *SDGMNET_RELEASES, *SELF_TNET_RELEASES, *CDF_RELEASES, L2NET_PORT_RELEASE)}

assert not set(RELEASES) & set(REFUSED)


def published_rows(releases: Mapping[str, Release] = RELEASES) -> list[tuple[str, Published]]:
    """(release name, published number) for every release that has one."""
    return [(name, p) for name, r in releases.items() for p in r.published]


__all__ = ["Published", "WeightFile", "Release", "RefusedRelease", "RELEASES", "REFUSED", "LICENCES",
           "HPATCHES_OVERLAPS", "published_rows"]
