"""Descriptors of patch stacks: from a registered descriptor, a trained model, or files on disk.

Learned descriptors get what the reference extraction scripts feed them (HardNet's test loader,
hpatches-benchmark's extraction scripts): every 65x65 (HPatches) or 64x64 (UBC) patch resized with
``cv2.resize`` to the network's side (INTER_LINEAR unless told otherwise), then float32 in [0, 1] of
shape (B, 1, s, s), run in batches under ``torch.no_grad``. Handcrafted descriptors receive the
original uint8 patches and resize themselves (registry contract).

Descriptor files use the official HPatches layout ``<dir>/<seq>/<type>.csv`` (one row per patch, no
header, ``,`` or ``;``) or ``<dir>/<seq>/<type>.npy`` (N, dim): ``write_descriptor_dir`` writes them,
``descriptor_files`` finds them and ``descbench.evaluate.hpatches.HPatchesDescriptors.from_dir`` reads them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np
import pandas as pd
import torch

from descbench import registry
from descbench.errors import DescbenchError
from descbench.fileio import atomic_path, save_npy
from descbench.progress import Progress, progress

log = logging.getLogger(__name__)

IMAGE_TYPES = ("ref",) + tuple(f"{lvl}{k}" for lvl in "eht" for k in range(1, 6))
INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC,
                  "nearest": cv2.INTER_NEAREST}


# patches per batch, {on a GPU?: n}: on the CPU small batches keep the activations in cache (measured on
# 2 cores: a trained L2-Net on 4,096 patches took 4.7 s at 32, 13.2 s at 256, mostly page faults)
DEFAULT_BATCH = {False: 32, True: 512}

class Extractor:
    """Maps uint8 patches (N, H, W) to float32 descriptors (N, dim) for one descriptor.

    ``network`` is the trained module for a learned descriptor (``load_model``); a learned descriptor
    without one is an error, since its untrained weights mean nothing.
    """

    def __init__(self, descriptor: registry.Descriptor, network: torch.nn.Module | None = None,
                 batch_size: int | None = None, interpolation: str = "linear", device: str = "cpu"):
        if descriptor.learned and network is None:
            if descriptor.released is not None:
                raise DescbenchError(f"{descriptor.name!r} is released weights: load them with "
                                     "descbench.weights.load_network (make_extractor does)")
            raise DescbenchError(
                f"{descriptor.name!r} is a learned descriptor: give its trained model with --model PATH")
        if interpolation not in INTERPOLATIONS:
            raise DescbenchError(
                f"unknown interpolation {interpolation!r}; use one of {', '.join(INTERPOLATIONS)}")
        self.device = torch.device(device)
        if batch_size is None:
            batch_size = DEFAULT_BATCH[self.device.type == "cuda"]
        if batch_size < 1:
            raise DescbenchError(f"batch size must be >= 1, got {batch_size}")
        self.descriptor = descriptor
        self.name = descriptor.name
        self.dim = descriptor.dim
        self.batch_size = batch_size
        self.interpolation = INTERPOLATIONS[interpolation]
        self.network = network.to(self.device).eval() if network is not None else None

    def _resize(self, patches: np.ndarray) -> np.ndarray:
        side = self.descriptor.patch_size
        if patches.shape[1:] == (side, side):
            return np.asarray(patches)
        return np.stack([cv2.resize(np.asarray(p), (side, side), interpolation=self.interpolation)
                         for p in patches])

    def _batch(self, patches: np.ndarray) -> np.ndarray:
        """One batch through the plug-in; whatever it raises or returns wrong is a clear error."""
        try:
            if self.network is None:
                result = self.descriptor.describe(np.asarray(patches))
            else:
                x = torch.from_numpy(self._resize(patches).astype(np.float32) / 255.0)[:, None]
                with torch.no_grad():
                    result = self.network(x.to(self.device))
                if isinstance(result, torch.Tensor):
                    result = result.float().cpu().numpy()
        except DescbenchError:
            raise
        except Exception as exc:  # a bug in the plug-in (or a network that does not fit the input)
            what = "describe" if self.network is None else "network"
            memory = isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()
            fix = ("lower --batch-size" if memory else
                   "fix the plug-in (`descbench --debug ...` shows the traceback)")
            raise DescbenchError(
                f"descriptor {self.descriptor.label}: {what} failed on a batch of {len(patches)} patches "
                f"of {patches.shape[1]}x{patches.shape[2]} uint8 ({type(exc).__name__}: {exc}); {fix}") from exc
        return self._checked(result, len(patches))

    def _checked(self, result, n: int) -> np.ndarray:
        """``result`` as float32 (n, dim), or an error naming the plug-in and what is wrong."""
        label = self.descriptor.label
        contract = f"it must return a float32 array of shape (N, {self.dim}) (N patches, dim={self.dim})"
        if isinstance(result, torch.Tensor):
            raise DescbenchError(f"descriptor {label} returned a torch.Tensor; {contract}, a numpy array")
        try:
            arr = np.asarray(result)
        except Exception as exc:
            raise DescbenchError(f"descriptor {label} returned a {type(result).__name__} that is not an "
                                 f"array ({exc}); {contract}") from exc
        if arr.dtype.kind not in "fiu":
            raise DescbenchError(f"descriptor {label} returned {type(result).__name__} of dtype {arr.dtype} "
                                 f"(not real numbers); {contract}")
        if arr.shape != (n, self.dim):
            raise DescbenchError(
                f"descriptor {label} returned shape {arr.shape} for {n} patches; {contract}, as its "
                "registration says")
        with np.errstate(over="ignore", invalid="ignore"):  # too large for float32: Inf, reported below
            arr = arr.astype(np.float32, copy=False)
        if not np.all(np.isfinite(arr)):
            raise DescbenchError(f"descriptor {label} produced NaN or Inf values (e.g. dividing by a zero "
                                 "norm: add an epsilon); fix the plug-in")
        return arr

    def __call__(self, patches: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        if patches.ndim != 3 or patches.dtype != np.uint8:
            raise DescbenchError(f"patches must be uint8 (N, H, W), got {patches.dtype} {patches.shape}")
        out = np.empty((len(patches), self.dim), dtype=np.float32)
        for start in range(0, len(patches), self.batch_size):
            batch = patches[start:start + self.batch_size]
            out[start:start + len(batch)] = self._batch(batch)
            if progress is not None:
                progress.update(len(batch))
        return out


def make_extractor(descriptor: str | None = None, model: str | os.PathLike | None = None,
                   weights_dir: str | os.PathLike | None = None, **kwargs) -> Extractor:
    """An extractor for a registered descriptor name or a trained model file (exactly one). A released
    descriptor (``name@set``) gets its network with the verified weights from ``weights_dir``
    (default ``descbench.weights.default_weights_dir()``)."""
    if (descriptor is None) == (model is None):
        raise DescbenchError("give exactly one of --descriptor NAME or --model PATH")
    if model is not None:
        from descbench.models import load_model

        network, desc, _ = load_model(model)
        return Extractor(desc, network, **kwargs)
    desc = registry.get(descriptor)
    if desc.released is not None:
        from descbench import weights

        return Extractor(desc, weights.load_network(desc.released, weights_dir), **kwargs)
    return Extractor(desc, **kwargs)


def describe_sequences(extractor: Extractor, sequences: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Descriptors of HPatches stacks: name -> uint8 (16, N, 65, 65) gives name -> float32 (16, N, dim)."""
    total = sum(int(np.prod(s.shape[:2])) for s in sequences.values())
    out = {}
    with progress(total=total, desc=f"describe ({extractor.name})", unit="patch", logger=log) as bar:
        for name, stack in sequences.items():
            out[name] = np.stack([extractor(np.asarray(stack[k]), bar) for k in range(stack.shape[0])])
    return out


# ----------------------------------------------------------------------------------------------
# descriptor files
# ----------------------------------------------------------------------------------------------
def _sniff_delimiter(path: Path) -> str:
    with open(path) as f:
        first = f.readline()
    return ";" if ";" in first else ","


def _read_table(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)  # a shared file must not be able to run code
        except (ValueError, EOFError) as exc:
            raise DescbenchError(
                f"cannot read descriptor file {path} ({exc}): it must be a numeric (N, dim) array saved "
                "with numpy.save (no object arrays or pickles); write it again") from exc
        if not isinstance(arr, np.ndarray):
            raise DescbenchError(f"{path} is an archive of several arrays (.npz?), not one (N, dim) array")
        if arr.dtype.kind not in "fiu":
            raise DescbenchError(f"{path} holds {arr.dtype} values; descriptor files must hold real numbers "
                                 "(float32 preferred)")
    else:
        try:
            arr = pd.read_csv(path, header=None, sep=_sniff_delimiter(path)).to_numpy(dtype=np.float32)
        except UnicodeDecodeError as exc:
            raise DescbenchError(f"cannot read descriptor file {path}: it is not text ({exc}); a .csv file "
                                 "must hold numbers separated by ',' or ';'") from exc
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DescbenchError(f"cannot read descriptor file {path} ({exc}); it must hold numbers "
                                 "separated by ',' or ';' (check the delimiter)") from exc
    if arr.ndim != 2:
        raise DescbenchError(f"{path}: expected a 2-D table (patches x dims), got shape {arr.shape}")
    if arr.shape[1] == 1:
        raise DescbenchError(
            f"{path} has a single column: the delimiter is probably wrong (use ',' or ';')")
    with np.errstate(over="ignore", invalid="ignore"):  # too large for float32: Inf, reported below
        arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise DescbenchError(f"{path} contains NaN or Inf (or values beyond float32); fix the descriptor "
                             "that wrote it")
    return arr


def descriptor_files(path: str | os.PathLike) -> dict[str, list[Path]]:
    """The 16 files ``<path>/<seq>/<type>.csv|.npy`` (in ``IMAGE_TYPES`` order) of every sequence
    folder, by sequence name; a missing folder or file is a clear error."""
    path = Path(path)
    if not path.is_dir():
        raise DescbenchError(f"descriptor folder {path} does not exist")
    seq_dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not seq_dirs:
        raise DescbenchError(f"{path} has no sequence folders (<seq>/<type>.csv)")
    files = {}
    for seq_dir in seq_dirs:
        found = []
        for image_type in IMAGE_TYPES:
            candidates = [seq_dir / f"{image_type}.csv", seq_dir / f"{image_type}.npy"]
            hit = [c for c in candidates if c.is_file()]
            if not hit:
                raise DescbenchError(f"missing descriptor file {candidates[0]} (or .npy); every sequence "
                                     f"needs the 16 files {', '.join(IMAGE_TYPES)}")
            found.append(hit[0])
        files[seq_dir.name] = found
    return files


def write_descriptor_dir(path: str | os.PathLike, descriptors: Mapping[str, np.ndarray],
                         fmt: str = "csv", delimiter: str = ",") -> None:
    """Write the official layout ``<path>/<seq>/<type>.csv`` (or ``.npy``), one row per patch."""
    if fmt not in ("csv", "npy"):
        raise DescbenchError(f"unknown descriptor file format {fmt!r}; use csv or npy")
    path = Path(path)
    for name, stack in progress(descriptors.items(), desc="write descriptors", unit="seq", logger=log):
        for image_type, table in zip(IMAGE_TYPES, stack):
            target = path / name / f"{image_type}.{fmt}"
            if fmt == "npy":
                save_npy(target, np.asarray(table, dtype=np.float32))
            else:
                # %.9g round-trips float32 exactly
                with atomic_path(target) as tmp:
                    np.savetxt(tmp, table, delimiter=delimiter, fmt="%.9g")

