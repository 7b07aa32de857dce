"""Trained-model files: a plain dict of tensors plus JSON-able metadata.

Loaded with ``torch.load(weights_only=True)``, so a shared model file cannot run code.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from descbench import registry
from descbench.errors import DescbenchError
from descbench.fileio import atomic_path

FORMAT_VERSION = 1


def save_model(path: str | os.PathLike, method: str, state_dict: dict[str, torch.Tensor],
               meta: dict[str, Any]) -> None:
    """Write ``model.pt``: ``method`` names the registered descriptor whose ``network()`` fits."""
    payload = {
        "format_version": FORMAT_VERSION,
        "method": method,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "meta_json": json.dumps(meta, sort_keys=True, default=str),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _read_payload(path: Path) -> dict[str, Any]:
    """The validated dict of ``path``: every problem is a ``DescbenchError`` naming the file."""
    size = path.stat().st_size
    if size == 0:
        raise DescbenchError(f"model file {path} is empty (0 bytes): an interrupted copy or save; copy it "
                             "again or retrain with `descbench train`")
    if not zipfile.is_zipfile(path):
        raise DescbenchError(
            f"model file {path} ({size:,} bytes) is not a torch zip archive: it is truncated (an "
            "interrupted copy) or another kind of file; copy it again or retrain with `descbench train`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # damaged archive, or objects weights_only refuses to unpickle
        raise DescbenchError(f"{path} is not a readable descbench model file "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                             "copy it again or retrain with `descbench train`") from exc
    fix = "it was not written by `descbench train` (or was edited); retrain or use the original file"
    if not isinstance(payload, dict):
        raise DescbenchError(f"{path} is not a descbench model file: it holds a {type(payload).__name__}, "
                             f"not a dict; {fix}")
    if payload.get("format_version") != FORMAT_VERSION:
        raise DescbenchError(f"{path} is not a descbench model file (format {FORMAT_VERSION}): its "
                             f"format_version is {payload.get('format_version')!r}; {fix}")
    missing = [k for k in ("method", "state_dict", "meta_json") if k not in payload]
    if missing:
        raise DescbenchError(f"{path} lacks the entries {', '.join(missing)} of a descbench model file; {fix}")
    if not isinstance(payload["method"], str):
        raise DescbenchError(f"{path}: 'method' must be a descriptor name (a string), got "
                             f"{type(payload['method']).__name__}; {fix}")
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        kind = type(state).__name__ if not isinstance(state, dict) else "a dict with non-tensor entries"
        raise DescbenchError(f"{path}: 'state_dict' must be a dict of named tensors, got {kind}; {fix}")
    if not isinstance(payload["meta_json"], str):
        raise DescbenchError(f"{path}: 'meta_json' must be a JSON string, got "
                             f"{type(payload['meta_json']).__name__}; {fix}")
    try:
        meta = json.loads(payload["meta_json"])
    except ValueError as exc:
        raise DescbenchError(f"{path}: 'meta_json' is not valid JSON ({exc}); {fix}") from exc
    if not isinstance(meta, dict):
        raise DescbenchError(f"{path}: 'meta_json' must hold a JSON object, got {type(meta).__name__}; {fix}")
    payload["meta"] = meta
    return payload


def _check_weights(path: Path, method: str, state: dict[str, torch.Tensor],
                   expected: dict[str, torch.Tensor]) -> None:
    """Names and shapes are load_state_dict's job; dtypes and finiteness are checked here, since
    ``load_state_dict`` silently casts int64 weights into float parameters."""
    for key, tensor in state.items():
        want = expected.get(key)
        if want is None:
            continue
        if tensor.is_floating_point() != want.is_floating_point() or tensor.is_complex() != want.is_complex():
            raise DescbenchError(f"{path}: weight {key!r} is {tensor.dtype} but the network of {method!r} "
                                 f"needs {want.dtype}; the file is damaged or not a model of {method!r}")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise DescbenchError(f"{path}: weight {key!r} contains NaN or Inf (a diverged training run?); "
                                 "retrain, e.g. with a lower learning rate")


def load_model(path: str | os.PathLike) -> tuple[torch.nn.Module, registry.Descriptor, dict[str, Any]]:
    """The network (in eval mode, on CPU), its registered descriptor and the saved metadata."""
    path = Path(path)
    if not path.is_file():
        raise DescbenchError(f"model file {path} does not exist; train one with `descbench train`")
    payload = _read_payload(path)
    method = payload["method"]
    known = registry.all_descriptors()
    if method not in known:
        raise DescbenchError(f"{path} is a model of {method!r}, which is not a registered descriptor "
                             f"(known: {', '.join(sorted(known))}); install or restore its plug-in")
    desc = known[method]
    if not desc.learned:
        raise DescbenchError(f"{path} names {desc.name!r}, which is not a learned descriptor")
    net = desc.network()
    _check_weights(path, desc.name, payload["state_dict"], net.state_dict())
    try:
        net.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise DescbenchError(f"{path}: weights do not fit {desc.name!r}'s network: {exc}") from exc
    net.eval()
    return net, desc, payload["meta"]
