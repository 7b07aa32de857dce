"""Reading released checkpoints without executing them, and mapping them onto descbench's networks.

Every torch file is read with ``torch.load(..., weights_only=True)``: only tensors, containers and
primitive values can come out of it, never an object whose construction runs code. A file that needs
more (a pickled sklearn PCA, a TorchScript archive) is refused with the reason and the safe
alternative. The nesting of a checkpoint (``state_dict``, ``model_state_dict``, ``S_state_dict`` or a
bare state_dict), its duplicated prefixes, missing ``num_batches_tracked`` entries and known unused
keys are handled explicitly, one ``KeyMap`` per network family; the load into the descbench network
is then strict, so a key or shape that nobody accounted for is an error.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from descbench import nets
from descbench.errors import DescbenchError
from descbench.weights.catalogue import Release

log = logging.getLogger(__name__)


class UnsafeCheckpointError(DescbenchError):
    """The file can only be read by running code from it (arbitrary unpickling, TorchScript)."""


# ------------------------------------------------------------------------------------ reading safely

def _torchscript_entries(path: Path) -> list[str]:
    """The entries that make a zip a TorchScript archive (code or constants), if it is one."""
    if not zipfile.is_zipfile(path):
        return []
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return []
    return [n for n in names if re.search(r"(^|/)(code/|constants\.pkl$)", n)][:3]


def read_torch_file(path: str | os.PathLike, alternative: str = "") -> Any:
    """The content of a torch file, read with ``weights_only=True``.

    A file that stores pickled objects other than tensors and plain containers, or a TorchScript
    archive, raises ``UnsafeCheckpointError`` naming what it holds and ``alternative``; nothing from the
    file runs.
    """
    path = Path(path)
    if not path.is_file():
        raise DescbenchError(f"weights file {path} does not exist")
    instead = alternative or ("ask for a plain state_dict of tensors, or re-save one yourself in a trusted "
                              "sandbox and pin it with --expect-sha256")
    script = _torchscript_entries(path)
    if script:
        raise UnsafeCheckpointError(
            f"{path} is refused: it is a TorchScript archive ({', '.join(script)}), which carries code and "
            "would be loaded with torch.jit.load; descbench reads weights only as tensors "
            f"(torch.load with weights_only=True). Instead: {instead}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.findall(r"GLOBAL ([\w.]+)", str(exc))
        what = f"a pickled {found[0]} object" if found else "pickled Python objects"
        raise UnsafeCheckpointError(
            f"{path} is refused: it stores {what}, not only tensors, so reading it needs arbitrary "
            "unpickling (torch.load with weights_only=False), which can run any code; descbench never "
            f"does that. Instead: {instead}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DescbenchError(f"{path} is not a readable torch file ({type(exc).__name__}: {exc}); delete it "
                             "and download it again") from exc


def read_mean_std(path: str | os.PathLike) -> tuple[float, float]:
    """CDF's ``mean_std.pt``: a dict ``{'mean': float, 'std': float}``."""
    obj = read_torch_file(path)
    try:
        mean, std = float(obj["mean"]), float(obj["std"])
    except (TypeError, KeyError, ValueError) as exc:
        raise DescbenchError(f"{path} must hold {{'mean': number, 'std': number}} (CDF's mean_std.pt), got "
                             f"{_describe(obj)}") from exc
    if not (0.0 <= mean <= 1.0 and 0.0 < std <= 1.0):
        raise DescbenchError(f"{path}: mean {mean} / std {std} are not the [0, 1] statistics of a patch set")
    return mean, std


def read_pix_mean(path: str | os.PathLike, side: int = nets.PATCH_SIZE) -> torch.Tensor:
    """L2-Net's per-pixel mean image ``pixMean`` (side x side, 0-255 scale) from a MATLAB v5 ``.mat``.

    scipy reads the MATLAB format without unpickling anything; only the ``pixMean`` variable is read.
    """
    import numpy as np
    import scipy.io

    path = Path(path)
    try:
        content = scipy.io.loadmat(path, variable_names=["pixMean"])
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5) files
        raise DescbenchError(f"{path} is a MATLAB v7.3 file; the released L2-Net files are v5 ({exc})") from exc
    except (ValueError, TypeError, OSError, EOFError) as exc:
        raise DescbenchError(f"{path} is not a readable MATLAB .mat file ({exc}); delete it and download it "
                             "again") from exc
    if "pixMean" not in content:
        raise DescbenchError(f"{path} has no pixMean variable (L2-Net's per-pixel mean image)")
    pix = np.asarray(content["pixMean"], dtype=np.float64).squeeze()
    if pix.shape != (side, side) or not np.all(np.isfinite(pix)):
        raise DescbenchError(f"{path}: pixMean must be a finite {side}x{side} image, got shape {pix.shape}")
    return torch.from_numpy(pix.astype(np.float32))


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = list(obj)
        more = " ..." if len(keys) > 8 else ""
        return f"a dict with keys {', '.join(map(repr, keys[:8]))}{more}"
    return type(obj).__name__


def is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


# ------------------------------------------------------------------------------------------ nesting

@dataclass(frozen=True)
class Nesting:
    """Where a checkpoint keeps its state_dict.

    ``containers``: the keys tried in order (``()`` = the file is the state_dict itself). ``metadata``:
    other top-level keys that are expected and ignored (epoch, optimizer state, ...). ``arch_key`` /
    ``archs``: a key naming the architecture and the names accepted.
    """

    containers: tuple[str, ...] = ()
    metadata: tuple[str, ...] = ()
    arch_key: str | None = None
    archs: tuple[str, ...] = ()


BARE = Nesting()


def unnest(obj: Any, nesting: Nesting, origin: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, metadata) of a checkpoint; ``module.`` prefixes of DataParallel are removed."""
    if not isinstance(obj, Mapping):
        raise DescbenchError(f"{origin}: expected a dict of tensors (a checkpoint), got {type(obj).__name__}")
    info: dict[str, Any] = {}
    if nesting.containers and not is_state_dict(obj):
        found = [k for k in nesting.containers if k in obj]
        if not found:
            raise DescbenchError(f"{origin}: no {' or '.join(map(repr, nesting.containers))} in it; it is "
                                 f"{_describe(obj)}, not the published layout")
        key = found[0]
        if nesting.arch_key is not None:
            arch = obj.get(nesting.arch_key)
            student = obj.get("S_" + nesting.arch_key) if key.startswith("S_") else None
            for k, value in ((nesting.arch_key, arch), ("S_" + nesting.arch_key, student)):
                if value is not None and value not in nesting.archs:
                    raise DescbenchError(f"{origin}: {k} is {value!r}; descbench loads only "
                                         f"{', '.join(nesting.archs)} from this release")
            info[nesting.arch_key] = arch
            if student is not None:
                info["S_" + nesting.arch_key] = student
        extra = [k for k in obj if k != key and k not in nesting.containers and k not in nesting.metadata
                 and k != nesting.arch_key]
        if extra:
            log.info("%s: ignoring the top-level entries %s", origin, ", ".join(map(str, extra)))
        for k in nesting.metadata:
            value = obj.get(k)
            if isinstance(value, (int, float, str)) or (isinstance(value, torch.Tensor) and value.numel() == 1):
                info[k] = value.item() if isinstance(value, torch.Tensor) else value
        info["container"] = key
        state = obj[key]
    else:
        if nesting.containers:
            log.info("%s: a bare state_dict where %s was expected; loading it as is", origin,
                     " or ".join(map(repr, nesting.containers)))
        state = obj
    if not is_state_dict(state):
        raise DescbenchError(f"{origin}: the state_dict must map names to tensors, got {_describe(state)}")
    state = dict(state)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
        info["stripped_prefix"] = "module."
    return state, info


# ------------------------------------------------------------------------------------------- key maps

@dataclass(frozen=True)
class KeyMap:
    """How a release's state_dict keys become a descbench network's.

    ``modules``: (release module path, descbench module path) pairs; keys are renamed by their longest
    matching module path, and an empty map means identical names. ``duplicates``: (duplicate prefix,
    canonical prefix) pairs of a file that stores each tensor twice; the two copies must be equal and
    the duplicate is dropped. ``unused``: prefixes of keys the release carries that no network uses
    (dropped, and logged). ``frn_eps``: the release stores each FRN's eps as a ``<frn>.eps`` (1,)
    buffer, which descbench's ``FRN`` keeps as a plain attribute (set from the file).
    """

    modules: tuple[tuple[str, str], ...] = ()
    duplicates: tuple[tuple[str, str], ...] = ()
    unused: tuple[str, ...] = ()
    frn_eps: bool = False

    @staticmethod
    def _rename(key: str, pairs: tuple[tuple[str, str], ...]) -> str | None:
        best = None
        for src, dst in pairs:
            if key.startswith(src + ".") and (best is None or len(src) > len(best[0])):
                best = (src, dst)
        return None if best is None else best[1] + key[len(best[0]):]

    def to_descbench(self, state: Mapping[str, torch.Tensor], net: nn.Module, origin: str = "the file"
                     ) -> tuple[dict[str, torch.Tensor], dict[str, float], list[str]]:
        """(state_dict for ``net``, FRN eps by module path, dropped keys)."""
        state = dict(state)
        dropped: list[str] = []
        for dup, canon in self.duplicates:
            for key in [k for k in state if k.startswith(dup)]:
                target = canon + key[len(dup):]
                if target in state:
                    if state[target].shape != state[key].shape or not torch.equal(state[target], state[key]):
                        raise DescbenchError(f"{origin}: {key} and {target} should be two copies of one tensor "
                                             "but differ; the file is not the published one")
                    del state[key]
                else:
                    state[target] = state.pop(key)
                dropped.append(key)
        for key in [k for k in state if k.startswith(self.unused)] if self.unused else []:
            del state[key]
            dropped.append(key)
        mapped: dict[str, torch.Tensor] = {}
        eps: dict[str, float] = {}
        unmapped = []
        for key, value in state.items():
            new = self._rename(key, self.modules) if self.modules else key
            if new is None:
                unmapped.append(key)
                continue
            module_path, _, leaf = new.rpartition(".")
            if self.frn_eps and leaf == "eps" and isinstance(_submodule(net, module_path), nets.FRN):
                if value.numel() != 1:
                    raise DescbenchError(f"{origin}: {key} must hold one number (an FRN eps), got shape "
                                         f"{tuple(value.shape)}")
                eps[module_path] = abs(float(value.reshape(-1)[0]))
                continue
            if new in mapped:
                raise DescbenchError(f"{origin}: {key} maps onto {new}, which another key already filled")
            mapped[new] = value
        if unmapped:
            raise DescbenchError(f"{origin}: keys not in the published layout: {', '.join(sorted(unmapped)[:8])}"
                                 f"{' ...' if len(unmapped) > 8 else ''}")
        if self.frn_eps:
            missing_eps = [p for p, m in net.named_modules() if isinstance(m, nets.FRN) and p not in eps]
            if missing_eps:
                raise DescbenchError(f"{origin}: no eps for the FRN layers {', '.join(missing_eps[:4])}")
        return mapped, eps, dropped

    def to_release(self, net: nn.Module, num_batches_tracked: bool = True) -> dict[str, torch.Tensor]:
        """``net``'s state_dict in the release's layout (the inverse map, duplicates included)."""
        inverse = tuple((dst, src) for src, dst in self.modules)
        out: dict[str, torch.Tensor] = {}
        for key, value in net.state_dict().items():
            if not num_batches_tracked and key.endswith(".num_batches_tracked"):
                continue
            new = self._rename(key, inverse) if inverse else key
            if new is None:
                raise DescbenchError(f"{key} of the descbench network has no place in the release layout")
            out[new] = value
        if self.frn_eps:
            for path, module in net.named_modules():
                if isinstance(module, nets.FRN):
                    new = (self._rename(path + ".eps", inverse) if inverse else path + ".eps")
                    out[new] = torch.tensor([float(module.eps)])
        for dup, canon in self.duplicates:
            out.update({dup + k[len(canon):]: v for k, v in list(out.items()) if k.startswith(canon)})
        return out


def _submodule(net: nn.Module, path: str) -> nn.Module | None:
    try:
        return net.get_submodule(path)
    except AttributeError:
        return None


def load_mapped(net: nn.Module, state: Mapping[str, torch.Tensor], key_map: KeyMap, origin: str) -> list[str]:
    """Load a release's state_dict into ``net`` strictly, through ``key_map``; returns the notes logged
    (dropped keys, filled ``num_batches_tracked``)."""
    mapped, eps, dropped = key_map.to_descbench(state, net, origin)
    notes = []
    if dropped:
        notes.append(f"dropped {len(dropped)} duplicate or unused keys ({', '.join(dropped[:3])}"
                     f"{' ...' if len(dropped) > 3 else ''})")
    expected = net.state_dict()
    filled = [k for k in expected if k.endswith(".num_batches_tracked") and k not in mapped]
    for key in filled:
        mapped[key] = torch.zeros_like(expected[key])
    if filled:
        notes.append(f"no num_batches_tracked in the file for {len(filled)} BatchNorm layers (older PyTorch): "
                     "set to 0, which eval mode does not use")
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(set(mapped) - set(expected))
    wrong = sorted(k for k in set(expected) & set(mapped) if tuple(expected[k].shape) != tuple(mapped[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:6])}{' ...' if len(unexpected) > 6 else ''}")
        for k in wrong[:6]:
            parts.append(f"{k} has shape {tuple(mapped[k].shape)}, the network needs {tuple(expected[k].shape)}")
        raise DescbenchError(f"{origin} does not fit its network {type(net).__name__}: " + "; ".join(parts))
    floating = {k: (v.float() if v.is_floating_point() else v) for k, v in mapped.items()}
    net.load_state_dict(floating, strict=True)
    for path, value in eps.items():
        net.get_submodule(path).eps = value
    for note in notes:
        log.info("%s: %s", origin, note)
    return notes


# ------------------------------------------------------------------------------------------- families

def _hynet_modules() -> tuple[tuple[str, str], ...]:
    """yuruntian/HyNet's ``layer1..layer7`` modules onto ``L2NetFRN.features`` indices."""
    pairs = [(f"layer1.{k}", f"features.{k}") for k in range(5)]  # FRN, TLU, conv, FRN, TLU
    index = 5
    for n in range(2, 7):  # conv, FRN, TLU
        pairs += [(f"layer{n}.{k}", f"features.{index + k}") for k in range(3)]
        index += 3
    pairs += [(f"layer7.{k}", f"features.{index + k}") for k in range(3)]  # dropout, conv, BatchNorm
    return tuple(pairs)


HYNET_KEYS = KeyMap(modules=_hynet_modules(), frn_eps=True)
# SDGMNet / Self-TNet register layer1..7 and also features = Sequential(layer1, ..., layer7).
SDGMNET_KEYS = KeyMap(modules=_hynet_modules(), frn_eps=True,
                      duplicates=tuple((f"features.{n - 1}.", f"layer{n}.") for n in range(1, 8)))
SAME_KEYS = KeyMap()
HARDTFEAT_KEYS = KeyMap(unused=("SIFT.",))


@dataclass(frozen=True)
class Family:
    """A network for releases: how to build it, where the state_dict sits, how keys map, and the input
    transform of the authors' extractor (given the release's auxiliary files)."""

    name: str
    build: Callable[[], nn.Module]
    nesting: Nesting
    key_map: KeyMap
    transform: Callable[[Mapping[str, Path]], nets.InputTransform]
    refuse_hint: str = ""


def _fixed(scale: float = 1.0, mean: float = 0.0, std: float = 1.0):
    return lambda files: nets.InputTransform(scale=scale, mean=mean, std=std)


def _cdf_transform(files: Mapping[str, Path]) -> nets.InputTransform:
    mean, std = read_mean_std(files["mean_std"])
    return nets.InputTransform(mean=mean, std=std)


def _l2net_transform(files: Mapping[str, Path]) -> nets.InputTransform:
    return nets.InputTransform(scale=255.0, mean=read_pix_mean(files["pixmean"]))


HARDNET_MEAN, HARDNET_STD = 0.443728476019, 0.20197947209  # DagnyT/hardnet's Liberty statistics

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("hardnet", lambda: nets.L2NetBN(dim=128, dropout=0.3), Nesting(("state_dict",), ("epoch",)), SAME_KEYS,
           _fixed(mean=HARDNET_MEAN, std=HARDNET_STD)),
    Family("hardnet8", lambda: nets.HardNet8(), BARE, SAME_KEYS, _fixed()),
    Family("sosnet", lambda: nets.SOSNet32x32(dim=128, dropout=0.1), BARE, SAME_KEYS, _fixed(scale=255.0)),
    Family("hynet", lambda: nets.L2NetFRN(dim=128, dropout=0.3, init="pytorch"), BARE, HYNET_KEYS,
           _fixed(scale=255.0)),
    Family("sdgmnet", lambda: nets.L2NetFRN(dim=128, dropout=0.3),
           Nesting(("model_state_dict",), ("epoch", "FPR")), SDGMNET_KEYS, _fixed()),
    Family("self-tnet", lambda: nets.L2NetFRN(dim=128, dropout=0.3),
           Nesting(("state_dict", "S_state_dict"), ("epoch",), arch_key="model_arch",
                   archs=("SDGMNet128", "SDGMNet", "TeacherNet")), SDGMNET_KEYS, _fixed(),  # student: S_*
           refuse_hint="re-save checkpoint['S_state_dict'] (or ['state_dict']) alone in a trusted sandbox and "
                       "pass it with --from-dir and --expect-sha256"),
    Family("tfeat", lambda: nets.TFeat(), BARE, SAME_KEYS, _fixed(scale=255.0)),
    Family("hardtfeat", lambda: nets.HardTFeat(), Nesting(("state_dict",), ("epoch",)), HARDTFEAT_KEYS, _fixed()),
    Family("l2net-port", lambda: nets.L2NetPort(), BARE, SAME_KEYS, _l2net_transform),
    Family("cdf", lambda: nets.CDFL2Net(dim=128), BARE, SAME_KEYS, _cdf_transform),
    Family("cdf-binary", lambda: nets.CDFL2Net(dim=256, binary=True), BARE, SAME_KEYS, _cdf_transform),
)}


@dataclass
class LoadedRelease:
    """A release's network (eval mode, on CPU, input (B, 1, 32, 32) in [0, 1]) and what its files said."""

    release: Release
    network: nn.Module
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def family_of(release: Release) -> Family:
    if release.family not in FAMILIES:
        raise DescbenchError(f"{release.name}: unknown network family {release.family!r}")
    return FAMILIES[release.family]


def empty_core(release: Release) -> nn.Module:
    """The family's network with uninitialised storage: built on the meta device (no initialisation is
    computed) and materialised on the CPU. Only for a strict load that overwrites every tensor."""
    with torch.device("meta"):
        net = family_of(release).build()
    return net.to_empty(device="cpu")


def build_from_files(release: Release, files: Mapping[str, str | os.PathLike]) -> LoadedRelease:
    """Build ``release``'s network from its files (role -> path), strictly; no checksum is checked here."""
    family = family_of(release)
    paths = {role: Path(p) for role, p in files.items()}
    missing = [f.role for f in release.files if f.role not in paths]
    if missing:
        raise DescbenchError(f"{release.name}: no path given for its {', '.join(missing)} file")
    weights = paths["weights"]
    obj = read_torch_file(weights, alternative=family.refuse_hint)
    state, info = unnest(obj, family.nesting, f"{weights} ({release.name})")
    core = empty_core(release)  # every tensor comes from the file (strict load)
    notes = load_mapped(core, state, family.key_map, f"{weights} ({release.name})")
    network = nets.Preprocessed(core, family.transform(paths)).eval()
    for key in ("epoch", "FPR"):
        if key in info:
            log.info("%s: checkpoint %s = %s", release.name, key, info[key])
    return LoadedRelease(release, network, info, notes)


def to_release_layout(release: Release, net: nn.Module, num_batches_tracked: bool = True
                      ) -> dict[str, torch.Tensor]:
    """The state_dict of a descbench ``net`` (the family's core network) in ``release``'s key layout."""
    return family_of(release).key_map.to_release(net, num_batches_tracked=num_batches_tracked)
