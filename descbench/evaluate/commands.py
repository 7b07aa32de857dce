"""``descbench evaluate ubc|hpatches`` and ``descbench export``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from descbench.errors import DescbenchError
from descbench.evaluate.defaults import MAX_KEYPOINTS
from descbench.options import add_data_option

log = logging.getLogger(__name__)

DEFAULT_DATA = Path("data")
ADHOC_RESULTS = Path("results") / "adhoc"
UBC_RESULT_FILES = ("pairs.csv", "revisited.csv", "summary.json")
DEVICE_HELP = "where networks run: auto (CUDA when present, the default), cpu or cuda"


def _add_source(parser: argparse.ArgumentParser, files_help: str | None) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--descriptor", metavar="NAME", help="registered descriptor (descbench list)")
    source.add_argument("--model", metavar="PATH", help="trained model file (descbench train)")
    if files_help:
        source.add_argument("--descriptor-files", metavar="PATH", type=Path, help=files_help)
        source.add_argument("--descriptors", dest="descriptor_files", type=Path, help=argparse.SUPPRESS)
    add_data_option(parser, f"data folder with the prepared arrays (default {DEFAULT_DATA})", required=False,
                    default=DEFAULT_DATA)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="patches per batch (default 32 on the CPU, 512 on a GPU)")
    parser.add_argument("--interpolation", default="linear", choices=("linear", "area", "cubic", "nearest"),
                        help="cv2.resize interpolation to a network's input side (default linear)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help=DEVICE_HELP)
    parser.add_argument("--weights", type=Path, metavar="DIR", default=None,
                        help="folder of released weights for a NAME@SET descriptor (default DATA/weights; "
                             "descbench download weights)")


def _add_result_options(parser: argparse.ArgumentParser, what: str, default: str) -> None:
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help=f"output folder for {what} (default {default}); written as a whole, "
                             "replacing an earlier result set of the same descriptor or model there")
    parser.add_argument("--force", action="store_true",
                        help="replace a result folder that holds another descriptor's or model's results")
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


# --------------------------------------------------------------- what produced a result, and where it goes

def _source(args: argparse.Namespace) -> dict:
    """What the scores come from, as recorded in summary.json's ``source``: a registered descriptor, a
    model (its method, train set, seed and scale from model.pt's metadata) or a descriptor file/folder."""
    if getattr(args, "descriptor_files", None) is not None:
        return {"kind": "descriptor files", "path": str(Path(args.descriptor_files).resolve())}
    if args.model is not None:
        from descbench.models import load_model

        _, desc, meta = load_model(args.model)
        return {"kind": "model", "method": desc.name, "train_set": meta.get("train_set"),
                "seed": meta.get("seed"), "scale": meta.get("scale"), "path": str(args.model)}
    return {"kind": "descriptor", "name": args.descriptor}


def _label(args: argparse.Namespace, source: dict) -> str:
    """The ``descriptor`` entry of summary.json (and the report's row name)."""
    if source["kind"] == "descriptor files":
        return Path(args.descriptor_files).name
    if source["kind"] == "model":
        return f"{source['method']}:{args.model}"
    return args.descriptor


def _identity(source: dict) -> dict:
    """What must agree for a run to replace an earlier result set: a model's file may move or be retrained
    (the workflow re-evaluates it in place), its method, train set, seed and scale may not change."""
    return {k: v for k, v in source.items() if not (source["kind"] == "model" and k == "path")}


def _describe(source: dict) -> str:
    if source["kind"] == "model":
        return (f"model {source['method']} trained on {source['train_set']}, seed {source['seed']}, "
                f"{source['scale']} scale ({source['path']})")
    if source["kind"] == "descriptor":
        return f"descriptor {source['name']}"
    return f"descriptor files {source['path']}"


def _default_out(kind: str, source: dict, what: str) -> Path:
    """results/adhoc/<kind>/<descriptor>/<what>, or .../<method>/<train set>/seed<seed>/<what> for a model."""
    if source["kind"] == "model":
        parts = [source["method"]] + [str(v) for v in (source["train_set"],) if v is not None]
        parts += [f"seed{source['seed']}"] if source["seed"] is not None else []
    elif source["kind"] == "descriptor":
        parts = [source["name"]]
    else:
        parts = [Path(source["path"]).name]
    return ADHOC_RESULTS.joinpath(kind, *parts, what)


def _check_same_source(out: Path, source: dict, label: str, kind: str, force: bool) -> None:
    """Refuse to replace the results of another descriptor or model (unless ``force``): an ad-hoc run must
    not silently overwrite an earlier one that happened to get the same folder."""
    summary_path = out / "summary.json"
    if force or not summary_path.is_file():
        return
    try:
        previous = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        return  # not a readable result set: check_replaceable decides about the folder
    before = previous.get("source") if isinstance(previous, dict) else None
    if isinstance(before, dict) and "kind" in before:
        if _identity(before) == _identity(source):
            return
        what_before = _describe(before)
    else:  # written before results recorded their source
        if not isinstance(previous, dict) or previous.get("descriptor") in (None, label):
            return
        what_before = f"{previous['descriptor']}"
    raise DescbenchError(f"--out {out} holds the {kind} results of {what_before}; this run evaluates "
                         f"{_describe(source)}. Choose another --out, or pass --force to replace them")


def _prepare_out(out: Path, result_files: tuple[str, ...], kind: str, source: dict, label: str,
                 force: bool) -> Path:
    """Before any work starts: ``out`` holds nothing but an earlier result set of the same source, and it
    can be replaced (a staging folder renamed into place), so a bad ``--out`` fails in seconds, not after
    the work."""
    from descbench.evaluate.hpatches import check_replaceable
    from descbench.fileio import check_writable

    check_replaceable(out, result_files, kind)
    _check_same_source(out, source, label, kind, force)
    check_writable(out, option="--out", replace=True)
    return out


# ------------------------------------------------------------------------------------------ evaluate ubc

def _ubc_test_sets(args: argparse.Namespace, source: dict) -> list[str]:
    """--test-set, or every prepared set the descriptor was not trained on."""
    from descbench.data.commands import prepared_ubc_sets, require_prepared_ubc

    if args.test_set is not None:
        return [args.test_set]
    prepared = prepared_ubc_sets(args.data)
    if source["kind"] == "descriptor files":
        raise DescbenchError(f"--descriptor-files describes one UBC set: name it with --test-set (prepared in "
                             f"{args.data / 'ubc'}: {', '.join(prepared) or 'none'})")
    release = _released(args)
    if source["kind"] == "model":
        sets = [s for s in prepared if s != source["train_set"]]
        excluded = f"its train set {source['train_set']}"
    elif release is not None:
        from descbench import weights

        sets = weights.ubc_test_sets(release, prepared)
        excluded = f"its training data ({', '.join(release.trained_on)})"
    else:
        sets, excluded = prepared, None
    if not sets:
        require_prepared_ubc(args.data, None, "--test-set")  # names the fix when nothing is prepared
        raise DescbenchError(f"no prepared UBC set in {args.data / 'ubc'} to test on besides {excluded} "
                             f"(prepared: {', '.join(prepared)}); prepare another set, or pass --test-set")
    return sets


def _evaluate_ubc(args: argparse.Namespace) -> int:
    from descbench.data.commands import require_prepared_ubc
    from descbench.data.ubc import load_ubc
    from descbench.evaluate.hpatches import write_result_set
    from descbench.evaluate.ubc import evaluate_ubc, select_metrics

    source = _source(args)
    label = _label(args, source)
    test_sets = _ubc_test_sets(args, source)
    several = args.test_set is None and len(test_sets) > 1
    outs = {t: (args.out / t if several else args.out) if args.out is not None
            else _default_out("ubc", source, t) for t in test_sets}
    for test_set, out in outs.items():
        _prepare_out(out, UBC_RESULT_FILES, "UBC", source, label, args.force)
    release = _released(args)
    overlap = {}
    if release is not None:
        from descbench import weights

        for test_set in test_sets:
            overlap[test_set] = weights.check_evaluation(release, ubc_test_set=test_set,
                                                         allow=args.allow_train_overlap)
    if args.test_set is not None:  # after the overlap check: a refused release reads no data
        require_prepared_ubc(args.data, args.test_set, "--test-set")
    if source["kind"] == "model" and source["train_set"] in test_sets:
        log.warning("%s was trained on %s: its FPR95 there measures how well it fits its training data, not "
                    "how it generalises (the paper tests on the other sets)", args.model, source["train_set"])
    extractor = _extractor(args) if source["kind"] != "descriptor files" else None
    for test_set, out in outs.items():
        ubc_set = load_ubc(args.data, test_set)
        metrics, image_ids, skipped = select_metrics(args.metric, args.data, test_set, len(ubc_set.patches))
        if extractor is None:
            from descbench.evaluate.ubc import evaluate_ubc_descriptors, load_ubc_descriptors

            tables, summary = evaluate_ubc_descriptors(
                load_ubc_descriptors(args.descriptor_files, len(ubc_set.patches), test_set), ubc_set,
                test_set, args.convention, Path(args.descriptor_files).stem, metrics, image_ids, skipped)
        else:
            tables, summary = evaluate_ubc(extractor, ubc_set, test_set, args.convention, metrics, image_ids,
                                           skipped)
        summary["descriptor"] = label
        summary["source"] = source
        if release is not None:
            _note_release(summary, release, overlap[test_set])
        write_result_set(out, tables, summary, UBC_RESULT_FILES, "UBC")
        if "fpr95" in metrics:
            print(f"UBC {test_set}: FPR95 = {100 * summary['fpr95']:.2f} % "
                  f"({summary['descriptor']}, {args.convention} convention, {summary['n_pairs']} pairs) -> {out}")
        if "revisited-map" in metrics:
            rev = summary["revisited"]
            print(f"UBC {test_set}: revisited mAP = {100 * summary['revisited_map']:.2f} % "
                  f"({summary['descriptor']}, {rev['protocol']}, {rev['n_images']} images, "
                  f"{rev['n_pairs']} anchor-positive pairs) -> {out}")
        elif skipped:
            print(f"UBC {test_set}: revisited mAP not computed: {skipped}")
    return 0


# ------------------------------------------------------------------------------------- evaluate hpatches

def _hpatches_descriptors(args: argparse.Namespace, sequences_needed: list[str] | None):
    from descbench.data.hpatches import load_sequences
    from descbench.evaluate import extract

    stacks = load_sequences(args.data)
    if sequences_needed is not None:
        stacks = {name: stacks[name] for name in sequences_needed if name in stacks}
    return extract.describe_sequences(_extractor(args), stacks)


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
    source = _source(args)
    label = _label(args, source)
    out = _prepare_out(args.out or _default_out("hpatches", source, args.split), hpatches.RESULT_FILES,
                       "HPatches", source, label, args.force)
    release = _released(args)
    if release is not None:
        from descbench import weights

        overlap = weights.check_evaluation(release, hpatches_sequences=split["test"], splits=splits,
                                           allow=args.allow_train_overlap)
    files = taskfiles.read_task_files(task_dir, split["name"], selected)
    if args.descriptor_files is not None:  # N from the files, checked against the task files: no patch stacks
        desc = hpatches.HPatchesDescriptors.from_dir(args.descriptor_files, hpatches.task_lengths(files))
    else:
        needed = list(split["test"]) if convention.name == "python" else None
        per_sequence = _hpatches_descriptors(args, needed)
        desc = hpatches.HPatchesDescriptors(per_sequence)
        del per_sequence
    device = None if args.device in ("auto", "cpu") else args.device
    if args.device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else None
    results, summary = hpatches.evaluate(desc, task_dir, args.split, convention, selected, device=device,
                                         files=files)
    summary["descriptor"] = label
    summary["source"] = source
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
    per_sequence = _hpatches_descriptors(args, None)
    with atomic_dir(args.out) as staging:  # all sequences or none: a partial export would look finished
        extract.write_descriptor_dir(staging, per_sequence, fmt=args.format, delimiter=args.delimiter)
    print(f"wrote descriptors of {len(per_sequence)} sequences to {args.out}")
    return 0


def register(subparsers) -> None:
    """Add ``evaluate ubc``, ``evaluate hpatches`` and ``export`` to the ``descbench`` parser."""
    evaluate = subparsers.add_parser(
        "evaluate", help="score a descriptor on UBC PhotoTour or HPatches",
        description="Score a registered descriptor (--descriptor), a trained model (--model) or descriptors "
                    "computed elsewhere (--descriptor-files). Each result folder holds the scores and a "
                    "summary.json that records what produced them.")
    sub = evaluate.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")

    ubc = sub.add_parser("ubc", help="FPR95 on the 100K pairs of a UBC test set")
    _add_source(ubc, files_help="one descriptor file (.npy, or .csv with ',' or ';'): one row per patch of the "
                                "test set, in the set's order")
    ubc.add_argument("--test-set", default=None,
                     help="prepared UBC set (default: every set prepared under DATA/ubc except the model's "
                          "train set, or a release's training data)")
    ubc.add_argument("--convention", default="hardnet", choices=("hardnet", "hynet"),
                     help="FPR95 threshold convention (default hardnet)")
    ubc.add_argument("--metric", default=None, metavar="LIST",
                     help="comma list of fpr95 and revisited-map (the brown_phototour_revisited mAP; it "
                          "needs the set's raw interest.txt); default both, the second where the set has it")
    _add_result_options(ubc, "pairs.csv, revisited.csv and summary.json (with several test sets: one subfolder per set)",
                        "results/adhoc/ubc/<descriptor>/<test set>, or "
                        "results/adhoc/ubc/<method>/<train set>/seed<seed>/<test set> for a model")
    ubc.set_defaults(func=_evaluate_ubc)

    hp = sub.add_parser("hpatches", help="HPatches verification, matching and retrieval")
    _add_source(hp, files_help="folder of descriptor files <DIR>/<seq>/<type>.csv (',' or ';') or .npy, "
                               "as `descbench export` writes them")
    hp.add_argument("--split", default="full", help="a, b, c, illum, view or full (default full)")
    hp.add_argument("--convention", default="python", choices=("python", "matlab"),
                    help="official python benchmark (default) or the MATLAB one")
    hp.add_argument("--distance", default="L2", choices=("L2", "L1"), help="descriptor distance (default L2)")
    hp.add_argument("--tasks", default="verification,matching,retrieval",
                    help="comma list of tasks (default all three)")
    _add_result_options(hp, "the tidy csvs and summary.json",
                        "results/adhoc/hpatches/<descriptor>/<split>, or "
                        "results/adhoc/hpatches/<method>/<train set>/seed<seed>/<split> for a model")
    hp.set_defaults(func=_evaluate_hpatches)
    _register_evaluate_sequences(sub)

    export = subparsers.add_parser(
        "export", help="write HPatches descriptors in the official layout <out>/<seq>/<type>.csv",
        description="Describe every prepared HPatches sequence with a registered descriptor or a trained model "
                    "and write the files in the official benchmark's layout, DIR/<sequence>/<image type>.csv "
                    "(one row per patch); `descbench evaluate hpatches --descriptor-files DIR` reads them back.")
    _add_source(export, files_help=None)
    export.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output folder (replaced as a whole by the new export)")
    export.add_argument("--format", default="csv", choices=("csv", "npy"),
                        help="csv, the official benchmark's text format (default), or npy (float32 arrays)")
    export.add_argument("--delimiter", default=",", choices=(",", ";"), metavar="CHAR",
                        help="field separator of the csv files: ',' (default) or ';'")
    export.set_defaults(func=_export, descriptor_files=None)


# ------------------------------------------------------------------------------- HPatches sequences

def _register_evaluate_sequences(sub) -> None:
    seq = sub.add_parser(
        "hpatches-sequences", help="image matching on the HPatches full-image sequences (MMA, homography accuracy)",
        description="SIFT keypoints (the same for every descriptor), patches cut at their scale and orientation, "
                    "mutual nearest-neighbour matching from image 1 to images 2-6; writes pairs.csv (one row per "
                    "image pair) and summary.json (docs/protocols.md §6).")
    _add_source(seq, files_help=None)
    seq.add_argument("--subset", default="d2net", choices=("d2net", "full"),
                     help="d2net: the 108 sequences of D2-Net's benchmark (8 high-resolution ones left out; "
                          "default); full: all 116")
    seq.add_argument("--max-keypoints", type=int, default=MAX_KEYPOINTS,
                     help=f"keypoints per image, the strongest SIFT responses (default {MAX_KEYPOINTS})")
    _add_result_options(seq, "pairs.csv and summary.json",
                        "results/adhoc/hpatches-sequences/<descriptor>/<subset>, or "
                        "results/adhoc/hpatches-sequences/<method>/<train set>/seed<seed>/<subset> for a model")
    seq.set_defaults(func=_evaluate_sequences, descriptor_files=None)


def _evaluate_sequences(args: argparse.Namespace) -> int:
    from descbench.data.hpatches_sequences import load_sequences
    from descbench.evaluate import sequences
    from descbench.evaluate.hpatches import write_result_set

    if args.max_keypoints < 1:
        raise DescbenchError(f"--max-keypoints must be >= 1, got {args.max_keypoints}")
    source = _source(args)
    label = _label(args, source)
    out = _prepare_out(args.out or _default_out("hpatches-sequences", source, args.subset), sequences.RESULT_FILES,
                       "HPatches sequences", source, label, args.force)
    data = load_sequences(args.data, args.subset)
    release = _released(args)
    if release is not None:
        from descbench import weights

        overlap = weights.check_evaluation(release, hpatches_sequences=[s.name for s in data],
                                           allow=args.allow_train_overlap)
    extractor = _extractor(args)
    pairs = sequences.evaluate(extractor, data, args.max_keypoints)
    summary = sequences.summarise(pairs)
    summary.update(descriptor=label, source=source, subset=args.subset, max_keypoints=args.max_keypoints,
                   magnification=sequences.MAGNIFICATION, patch_size=extractor.descriptor.patch_size,
                   ransac_threshold=sequences.RANSAC_THRESHOLD)
    if release is not None:
        _note_release(summary, release, overlap)
    write_result_set(out, {"pairs": pairs}, summary, sequences.RESULT_FILES, "HPatches sequences")
    print(sequences.format_summary(summary))
    print(f"-> {out}")
    return 0
