"""``descbench evaluate ubc|hpatches`` and ``descbench export``."""

from __future__ import annotations

import argparse
from pathlib import Path

from descbench.errors import DescbenchError

DEFAULT_DATA = Path("data")
UBC_RESULT_FILES = ("pairs.csv", "summary.json")


def _add_source(parser: argparse.ArgumentParser, allow_files: bool) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--descriptor", metavar="NAME", help="registered descriptor (descbench list)")
    source.add_argument("--model", metavar="PATH", help="trained model file (descbench train)")
    if allow_files:
        source.add_argument("--descriptors", metavar="DIR", type=Path,
                            help="descriptor files <DIR>/<seq>/<type>.csv (',' or ';') or .npy")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"data root with the prepared arrays (default {DEFAULT_DATA})")
    parser.add_argument("--batch-size", type=int, default=512, help="patches per batch (default 512)")
    parser.add_argument("--interpolation", default="linear", choices=("linear", "area", "cubic", "nearest"),
                        help="cv2.resize interpolation to a network's input side (default linear)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--weights", type=Path, metavar="DIR", default=None,
                        help="folder of released weights for a NAME@SET descriptor (default DATA/weights; "
                             "descbench download weights)")


def _add_overlap_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-train-overlap", action="store_true",
                        help="score released weights even on data they were trained on (refused otherwise)")


def _released(args: argparse.Namespace):
    """The ``descbench.weights.Release`` of ``--descriptor``, or None."""
    if getattr(args, "descriptor", None) is None:
        return None
    from descbench import registry

    return registry.get(args.descriptor).released


def _weights_dir(args: argparse.Namespace) -> Path:
    from descbench import weights

    return args.weights if args.weights is not None else weights.weights_dir_for(args.data)


def _note_release(summary: dict, release, overlap: str | None) -> None:
    summary["released"] = {"name": release.name, "source": release.pin, "licence": release.licence,
                           "train_data": release.train_data}
    if overlap:
        summary["train_overlap"] = overlap


def _extractor(args: argparse.Namespace):
    import torch

    from descbench.evaluate.extract import make_extractor

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return make_extractor(args.descriptor, args.model, weights_dir=_weights_dir(args), batch_size=args.batch_size,
                          interpolation=args.interpolation, device=device)


def _source_name(args: argparse.Namespace, extractor=None) -> str:
    if getattr(args, "descriptors", None) is not None:
        return Path(args.descriptors).name
    if args.model is not None:
        return f"{extractor.name}:{args.model}"
    return args.descriptor


def _default_out(kind: str, args: argparse.Namespace, what: str) -> Path:
    name = args.descriptor or (Path(args.model).parent.name if args.model else Path(args.descriptors).name)
    return Path("results") / "adhoc" / kind / name / what


def _prepare_out(out: Path, result_files: tuple[str, ...], kind: str) -> Path:
    """Before any work starts: ``out`` holds nothing but an earlier result set, and it can be replaced
    (a staging folder renamed into place), so a bad ``--out`` fails in seconds, not after the work."""
    from descbench.evaluate.hpatches import check_replaceable
    from descbench.fileio import check_writable

    check_replaceable(out, result_files, kind)
    check_writable(out, option="--out", replace=True)
    return out


def _evaluate_ubc(args: argparse.Namespace) -> int:
    from descbench.data.ubc import load_ubc
    from descbench.evaluate.hpatches import write_result_set
    from descbench.evaluate.ubc import evaluate_ubc

    out = _prepare_out(args.out or _default_out("ubc", args, args.test_set), UBC_RESULT_FILES, "UBC")
    release = _released(args)
    if release is not None:
        from descbench import weights

        overlap = weights.check_evaluation(release, ubc_test_set=args.test_set, allow=args.allow_train_overlap)
    ubc_set = load_ubc(args.data, args.test_set)
    if getattr(args, "descriptors", None) is not None:
        from descbench.evaluate.ubc import (
            evaluate_ubc_descriptors,
            load_ubc_descriptors,
        )

        table, summary = evaluate_ubc_descriptors(
            load_ubc_descriptors(args.descriptors, len(ubc_set.patches), args.test_set), ubc_set,
            args.test_set, args.convention, Path(args.descriptors).stem)
        summary["descriptor"] = _source_name(args)
    else:
        extractor = _extractor(args)
        table, summary = evaluate_ubc(extractor, ubc_set, args.test_set, args.convention)
        summary["descriptor"] = _source_name(args, extractor)
    if release is not None:
        _note_release(summary, release, overlap)
    write_result_set(out, {"pairs": table}, summary, UBC_RESULT_FILES, "UBC")
    print(f"UBC {args.test_set}: FPR95 = {100 * summary['fpr95']:.2f} % "
          f"({summary['descriptor']}, {args.convention} convention, {summary['n_pairs']} pairs) -> {out}")
    return 0


def _hpatches_descriptors(args: argparse.Namespace, sequences_needed: list[str] | None):
    from descbench.data.hpatches import load_sequences
    from descbench.evaluate import extract

    stacks = load_sequences(args.data)
    if sequences_needed is not None:
        stacks = {name: stacks[name] for name in sequences_needed if name in stacks}
    extractor = _extractor(args)
    return extract.describe_sequences(extractor, stacks), _source_name(args, extractor)


def _evaluate_hpatches(args: argparse.Namespace) -> int:
    from descbench.data.hpatches import tasks_dir
    from descbench.evaluate import hpatches
    from descbench.evaluate import tasks as taskfiles

    convention = hpatches.convention_for(args.convention, args.distance)
    task_dir = tasks_dir(args.data)
    splits = taskfiles.load_splits(task_dir)
    split = taskfiles.get_split(splits, args.split, str(taskfiles.splits_path(task_dir)))
    selected = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in selected if t not in hpatches.TASKS]
    if unknown or not selected:
        raise DescbenchError(f"--tasks {args.tasks!r}: use a comma list of {', '.join(hpatches.TASKS)}")
    out = _prepare_out(args.out or _default_out("hpatches", args, args.split), hpatches.RESULT_FILES,
                       "HPatches")
    release = _released(args)
    if release is not None:
        from descbench import weights

        overlap = weights.check_evaluation(release, hpatches_sequences=split["test"], splits=splits,
                                           allow=args.allow_train_overlap)
    if args.descriptors is not None:  # N from the files, checked against the task files: no patch stacks
        desc = hpatches.HPatchesDescriptors.from_dir(
            args.descriptors, hpatches.task_lengths(task_dir, split["name"], selected))
        name = Path(args.descriptors).name
    else:
        needed = list(split["test"]) if convention.name == "python" else None
        per_sequence, name = _hpatches_descriptors(args, needed)
        desc = hpatches.HPatchesDescriptors(per_sequence)
        del per_sequence
    device = None if args.device in ("auto", "cpu") else args.device
    if args.device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else None
    results, summary = hpatches.evaluate(desc, task_dir, args.split, convention, selected, device=device)
    summary["descriptor"] = name
    if release is not None:
        _note_release(summary, release, overlap)
    hpatches.write_results(out, results, summary)
    print(hpatches.format_summary(summary))
    print(f"-> {out}")
    return 0


def _check_export_out(out: Path) -> None:
    """``out`` is absent, empty or an earlier export (sequence folders of descriptor files only)."""
    from descbench.evaluate.extract import IMAGE_TYPES

    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise DescbenchError(f"--out {out} exists and is not a folder; choose a folder for the descriptors")
    names = {f"{t}.{ext}" for t in IMAGE_TYPES for ext in ("csv", "npy")}
    foreign = sorted(p.name for p in out.iterdir() if not p.is_dir() or p.is_symlink()
                     or any(f.name not in names or not f.is_file() for f in p.iterdir()))
    if foreign:
        raise DescbenchError(
            f"--out {out} holds files that are not exported descriptors ({', '.join(foreign[:5])}"
            f"{' …' if len(foreign) > 5 else ''}); the export replaces the whole folder, so choose a new "
            "or empty folder")


def _export(args: argparse.Namespace) -> int:
    from descbench.evaluate import extract
    from descbench.fileio import atomic_dir, check_writable

    _check_export_out(args.out)
    check_writable(args.out, option="--out", replace=True)
    per_sequence, _ = _hpatches_descriptors(args, None)
    with atomic_dir(args.out) as staging:  # all sequences or none: a partial export would look finished
        extract.write_descriptor_dir(staging, per_sequence, fmt=args.format, delimiter=args.delimiter)
    print(f"wrote descriptors of {len(per_sequence)} sequences to {args.out}")
    return 0


def register(subparsers) -> None:
    """Add ``evaluate ubc``, ``evaluate hpatches`` and ``export`` to the ``descbench`` parser."""
    evaluate = subparsers.add_parser("evaluate", help="score a descriptor on UBC PhotoTour or HPatches")
    sub = evaluate.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")

    ubc = sub.add_parser("ubc", help="FPR95 on the 100K pairs of a UBC test set")
    _add_source(ubc, allow_files=True)
    for action in ubc._actions:
        if action.dest == "descriptors":
            action.help = ("one descriptor file (.npy, or .csv with ',' or ';'): one row per patch of the "
                           "test set, in the set's order")
    ubc.add_argument("--test-set", default="notredame", help="prepared UBC set (default notredame)")
    ubc.add_argument("--convention", default="hardnet", choices=("hardnet", "hynet"),
                     help="FPR95 threshold convention (default hardnet)")
    ubc.add_argument("--out", type=Path, default=None,
                     help="output folder for pairs.csv and summary.json (default results/adhoc/ubc/...); "
                          "written as a whole, replacing an earlier result set there")
    _add_overlap_flag(ubc)
    ubc.set_defaults(func=_evaluate_ubc)

    hp = sub.add_parser("hpatches", help="HPatches verification, matching and retrieval")
    _add_source(hp, allow_files=True)
    hp.add_argument("--split", default="full", help="a, b, c, illum, view or full (default full)")
    hp.add_argument("--convention", default="python", choices=("python", "matlab"),
                    help="official python benchmark (default) or the MATLAB one")
    hp.add_argument("--distance", default="L2", choices=("L2", "L1"))
    hp.add_argument("--tasks", default="verification,matching,retrieval",
                    help="comma list of tasks (default all three)")
    hp.add_argument("--out", type=Path, default=None,
                    help="output folder for the tidy csvs and summary.json (default results/adhoc/hpatches/...); "
                         "written as a whole, replacing an earlier result set there")
    _add_overlap_flag(hp)
    hp.set_defaults(func=_evaluate_hpatches)
    _register_evaluate_sequences(sub)

    export = subparsers.add_parser(
        "export", help="write HPatches descriptors in the official layout <out>/<seq>/<type>.csv")
    _add_source(export, allow_files=False)
    export.add_argument("--out", type=Path, required=True, help="output folder")
    export.add_argument("--format", default="csv", choices=("csv", "npy"))
    export.add_argument("--delimiter", default=",", choices=(",", ";"))
    export.set_defaults(func=_export, descriptors=None)



# ------------------------------------------------------------------------------- HPatches sequences

def _register_evaluate_sequences(sub) -> None:
    from descbench.evaluate.sequences import MAX_KEYPOINTS

    seq = sub.add_parser(
        "hpatches-sequences", help="image matching on the HPatches full-image sequences (MMA, homography accuracy)",
        description="SIFT keypoints (the same for every descriptor), patches cut at their scale and orientation, "
                    "mutual nearest-neighbour matching from image 1 to images 2-6; writes pairs.csv (one row per "
                    "image pair) and summary.json (docs/protocols.md §5).")
    _add_source(seq, allow_files=False)
    seq.add_argument("--subset", default="d2net", choices=("d2net", "full"),
                     help="d2net: the 108 sequences of D2-Net's benchmark (8 high-resolution ones left out; "
                          "default); full: all 116")
    seq.add_argument("--max-keypoints", type=int, default=MAX_KEYPOINTS,
                     help=f"keypoints per image, the strongest SIFT responses (default {MAX_KEYPOINTS})")
    seq.add_argument("--out", type=Path, default=None,
                     help="output folder for pairs.csv and summary.json (default results/adhoc/hpatches-sequences/"
                          "...); written as a whole, replacing an earlier result set there")
    _add_overlap_flag(seq)
    seq.set_defaults(func=_evaluate_sequences, descriptors=None)


def _evaluate_sequences(args: argparse.Namespace) -> int:
    from descbench.data.hpatches_sequences import load_sequences
    from descbench.evaluate import sequences
    from descbench.evaluate.hpatches import write_result_set

    if args.max_keypoints < 1:
        raise DescbenchError(f"--max-keypoints must be >= 1, got {args.max_keypoints}")
    out = _prepare_out(args.out or _default_out("hpatches-sequences", args, args.subset), sequences.RESULT_FILES,
                       "HPatches sequences")
    data = load_sequences(args.data, args.subset)
    release = _released(args)
    if release is not None:
        from descbench import weights

        overlap = weights.check_evaluation(release, hpatches_sequences=[s.name for s in data],
                                           allow=args.allow_train_overlap)
    extractor = _extractor(args)
    pairs = sequences.evaluate(extractor, data, args.max_keypoints)
    summary = sequences.summarise(pairs)
    summary.update(descriptor=_source_name(args, extractor), subset=args.subset, max_keypoints=args.max_keypoints,
                   magnification=sequences.MAGNIFICATION, patch_size=extractor.descriptor.patch_size,
                   ransac_threshold=sequences.RANSAC_THRESHOLD)
    if release is not None:
        _note_release(summary, release, overlap)
    write_result_set(out, {"pairs": pairs}, summary, sequences.RESULT_FILES, "HPatches sequences")
    print(sequences.format_summary(summary))
    print(f"-> {out}")
    return 0
