"""Command-line options every ``descbench`` command spells the same way.

``--data DATA`` is the data folder (raw files under DATA/raw, prepared arrays under DATA/ubc and
DATA/hpatches) in every command, and ``--out DIR`` the output folder. Spellings of earlier releases
(``--root`` for download and prepare, ``--out`` for make-mini's data folder, ``--descriptors`` for the
descriptor-file folder) still work for one release, but help no longer shows them.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_data_option(parser: argparse.ArgumentParser, help: str, *, required: bool = True,
                    default: Path | None = None, old_names: tuple[str, ...] = ()) -> None:
    """``--data DATA`` (dest ``data``), with the hidden ``old_names`` as aliases of it."""
    if not old_names:
        parser.add_argument("--data", type=Path, metavar="DATA", default=default, required=required, help=help)
        return
    target = parser.add_mutually_exclusive_group(required=required)  # the alias stands in for --data
    target.add_argument("--data", type=Path, metavar="DATA", default=default, help=help)
    for name in old_names:
        target.add_argument(name, dest="data", type=Path, metavar="DATA", help=argparse.SUPPRESS)
