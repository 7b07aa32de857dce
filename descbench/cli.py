"""The ``descbench`` command line: download | prepare | make-mini | train | evaluate | export | report | list.

Each area of the engine adds its own sub-commands through a ``register(subparsers)`` function in its
``commands`` module; this file only wires them together and turns ``DescbenchError`` into a clean
message and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from descbench import __version__
from descbench.errors import DescbenchError

COMMAND_MODULES = (
    "descbench.data.commands",
    "descbench.train.commands",
    "descbench.evaluate.commands",
    "descbench.report.commands",
)


def _list(args: argparse.Namespace) -> int:
    from descbench import registry

    for name, desc in sorted(registry.all_descriptors().items()):
        kind = "learned" if desc.learned else "handcrafted"
        extra = f", continues {desc.init_from}" if desc.init_from else ""
        print(f"{name:28s} {kind:11s} {desc.dim:4d}-D  {desc.patch_size}px{extra}  {desc.citation}")
    return 0


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except DescbenchError as exc:
        if args.debug:
            raise
        print(f"descbench {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
