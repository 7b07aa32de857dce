"""Descriptor plug-ins: the ``Descriptor`` type and discovery.

A plug-in is a module in the ``descriptors`` package (the ``descriptors/`` folder of this repository)
or any installed package exposing the entry-point group ``descbench.descriptors``. A module declares
its descriptors in a module-level list ``DESCRIPTORS``; an entry point may point at such a module, at
one ``Descriptor`` or at a list of them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import pkgutil
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

import numpy as np

from descbench.errors import DescbenchError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "descbench.descriptors"


@dataclass(frozen=True)
class Descriptor:
    """One descriptor: handcrafted (``describe``) or learned (``network`` + ``recipe``).

    ``describe(patches)`` maps uint8 patches (N, H, W) of any side to float32 (N, dim); it resizes to
    ``patch_size`` itself. ``network()`` builds an ``nn.Module`` mapping float (B, 1, s, s) with
    s = ``patch_size`` to L2-normalised (B, dim). ``recipe`` is the ``TrainRecipe`` with the paper's
    values; ``init_from`` names the method whose trained model this one continues from (annealing).
    """

    name: str
    citation: str
    patch_size: int
    dim: int
    describe: Callable[[np.ndarray], np.ndarray] | None = None
    network: Callable[[], Any] | None = None
    recipe: Any = None
    init_from: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if (self.describe is None) == (self.network is None):
            raise DescbenchError(
                f"descriptor {self.name!r}: give exactly one of describe= (handcrafted) or "
                "network= (learned)"
            )

    @property
    def learned(self) -> bool:
        return self.network is not None


def _descriptors_of(obj: Any, origin: str) -> list[Descriptor]:
    if isinstance(obj, ModuleType):
        obj = getattr(obj, "DESCRIPTORS", None)
        if obj is None:
            raise DescbenchError(f"plug-in {origin} has no module-level DESCRIPTORS list; add one")
    if isinstance(obj, Descriptor):
        return [obj]
    if isinstance(obj, (list, tuple)) and all(isinstance(d, Descriptor) for d in obj):
        return list(obj)
    raise DescbenchError(
        f"plug-in {origin} must provide a Descriptor or a list of them, got {type(obj).__name__}"
    )


def _builtin_modules() -> list[tuple[str, ModuleType]]:
    import descriptors

    found = []
    for info in sorted(pkgutil.iter_modules(descriptors.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        name = f"descriptors.{info.name}"
        found.append((f"module {name}", importlib.import_module(name)))
    return found


def _entry_point_objects() -> list[tuple[str, Any]]:
    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {ep.name!r} ({ep.value})"
        try:
            found.append((origin, ep.load()))
        except Exception as exc:  # a broken third-party plug-in must not hide the others
            raise DescbenchError(f"could not load {origin}: {exc}") from exc
    return found


def discover() -> dict[str, Descriptor]:
    """Every registered descriptor by name; duplicate names are an error naming both origins."""
    registry: dict[str, Descriptor] = {}
    origins: dict[str, str] = {}
    for origin, obj in _builtin_modules() + _entry_point_objects():
        for desc in _descriptors_of(obj, origin):
            if desc.name in registry:
                raise DescbenchError(
                    f"descriptor name {desc.name!r} is registered twice: by {origins[desc.name]} "
                    f"and by {origin}; rename one of them"
                )
            registry[desc.name] = desc
            origins[desc.name] = origin
    return registry


_CACHE: dict[str, Descriptor] | None = None


def all_descriptors() -> dict[str, Descriptor]:
    global _CACHE
    if _CACHE is None:
        _CACHE = discover()
    return _CACHE


def get(name: str) -> Descriptor:
    """The descriptor called ``name``; an unknown name is an error listing the known ones."""
    known = all_descriptors()
    if name not in known:
        raise DescbenchError(
            f"unknown descriptor {name!r}; known descriptors: {', '.join(sorted(known))}"
        )
    return known[name]
