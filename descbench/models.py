"""Trained-model files: a plain dict of tensors plus JSON-able metadata.

Loaded with ``torch.load(weights_only=True)``, so a shared model file cannot run code.
"""

from __future__ import annotations

import json
import os
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


def load_model(path: str | os.PathLike) -> tuple[torch.nn.Module, registry.Descriptor, dict[str, Any]]:
    """The network (in eval mode, on CPU), its registered descriptor and the saved metadata."""
    path = Path(path)
    if not path.is_file():
        raise DescbenchError(f"model file {path} does not exist; train one with `descbench train`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DescbenchError(f"{path} is not a descbench model file ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise DescbenchError(f"{path} is not a descbench model file (format {FORMAT_VERSION})")
    desc = registry.get(payload["method"])
    if not desc.learned:
        raise DescbenchError(f"{path} names {desc.name!r}, which is not a learned descriptor")
    net = desc.network()
    try:
        net.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise DescbenchError(f"{path}: weights do not fit {desc.name!r}'s network: {exc}") from exc
    net.eval()
    return net, desc, json.loads(payload["meta_json"])
