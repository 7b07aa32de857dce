"""The ``descbench`` command line: download | prepare | make-mini | train | evaluate | export | report | list.

Each area of the engine adds its own sub-commands through a ``register(subparsers)`` function in its
``commands`` module; this file only wires them together and turns the errors a user meets into one
clean line and an exit status (``--debug`` shows the traceback instead):

- ``DescbenchError`` (bad data, config, descriptor): its message, exit 2;
- ``OSError`` (read-only folder, disk full, no permission, missing file): the path and what the
  system said, exit 2;
- ``KeyboardInterrupt`` (Ctrl-C): what was kept (partial downloads, checkpoints), exit 130.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from pathlib import Path

from descbench import __version__
from descbench.errors import DescbenchError

COMMAND_MODULES = (
    "descbench.data.commands",
    "descbench.train.commands",
    "descbench.evaluate.commands",
    "descbench.report.commands",
)


EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def _list(args: argparse.Namespace) -> int:
    """Every descriptor that loaded; broken plug-in modules are reported at the end (exit 2)."""
    from descbench import registry

    found = registry.discovery()
    for name, desc in sorted(found.descriptors.items()):
        kind = "released" if desc.released is not None else "learned" if desc.learned else "handcrafted"
        extra = f", continues {desc.init_from}" if desc.init_from else ""
        print(f"{name:28s} {kind:11s} {desc.dim:4d}-D  {desc.patch_size}px{extra}  {desc.citation}")
    for problem in found.errors:
        print(f"descbench list: error: {problem}", file=sys.stderr)
    return EXIT_ERROR if found.errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="descbench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"descbench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    p = sub.add_parser("list", help="list every registered descriptor with its citation")
    p.set_defaults(func=_list)
    return parser


_OS_HINTS = {
    errno.EACCES: "check its permissions or choose another location",
    errno.EPERM: "check its permissions or choose another location",
    errno.EROFS: "the file system is read-only: choose a writable location",
    errno.ENOSPC: "the disk is full: free some space or choose another location",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "it is a folder where a file was expected: check the path",
    errno.EEXIST: "remove it or choose another name",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n)",
}
if hasattr(errno, "EDQUOT"):
    _OS_HINTS[errno.EDQUOT] = "the disk quota is exceeded: free some space or choose another location"


def describe_os_error(exc: OSError) -> str:
    """One line naming the path(s), the errno name and its meaning, and a hint: what the CLI prints."""
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    code = exc.errno
    name = errno.errorcode.get(code, "") if isinstance(code, int) else ""
    meaning = exc.strerror or (os.strerror(code) if isinstance(code, int) else "") or str(exc) \
        or type(exc).__name__
    where = " -> ".join(paths) if paths else type(exc).__name__  # e.g. a network error
    hint = _OS_HINTS.get(code)
    return f"{where}: {meaning}{f' [{name}]' if name else ''}" + (f"; {hint}" if hint else "")


def _interrupted_note(args: argparse.Namespace) -> str:
    """What an interrupted command leaves behind, in the user's terms."""
    if args.command == "download":
        root = getattr(args, "root", None)
        archives = Path(root) / "raw" / "archives" if root is not None else Path("DATA/raw/archives")
        return (f"partial downloads are kept in {archives} as hidden .<file>.<id>.part files (with a .json "
                "note of their URL) and resume when you run the same `descbench download` again; nothing "
                "unverified or half-unpacked was put under its final name")
    if args.command == "train":
        out = getattr(args, "out", None)
        checkpoint = Path(out) / "checkpoint.pt" if out is not None else Path("OUT/checkpoint.pt")
        if checkpoint.is_file():
            return (f"the last checkpoint {checkpoint} is kept: run the same command with --resume to "
                    "continue from it")
        return "no checkpoint was written yet: run the command again to start over"
    return ("every output is written under a temporary name and renamed when complete, so nothing "
            "half-written was left under its final name; run the command again")


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()  # imports every area's commands module
    except KeyboardInterrupt:
        print("\ndescbench: interrupted (Ctrl-C) before any work started", file=sys.stderr)
        return EXIT_INTERRUPTED
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except DescbenchError as exc:
        if args.debug:
            raise
        print(f"descbench {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        if args.debug:
            raise
        print(f"descbench {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"\ndescbench {args.command}: interrupted (Ctrl-C); {_interrupted_note(args)}",
              file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
