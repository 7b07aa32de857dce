"""Sub-commands of the data area: ``descbench download`` (UBC PhotoTour, HPatches, HPatches task files,
released descriptor weights),
``descbench prepare`` (original formats -> memory-mappable arrays) and ``descbench make-mini`` (offline data)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from descbench.fileio import check_writable
from descbench.options import add_data_option


def register(subparsers) -> None:
    """Add this area's sub-commands to the ``descbench`` parser."""
    _register_download(subparsers)
    _register_prepare(subparsers)
    _register_make_mini(subparsers)


# -------------------------------------------------------------------------------------------- download

def _register_download(subparsers) -> None:
    parser = subparsers.add_parser(
        "download", help="download, verify and unpack UBC PhotoTour, HPatches and the HPatches task files",
        description="Download the published data into DATA/raw/ (archives in DATA/raw/archives/), verify every "
                    "file, unpack it safely and check its content. Reruns verify instead of downloading again; "
                    "an interrupted download resumes.")
    datasets = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")

    ubc = datasets.add_parser("ubc", help="UBC PhotoTour sets -> DATA/raw/ubc/<set>/")
    ubc.add_argument("sets", nargs="*", metavar="SET",
                     help="liberty, notredame, yosemite (default: all three)")
    _add_common_arguments(ubc, pin_help="NAME is a set name, e.g. liberty=<64 hex digits>")
    ubc.set_defaults(func=_with_offline_hint(_download_ubc))

    hpatches = datasets.add_parser("hpatches", help="HPatches patch release -> DATA/raw/hpatches-release/<seq>/")
    _add_common_arguments(hpatches, pin_help="NAME is hpatches-release")
    hpatches.set_defaults(func=_with_offline_hint(_download_hpatches))

    tasks = datasets.add_parser("hpatches-tasks",
                                help="official HPatches task files -> DATA/raw/hpatches-tasks/ (splits.json + csvs)")
    _add_common_arguments(tasks, pin_help=None)
    tasks.set_defaults(func=_with_offline_hint(_download_hpatches_tasks))

    weights = datasets.add_parser(
        "weights", help="released descriptor weights -> DATA/weights/<name>/ (all when no NAME is given)",
        description="Download the authors' released checkpoints at pinned commits (the authors' repository "
                    "first, then other copies of the same git blob and the Hugging Face copy), verify each file "
                    "by its git blob id and/or SHA-256, and keep it in DATA/weights/<name>/ (or --weights-dir). "
                    "Nothing is loaded or run. With --from-dir and no NAME, every release whose files are in "
                    "DIR is taken. `descbench download weights --list` describes every release.")
    weights.add_argument("names", nargs="*", metavar="NAME",
                         help="release names or shell patterns, e.g. hardnet-plus@liberty 'sosnet@*' "
                              "(default: all)")
    add_data_option(weights, "data folder; the weights go to DATA/weights/ unless --weights-dir is given",
                    required=False, old_names=("--root",))
    weights.add_argument("--weights-dir", type=Path, metavar="DIR",
                         help="where the releases go (default DATA/weights; the evaluation reads them there)")
    weights.add_argument("--from-dir", type=Path, metavar="DIR",
                         help="use weight files you already have (searched by their published file name in DIR "
                              "and its subfolders) instead of the network; they are verified the same way")
    weights.add_argument("--expect-sha256", action="append", default=[], metavar="NAME=HEX",
                         help="pin a file's SHA-256 (takes precedence over the catalogue's pins); NAME is a "
                              "release name (its checkpoint) or NAME/FILE for another of its files")
    weights.add_argument("--list", action="store_true",
                         help="describe every release (files, pins, format, training data, licence) and exit")
    weights.set_defaults(func=_download_weights)
    _register_download_sequences(datasets)


def _add_common_arguments(parser: argparse.ArgumentParser, pin_help: str | None) -> None:
    add_data_option(parser, "data folder (e.g. data): archives go to DATA/raw/archives/, unpacked files to "
                            "DATA/raw/", old_names=("--root",))
    parser.add_argument("--from-dir", type=Path, metavar="DIR",
                        help="use files you already have (searched by name in DIR and its subfolders) "
                             "instead of the network; they are verified the same way")
    if pin_help:
        parser.add_argument("--expect-sha256", action="append", default=[], metavar="NAME=HEX",
                            help="pin an archive's SHA-256 (takes precedence over the catalogue's checksum); "
                                 + pin_help)


OFFLINE_HINT = ("For an offline run use the mini preset: snakemake --cores all --configfile config/mini.yaml "
                "(or `descbench make-mini --data DATA`). In the workflow, data.from_dir in the config passes "
                "--from-dir for files you already have.")


def _with_offline_hint(command):
    """``command``, whose failure to reach every mirror also says how to run without the network."""
    def run(args: argparse.Namespace) -> int:
        from descbench.data.download import MirrorsFailedError
        from descbench.errors import DescbenchError

        try:
            return command(args)
        except MirrorsFailedError as exc:
            raise DescbenchError(f"{exc}\n{OFFLINE_HINT}") from exc
    return run


def _parse_pins(pins: list[str], names: dict[str, str]) -> dict[str, str]:
    """``NAME=HEX`` options -> {dataset name: sha256}; ``names`` maps accepted names (dataset or archive file
    name) to the dataset name."""
    from descbench.errors import DescbenchError

    parsed = {}
    for pin in pins:
        name, _, digest = pin.partition("=")
        if name not in names:
            raise DescbenchError(f"--expect-sha256 {pin}: unknown name {name!r}; use one of {', '.join(sorted(names))}")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise DescbenchError(f"--expect-sha256 {pin}: {digest!r} is not a SHA-256 (64 hex digits)")
        parsed[names[name]] = digest.lower()
    return parsed


def _print_result(result) -> None:
    state = "already present, verified" if result.reused else "done"
    print(f"{result.name}: {result.folder} ({result.summary}; {state})")
    for fetched in result.files:
        if not fetched.pinned:
            print(f"  {fetched.path.name}: sha256 {fetched.sha256} ({fetched.verified_by}; from {fetched.origin})\n"
                  f"  no checksum is published for it: pin it in later runs with "
                  f"--expect-sha256 {result.name}={fetched.sha256}")
        elif len(result.files) == 1:
            print(f"  {fetched.path.name}: sha256 {fetched.sha256} ({fetched.verified_by}; from {fetched.origin})")


def _download_ubc(args: argparse.Namespace) -> int:
    from descbench.data import download, sources
    from descbench.errors import DescbenchError

    check_writable(Path(args.data) / "raw", option="--data")
    catalogue = sources.CATALOGUE.ubc
    unknown = [s for s in args.sets if s not in catalogue]
    if unknown:
        raise DescbenchError(f"unknown UBC set(s) {', '.join(unknown)}; choose from {', '.join(catalogue)}")
    names = {name: name for name in catalogue}
    names.update({f: name for name, s in catalogue.items() for f in s.archive.filenames})
    pins = _parse_pins(args.expect_sha256, names)
    for name in dict.fromkeys(args.sets or catalogue):
        _print_result(download.download_ubc_set(catalogue[name], args.data, expect_sha256=pins.get(name),
                                                from_dir=args.from_dir))
    return 0


def _download_hpatches(args: argparse.Namespace) -> int:
    from descbench.data import download, sources

    check_writable(Path(args.data) / "raw", option="--data")
    archive = sources.CATALOGUE.hpatches.archive
    pins = _parse_pins(args.expect_sha256, {archive.name: archive.name, **{f: archive.name for f in archive.filenames}})
    _print_result(download.download_hpatches(sources.CATALOGUE.hpatches, args.data,
                                             expect_sha256=pins.get(archive.name), from_dir=args.from_dir))
    return 0


def _download_hpatches_tasks(args: argparse.Namespace) -> int:
    from descbench.data import download, sources

    check_writable(Path(args.data) / "raw", option="--data")
    _print_result(download.download_hpatches_tasks(sources.CATALOGUE.hpatches_tasks, args.data,
                                                   from_dir=args.from_dir))
    return 0


def _weights_dir(args: argparse.Namespace) -> Path:
    from descbench import weights
    from descbench.errors import DescbenchError

    if args.weights_dir is not None:
        return args.weights_dir
    if args.data is None:
        raise DescbenchError("give --data DATA (weights go to DATA/weights/) or --weights-dir DIR")
    return weights.weights_dir_for(args.data)


def _weight_pins(pins: list[str], releases) -> dict[str, dict[str, str]]:
    """``NAME=HEX`` / ``NAME/FILE=HEX`` options -> {release name: {file name: sha256}}."""
    from descbench.errors import DescbenchError

    known = {r.name: r for r in releases}
    parsed: dict[str, dict[str, str]] = {}
    for pin in pins:
        name, _, digest = pin.partition("=")
        release_name, _, filename = name.partition("/")
        release = known.get(release_name)
        if release is None:
            raise DescbenchError(f"--expect-sha256 {pin}: {release_name!r} is not among the releases to download "
                                 f"({', '.join(known) or 'none'})")
        names = [f.filename for f in release.files]
        filename = filename or release.file("weights").filename
        if filename not in names:
            raise DescbenchError(f"--expect-sha256 {pin}: {release_name} has no file {filename!r}; its files: "
                                 f"{', '.join(names)}")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise DescbenchError(f"--expect-sha256 {pin}: {digest!r} is not a SHA-256 (64 hex digits)")
        parsed.setdefault(release_name, {})[filename] = digest.lower()
    return parsed


def _describe_release(release) -> str:
    lines = [f"{release.name}: {release.method}, {release.dim}-D{'' if release.unit_norm else ' (not unit-norm)'}, "
             f"{release.pin}, licence: {release.licence}",
             f"  trained on: {release.train_data}"
             + ("" if release.hpatches_overlap in ("none",) else f" [HPatches: {release.hpatches_overlap}]"),
             f"  format: {release.layout}",
             f"  preprocessing: {release.preprocessing}"]
    for f in release.files:
        pins = "; ".join(f"{c.algorithm} {c.value}" for c in f.checksums)
        lines.append(f"  {f.role}: {f.filename} ({f.format}) from {f.source}; {pins}")
    for p in release.published:
        lines.append(f"  published: {p.describe()}")
    if release.notes:
        lines.append(f"  note: {release.notes}")
    return "\n".join(lines)


def _download_weights(args: argparse.Namespace) -> int:
    from descbench import weights
    from descbench.errors import DescbenchError

    releases = weights.select(args.names)
    if args.list:
        for release in releases:
            print(_describe_release(release))
        if not args.names:
            for refused in weights.REFUSED.values():
                print(f"{refused.name}: refused: {refused.reason}. Instead: {refused.alternative}")
        return 0
    folder = _weights_dir(args)
    pins = _weight_pins(args.expect_sha256, releases)
    if args.from_dir is not None and not args.names:
        releases, problems = weights.scan_dir(releases, args.from_dir,
                                              {f: h for per in pins.values() for f, h in per.items()})
        if problems:
            raise DescbenchError("--from-dir " + str(args.from_dir) + ": files that match no pin:\n  "
                                 + "\n  ".join(problems))
        if not releases:
            raise DescbenchError(f"--from-dir {args.from_dir}: no complete release in it (files are found by "
                                 "their published names; `descbench download weights --list` names them)")
    for release in releases:
        result = weights.download_release(release, folder, from_dir=args.from_dir,
                                          expect_sha256=pins.get(release.name))
        state = "already present, verified" if result.reused else "done"
        print(f"{release.name}: {result.folder} ({len(result.files)} file{'s' * (len(result.files) > 1)}; {state})")
        for fetched in result.files:
            print(f"  {fetched.path.name}: sha256 {fetched.sha256} ({fetched.verified_by}; from {fetched.origin})")
    return 0


# --------------------------------------------------------------------------------------------- prepare

def _register_prepare(subparsers) -> None:
    parser = subparsers.add_parser(
        "prepare", help="convert the original UBC / HPatches files under DATA/raw/ into memory-mappable arrays",
        description="Read the original formats (UBC BMP tiles + info.txt + m50 pair files; HPatches PNG stacks + "
                    "task files) from DATA/raw/, check them, and write DATA/ubc/<set>/ or DATA/hpatches/. "
                    "An output folder appears only when it is complete.")
    datasets = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    ubc = datasets.add_parser("ubc", help="DATA/raw/ubc/<set>/ -> DATA/ubc/<set>/{patches,labels,pairs_100k}.npy")
    ubc.add_argument("sets", nargs="*", metavar="SET",
                     help="set names (default: every folder in DATA/raw/ubc/ that has an info.txt)")
    add_data_option(ubc, "data folder (e.g. data): reads DATA/raw/ubc/, writes DATA/ubc/", old_names=("--root",))
    ubc.set_defaults(func=_prepare_ubc)
    hpatches = datasets.add_parser("hpatches", help="DATA/raw/hpatches-release/ + hpatches-tasks/ -> DATA/hpatches/")
    add_data_option(hpatches, "data folder (e.g. data): reads DATA/raw/hpatches-release/ and "
                              "DATA/raw/hpatches-tasks/, writes DATA/hpatches/", old_names=("--root",))
    hpatches.set_defaults(func=_prepare_hpatches)
    _register_prepare_sequences(datasets)


def _prepare_ubc(args: argparse.Namespace) -> int:
    from descbench.data import ubc
    from descbench.errors import DescbenchError

    sets = args.sets or ubc.raw_sets(args.data)
    if not sets:
        raise DescbenchError(f"no UBC sets in {args.data / 'raw' / 'ubc'} (folders with an info.txt); run "
                             f"`descbench download ubc --data {args.data}` or `descbench make-mini --data {args.data}`")
    for name in sets:
        meta = ubc.prepare_ubc(args.data, name)
        print(f"{name}: {meta['n_patches']} patches, {meta['n_points']} 3D points, {meta['n_pairs']} pairs "
              f"({meta['n_matches']} matching) from {meta['pairs_file']} -> {ubc.prepared_set_dir(args.data, name)}/")
    return 0


def _prepare_hpatches(args: argparse.Namespace) -> int:
    from descbench.data import hpatches

    meta = hpatches.prepare_hpatches(args.data)
    counts = meta["sequences"].values()
    print(f"hpatches: {meta['n_sequences']} sequences ({meta['n_illumination']} i_, {meta['n_viewpoint']} v_), "
          f"{meta['n_patches']} patches per image type (N {min(counts)}..{max(counts)}), "
          f"{len(meta['task_files'])} task files -> {hpatches.prepared_dir(args.data)}/")
    return 0


# ------------------------------------------------------------------------------------------- make-mini

def _register_make_mini(subparsers) -> None:
    parser = subparsers.add_parser(
        "make-mini", help="generate the offline mini datasets (UBC-, HPatches- and HPatches-sequences-like) in "
                          "the original formats",
        description="Make small UBC-like sets (mini_liberty, mini_notredame, mini_yosemite), HPatches-like "
                    "sequences with task files and a few full-image sequences with their homographies from "
                    "photographs shipped by scikit-image, written under DATA/raw/ in the original on-disk formats; "
                    "then run `descbench prepare ubc|hpatches|hpatches-sequences --data DATA`. "
                    "The same seed gives byte-identical files.")
    add_data_option(parser, "data folder to write (e.g. data/mini): the files go under DATA/raw/",
                    old_names=("--out",))
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed of the generated patches and pairs (default 0)")
    parser.set_defaults(func=_make_mini)


def _make_mini(args: argparse.Namespace) -> int:
    import time

    from descbench.data import hpatches_sequences, mini

    check_writable(args.data, option="--data")
    start = time.perf_counter()
    made = mini.make_mini(args.data, seed=args.seed)
    seconds = time.perf_counter() - start
    raw = args.data / "raw"
    for name, info in made.record["ubc"].items():
        print(f"{name}: {info['patches']} patches, {info['points']} 3D points, pairs {info['pairs_file']} "
              f"-> {raw / 'ubc' / name}/")
    counts = [info["patches"] for info in made.record["hpatches"].values()]
    print(f"hpatches: {len(counts)} sequences, N {min(counts)}..{max(counts)} ({sum(counts)} patches per image "
          f"type) -> {raw / 'hpatches-release'}/; "
          f"splits {', '.join(made.splits)} and task files -> {raw / 'hpatches-tasks'}/")
    sequences = made.record["hpatches_sequences"]
    n_illum = sum(hpatches_sequences.category(name) == "i" for name in sequences)
    sizes = ", ".join(sorted({f"{w}x{h}" for w, h in (info["size"] for info in sequences.values())}))
    print(f"hpatches-sequences: {len(sequences)} sequences ({n_illum} i_, {len(sequences) - n_illum} v_), {sizes}, "
          f"{hpatches_sequences.N_IMAGES} images + {len(hpatches_sequences.HOMOGRAPHY_NAMES)} homographies each "
          f"-> {hpatches_sequences.raw_dir(args.data)}/")
    print(f"made in {seconds:.1f} s (seed {args.seed}); next: descbench prepare ubc --data {args.data} && "
          f"descbench prepare hpatches --data {args.data} && descbench prepare hpatches-sequences --data {args.data}")
    return 0


# ------------------------------------------------------------------------------- HPatches sequences

def _register_download_sequences(datasets) -> None:
    parser = datasets.add_parser(
        "hpatches-sequences", help="HPatches full-image sequences -> DATA/raw/hpatches-sequences-release/<seq>/",
        description="The 116 full-image sequences (1.ppm..6.ppm and H_1_2..H_1_6 each), for the image-matching "
                    "evaluation; verified, unpacked safely and checked like the patch release.")
    add_data_option(parser, "data folder (e.g. data): writes DATA/raw/hpatches-sequences-release/")
    parser.add_argument("--from-dir", type=Path, metavar="DIR",
                        help="use the archive you already have (hpatches-sequences-release.zip or .tar.gz, "
                             "searched in DIR and its subfolders) instead of the network; verified the same way")
    parser.add_argument("--expect-sha256", action="append", default=[], metavar="NAME=HEX",
                        help="pin the archive's SHA-256; NAME is hpatches-sequences-release or its file name")
    parser.set_defaults(func=_download_sequences)


def _download_sequences(args: argparse.Namespace) -> int:
    from descbench.data import hpatches_sequences, sources

    check_writable(Path(args.data) / "raw", option="--data")
    source = sources.CATALOGUE.hpatches_sequences
    archive = source.archive
    pins = _parse_pins(args.expect_sha256, {archive.name: archive.name, **{f: archive.name for f in archive.filenames}})
    _print_result(hpatches_sequences.download_sequences(source, args.data, expect_sha256=pins.get(archive.name),
                                                        from_dir=args.from_dir))
    return 0


def _register_prepare_sequences(datasets) -> None:
    parser = datasets.add_parser(
        "hpatches-sequences", help="DATA/raw/hpatches-sequences-release/ -> DATA/hpatches-sequences/ "
                                   "(grey images and homographies as arrays)")
    add_data_option(parser, "data folder (e.g. data): reads DATA/raw/hpatches-sequences-release/, writes "
                            "DATA/hpatches-sequences/")
    parser.set_defaults(func=_prepare_sequences)


def _prepare_sequences(args: argparse.Namespace) -> int:
    from descbench.data import hpatches_sequences

    meta = hpatches_sequences.prepare_sequences(args.data)
    print(f"hpatches-sequences: {meta['n_sequences']} sequences ({meta['n_illumination']} i_, "
          f"{meta['n_viewpoint']} v_) -> {hpatches_sequences.prepared_dir(args.data)}/")
    return 0


# ----------------------------------------------------------------------------- prepared sets, for the others

def prepared_ubc_sets(data: Path) -> list[str]:
    """The UBC sets prepared under DATA/ubc/: folders with the arrays `descbench prepare ubc` writes."""
    from descbench.data.ubc import prepared_set_dir

    folder = Path(data) / "ubc"
    names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    return [n for n in names if all((prepared_set_dir(data, n) / f"{array}.npy").is_file()
                                    for array in ("patches", "labels", "pairs_100k"))]


def require_prepared_ubc(data: Path, name: str | None, option: str) -> None:
    """``name`` is a prepared UBC set of ``data`` (with None: some set is); else an error that lists the
    prepared sets and says how to prepare one."""
    from descbench.errors import DescbenchError

    prepared = prepared_ubc_sets(data)
    if name in prepared or (name is None and prepared):
        return
    if not prepared:
        raise DescbenchError(f"no UBC set is prepared in {Path(data) / 'ubc'}: run `descbench prepare ubc --data "
                             f"{data}` after `descbench download ubc --data {data}` (or `descbench make-mini "
                             f"--data {data}` for the offline mini sets)")
    raise DescbenchError(f"{option} {name}: no prepared UBC set of that name in {Path(data) / 'ubc'}; prepared: "
                         f"{', '.join(prepared)}. Use one of them, or run `descbench prepare ubc {name} --data "
                         f"{data}` first")
