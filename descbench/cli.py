"""The ``descbench`` command line: download | prepare | make-mini | train | evaluate | export | report | list.

Each area of the engine adds its own sub-commands through a ``register(subparsers)`` function in its
``commands`` module; this file only wires them together and turns the errors a user meets into one
clean line and an exit status (``--debug`` shows the traceback instead):

- ``DescbenchError`` (bad data, config, descriptor): its message, exit 2;
- ``OSError`` (read-only folder, disk full, no permission, missing file): the path and what the
  system said, exit 2;
- ``KeyboardInterrupt`` (Ctrl-C): what was kept (partial downloads, checkpoints), exit 130.

``--log FILE`` sends everything the command prints (its progress, the library warnings) into FILE and
still writes the error to the console: the workflow's rules use it, so a failing job says why on the
console, not only in its log file.
"""

from __future__ import annotations

import argparse
import contextlib
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


DESCRIPTION = ("descbench: download, prepare, train, evaluate and report learned local patch descriptors. "
               "The data folder is --data DATA in every command, the output folder --out DIR.")
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def _list(args: argparse.Namespace) -> int:
    """Every descriptor that loaded; broken plug-in modules are reported at the end (exit 2)."""
    from descbench import registry

    found = registry.discovery()
    rows = []
    for name, desc in sorted(found.descriptors.items()):
        kind = "released" if desc.released is not None else "learned" if desc.learned else "handcrafted"
        extra = f", continues {desc.init_from}" if desc.init_from else ""
        rows.append((name, kind, f"{desc.dim}-D", f"{desc.patch_size}px{extra}", desc.citation))
    widths = [max(len(row[i]) for row in rows) for i in range(4)] if rows else []
    for row in rows:  # columns as wide as their longest entry, so a long name never shifts the others
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4])
    for problem in found.errors:
        print(f"descbench list: error: {problem}", file=sys.stderr)
    return EXIT_ERROR if found.errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="descbench", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"descbench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--log", type=Path, metavar="FILE",
                        help="write the command's output and messages to FILE (replacing it); an error is "
                             "written there and to the console")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    p = sub.add_parser("list", help="list every registered descriptor with its citation",
                       description="Every registered descriptor (built-in and plug-ins): name, kind (learned, "
                                   "handcrafted, released weights), dimension, input patch size and citation. "
                                   "Use a name with --method (train) or --descriptor (evaluate, export).")
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
        data = getattr(args, "data", None)
        archives = Path(data) / "raw" / "archives" if data is not None else Path("DATA/raw/archives")
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
    if args.log is None:
        return _run(args, console=None)
    try:
        log = _open_log(args.log)
    except OSError as exc:
        print(f"descbench {args.command}: error: --log {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_ERROR
    with log, _output_to(log) as console:
        return _run(args, console)


def _open_log(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "wb")


@contextlib.contextmanager
def _output_to(log):
    """Send file descriptors 1 and 2 (Python's prints, logging, C libraries, child processes) into the open
    file ``log``; yield a function that writes to the console's stderr as it was before."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)
        yield lambda text: os.write(saved[2], text.encode(errors="replace"))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


def _run(args: argparse.Namespace, console) -> int:
    """Run the command; an error goes to stderr and, under --log, also to ``console`` (the real stderr)."""
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")

    def report(message: str) -> None:
        print(message, file=sys.stderr)
        if console is not None:
            sys.stderr.flush()
            console(f"{message}\n(the command's full output is in {args.log})\n")

    try:
        return int(args.func(args) or 0)
    except DescbenchError as exc:
        if args.debug:
            raise
        report(f"descbench {args.command}: error: {exc}")
        return EXIT_ERROR
    except OSError as exc:
        if args.debug:
            raise
        report(f"descbench {args.command}: error: {describe_os_error(exc)}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        if args.debug:
            raise
        report(f"\ndescbench {args.command}: interrupted (Ctrl-C); {_interrupted_note(args)}")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
