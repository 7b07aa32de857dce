"""``descbench report``: tables, statistics and figures from a results directory (the workflow's last step)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from descbench.errors import DescbenchError


def register(subparsers) -> None:
    """Add ``descbench report`` to the ``descbench`` parser."""
    p = subparsers.add_parser(
        "report", help="write tables, statistics and figures from the workflow's score files",
        description="Read every score and training file the workflow wrote under --results (layout: "
                    "descbench.report.layout) for the methods, sets and seeds of the workflow config, "
                    "and write tables/ (LaTeX, Markdown, CSV), stats/tests.csv and figures/ (PDF, PNG) "
                    "under --out.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="the workflow config file (YAML or JSON)")
    source.add_argument("--config-json", help="the workflow config as a JSON string (used by the "
                                              "Snakefile, which passes its merged config)")
    p.add_argument("--results", type=Path, default=None,
                   help="the workflow's results directory (default: the config's results_dir, else "
                        "results)")
    p.add_argument("--out", type=Path, default=None, help="where to write (default: --results)")
    p.set_defaults(func=_report)
    m = subparsers.add_parser(
        "manifest", help="list files with their size and SHA-256 (the report rule's input per stage)",
        description="Write a tab-separated manifest (path, bytes, sha256) of FILES to --out. The workflow "
                    "writes one per stage (training, UBC scores, HPatches scores, released scores) and "
                    "the report rule depends on those few manifests instead of on every score file, so "
                    "Snakemake's reason for rerunning the report stays readable; the manifests also "
                    "record exactly which files a report was built from.")
    m.add_argument("--out", type=Path, required=True, help="the manifest to write (.tsv)")
    m.add_argument("files", type=Path, nargs="*", metavar="FILE", help="the files to list")
    m.set_defaults(func=_manifest)


def _load_config(args: argparse.Namespace) -> dict:
    if args.config_json is not None:
        try:
            return json.loads(args.config_json)
        except json.JSONDecodeError as exc:
            raise DescbenchError(f"--config-json is not valid JSON: {exc}") from exc
    import yaml

    if not args.config.is_file():
        raise DescbenchError(f"config file {args.config} does not exist; pass the workflow config, "
                             "e.g. config/config.yaml")
    cfg = yaml.safe_load(args.config.read_text())
    if not isinstance(cfg, dict):
        raise DescbenchError(f"{args.config} does not hold a mapping of config keys")
    return cfg


def _report(args: argparse.Namespace) -> int:
    from descbench.report.build import build_report

    cfg = _load_config(args)
    results = args.results if args.results is not None else Path(cfg.get("results_dir", "results"))
    out = args.out if args.out is not None else results
    written = build_report(cfg, results, out)
    for table in sorted(p for p in written if p.suffix == ".md"):
        print(table.read_text())
    print(f"wrote {len(written)} files under {out}")
    return 0


def _manifest(args: argparse.Namespace) -> int:
    import hashlib

    from descbench.fileio import write_text

    lines = ["path\tbytes\tsha256"]
    for path in args.files:
        if not path.is_file():
            raise DescbenchError(f"{path} is missing; the manifest lists files the workflow made, so run "
                                 "the rule that makes it first")
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        lines.append(f"{path}\t{path.stat().st_size}\t{digest.hexdigest()}")
    write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}: {len(args.files)} files")
    return 0
