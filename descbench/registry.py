"""Descriptor plug-ins: the ``Descriptor`` type and discovery.

A plug-in is a module in the ``descriptors`` package (the ``descriptors/`` folder of this repository)
or any installed package exposing the entry-point group ``descbench.descriptors``. A module declares
its descriptors in a module-level list ``DESCRIPTORS``; an entry point may point at such a module, at
one ``Descriptor`` or at a list of them.

A module of ``descriptors/`` that cannot be imported (or declares invalid descriptors) is an error that
names its file: ``descbench list`` lists the others and reports it at the end, every other command
(``all_descriptors``, ``get``) refuses to run with that message. An installed entry-point plug-in that
fails to load is skipped with a warning naming its package, so it never hides the others.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import logging
import numbers
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

import numpy as np

from descbench.errors import DescbenchError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "descbench.descriptors"


def _defined_in(fn: Any) -> str | None:
    """The source file of a plug-in's function (or class), if Python knows it."""
    try:
        return inspect.getsourcefile(fn) or inspect.getfile(fn)
    except (TypeError, OSError):
        return None


@dataclass(frozen=True)
class Descriptor:
    """One descriptor: handcrafted (``describe``) or learned (``network`` + ``recipe``).

    ``describe(patches)`` maps uint8 patches (N, H, W) of any side to float32 (N, dim); it resizes to
    ``patch_size`` itself. ``network()`` builds an ``nn.Module`` mapping float (B, 1, s, s) with
    s = ``patch_size`` to L2-normalised (B, dim). ``recipe`` is the ``TrainRecipe`` with the paper's
    values; ``init_from`` names the method whose trained model this one continues from (annealing).
    ``released`` is set for the authors' released weights (a ``descbench.weights.Release``): such a
    descriptor has no recipe, and ``network()`` loads the verified weights from the weights folder.
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
    released: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise DescbenchError(f"descriptor name must be a non-empty string, got {self.name!r}"
                                 f"{self._where()}")
        if (self.describe is None) == (self.network is None):
            raise DescbenchError(
                f"descriptor {self.name!r}: give exactly one of describe= (handcrafted) or "
                f"network= (learned){self._where()}"
            )
        fn = self.describe if self.describe is not None else self.network
        if not callable(fn):
            raise DescbenchError(f"descriptor {self.name!r}: describe=/network= must be callable, got "
                                 f"{type(fn).__name__}{self._where()}")
        for attr in ("dim", "patch_size"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
                raise DescbenchError(
                    f"descriptor {self.name!r}: {attr} must be a positive integer, got {value!r}"
                    f"{self._where()}; fix its registration")
            object.__setattr__(self, attr, int(value))

    def _where(self) -> str:
        fn = self.describe if self.describe is not None else self.network
        path = _defined_in(fn) if fn is not None else None
        return f" (defined in {path})" if path else ""

    @property
    def defined_in(self) -> str:
        """Where the plug-in lives, for error messages: the module file (or entry point) that registered
        it, else the file of its describe/network function; "" if unknown."""
        if _CACHE is not None and _CACHE.descriptors.get(self.name) is self:
            origin = _CACHE.origins[self.name]
            return _module_file(origin[len("module "):]) if origin.startswith("module ") else origin
        fn = self.describe if self.describe is not None else self.network
        return _defined_in(fn) or ""

    @property
    def label(self) -> str:
        """``'name' (path/to/module.py)``: how error messages name the plug-in."""
        where = self.defined_in
        return f"{self.name!r} ({where})" if where else repr(self.name)

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


def _exception_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _module_file(name: str) -> str:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    return spec.origin if spec is not None and spec.origin else name.replace(".", "/") + ".py"


def _builtin_modules() -> tuple[list[tuple[str, list[Descriptor]]], list[str]]:
    """(origin, descriptors) of every module in ``descriptors/`` and one error line per broken one."""
    import descriptors

    found, errors = [], []
    for info in sorted(pkgutil.iter_modules(descriptors.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        name = f"descriptors.{info.name}"
        origin = f"module {name}"
        try:
            found.append((origin, _descriptors_of(importlib.import_module(name), origin)))
        except (Exception, SystemExit) as exc:  # a syntax error, a missing dependency, a bad Descriptor
            path = _module_file(name)
            errors.append(f"descriptor plug-in {path} is broken and was not loaded: {_exception_text(exc)}"
                          f" (fix or remove {path}; `descbench --debug list` shows the traceback)")
            log.debug("plug-in %s failed to import", path, exc_info=True)
    return found, errors


def _entry_point_objects() -> list[tuple[str, list[Descriptor]]]:
    """(origin, descriptors) of every installed entry-point plug-in that loads; the others are skipped
    with a warning naming their package."""
    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        package = getattr(dist, "name", None) or ep.value.split(":")[0].split(".")[0]
        origin = f"entry point {ep.name!r} ({ep.value})"
        try:
            found.append((origin, _descriptors_of(ep.load(), origin)))
        except (Exception, SystemExit) as exc:  # a broken third-party plug-in must not hide the others
            log.warning("skipped descriptor plug-in %s of package %r, which failed to load: %s "
                        "(reinstall or uninstall %s)", origin, package, _exception_text(exc), package)
            log.debug("entry point %s failed to load", origin, exc_info=True)
    return found


@dataclass(frozen=True)
class Discovery:
    """What discovery found: descriptors by name, where each came from, and the errors (broken modules
    of ``descriptors/``, names registered twice) that make the registry unusable until fixed."""

    descriptors: dict[str, Descriptor] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    errors: tuple[str, ...] = ()

    def check(self) -> dict[str, Descriptor]:
        """The descriptors, or a ``DescbenchError`` with every problem (one per line)."""
        if self.errors:
            raise DescbenchError("\n".join(self.errors))
        return self.descriptors


def scan() -> Discovery:
    """Look at every plug-in without stopping at the first broken one."""
    builtin, errors = _builtin_modules()
    registry: dict[str, Descriptor] = {}
    origins: dict[str, str] = {}
    for origin, descs in builtin + _entry_point_objects():
        for desc in descs:
            if desc.name in registry:
                errors.append(
                    f"descriptor name {desc.name!r} is registered twice: by {origins[desc.name]} "
                    f"and by {origin}; rename one of them"
                )
                continue
            registry[desc.name] = desc
            origins[desc.name] = origin
    return Discovery(registry, origins, tuple(errors))


def discover() -> dict[str, Descriptor]:
    """Every registered descriptor by name; a broken module of ``descriptors/`` or a duplicate name is
    an error naming the file or both origins."""
    return scan().check()


_CACHE: Discovery | None = None


def discovery() -> Discovery:
    """The (cached) result of ``scan``, errors included: ``descbench list`` shows both."""
    global _CACHE
    if _CACHE is None:
        _CACHE = scan()
    return _CACHE


def all_descriptors() -> dict[str, Descriptor]:
    return discovery().check()


def get(name: str) -> Descriptor:
    """The descriptor called ``name``; an unknown name is an error listing the known ones."""
    known = all_descriptors()
    if name not in known:
        raise DescbenchError(
            f"unknown descriptor {name!r}; known descriptors: {', '.join(sorted(known))}"
        )
    return known[name]
