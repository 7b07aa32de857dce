"""``descbench train``: train one registered method on one UBC training set.

Writes ``OUT/model.pt`` (weights + metadata: recipe, scale, seed, train set, versions, git commit,
init_from), ``OUT/metrics.csv``, ``OUT/diagnostics.npz`` and ``OUT/checkpoint.pt``; prints a summary.
Runs under ``torchrun --nproc-per-node=N`` unchanged (the global batch is kept).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from descbench.options import add_data_option


def register(subparsers) -> None:
    """Add ``train`` to the ``descbench`` parser."""
    p = subparsers.add_parser(
        "train", help="train a learned descriptor on a UBC training set",
        description="Train one registered learned descriptor on one prepared UBC set and write OUT/model.pt "
                    "(weights and what made them: recipe, scale, seed, train set, versions), OUT/metrics.csv and "
                    "OUT/diagnostics.npz; OUT/checkpoint.pt lets --resume continue an interrupted run.")
    p.add_argument("--method", required=True, help="registered learned descriptor (descbench list)")
    p.add_argument("--train-set", required=True, help="prepared UBC set, e.g. liberty or mini_liberty")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed of the initial weights, the batches and the augmentation (default 0)")
    add_data_option(p, "data folder holding the prepared DATA/ubc/<set>/ (descbench prepare)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder of the model")
    p.add_argument("--scale", default="paper", choices=("paper", "mini"),
                   help="paper: the published schedule (default; needs a full-size set such as liberty); "
                        "mini: its shrunken version for the offline mini sets")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--init-from", default=None,
                   help="model.pt of the method this one continues (required when it has init_from)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to train: auto (CUDA when present, the default), cpu or cuda")
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="torch intra-op CPU threads (default 1); float32 training results depend on "
                        "it, so it is recorded in model.pt and a resume must use the same count")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive thread count")
    return value


def _git_commit() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _check_batches(desc, recipe, labels, args: argparse.Namespace) -> None:
    """Refuse, before the first step, a recipe whose batches the training set cannot fill, saying what
    would work (the mini scale, or a larger set)."""
    import numpy as np

    from descbench.errors import DescbenchError
    from descbench.train.sampler import ClassIndex, split_validation

    index = ClassIndex.from_labels(np.asarray(labels))

    def problems(candidate):
        split = split_validation(index, hold_out=candidate.hold_out)
        return candidate.batch_problems(len(labels), len(split.train_classes),
                                        len(split.training_classes(include_single=True)))

    found = problems(recipe)
    if not found:
        return
    more = f" (and {len(found) - 1} more such problem{'s' * (len(found) > 2)})" if len(found) > 1 else ""
    if args.scale == "paper" and not problems(desc.recipe.scale("mini")):
        fix = "use --scale mini for a set of this size, or train on a full-size set such as liberty"
    else:
        fix = "train on a larger set (liberty, notredame or yosemite with --scale paper or mini)"
    raise DescbenchError(f"{args.method} at --scale {args.scale} cannot train on {args.train_set} "
                         f"({len(labels)} patches, {len(index.classes)} 3D points): {found[0]}{more}; {fix}")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    import descbench
    from descbench import registry
    from descbench.data.commands import require_prepared_ubc
    from descbench.data.ubc import load_ubc
    from descbench.errors import DescbenchError
    from descbench.fileio import check_writable, sha256_file
    from descbench.models import load_model, save_model
    from descbench.train.loop import train

    desc = registry.get(args.method)
    if not desc.learned or desc.recipe is None:
        raise DescbenchError(f"{args.method!r} is not a trainable descriptor; pick a learned one "
                             "from `descbench list`")
    recipe = desc.recipe.scale(args.scale)
    out = Path(args.out)
    check_writable(out, option="--out")  # before any compute, not at the first checkpoint
    if (out / "checkpoint.pt").exists() and not args.resume:
        raise DescbenchError(f"{out / 'checkpoint.pt'} exists: pass --resume to continue that run, or "
                             "remove the directory to start over")

    init_state, init_meta = None, None
    if desc.init_from:
        if not args.init_from:
            raise DescbenchError(f"{args.method!r} continues {desc.init_from!r}: pass --init-from "
                                 f"<model.pt of {desc.init_from} trained on {args.train_set}, seed "
                                 f"{args.seed}>")
        net, init_desc, init_meta = load_model(args.init_from)
        if init_desc.name != desc.init_from:
            raise DescbenchError(f"--init-from {args.init_from} holds {init_desc.name!r}, but "
                                 f"{args.method!r} continues {desc.init_from!r}")
        for key, want in (("train_set", args.train_set), ("seed", args.seed), ("scale", args.scale)):
            if init_meta.get(key) != want:
                raise DescbenchError(f"--init-from {args.init_from} was trained with {key}="
                                     f"{init_meta.get(key)!r}, this run uses {want!r}; use the model "
                                     "of the same train set, seed and scale")
        init_state = net.state_dict()
    elif args.init_from:
        raise DescbenchError(f"{args.method!r} trains from scratch; drop --init-from")

    require_prepared_ubc(args.data, args.train_set, "--train-set")
    data = load_ubc(args.data, args.train_set)
    _check_batches(desc, recipe, data.labels, args)
    recipe = recipe.for_train_set(len(data.patches))  # epochs that follow the set (HyNet's trainer)
    # --resume refuses a checkpoint of another run; these name the differences in the user's terms
    identity = {"method": args.method, "scale": args.scale, "train set": args.train_set,
                "--init-from": "none" if not args.init_from
                else f"sha256 {sha256_file(args.init_from)}"}
    result = train(recipe, desc.network, data.patches, np.asarray(data.labels), out, args.seed,
                   device=args.device, init_state=init_state, resume=args.resume,
                   checkpoint_every=args.checkpoint_every, progress=not args.no_progress,
                   identity=identity, threads=args.threads)
    if result.rank != 0:
        return 0
    meta = {
        "method": args.method, "recipe": recipe.to_json(), "scale": args.scale, "seed": args.seed,
        "train_set": args.train_set, "init_from": args.init_from, "steps": result.steps,
        "val_fpr95_before": result.val_fpr95_before, "val_fpr95_after": result.val_fpr95_after,
        "versions": {"torch": torch.__version__, "numpy": np.__version__,
                     "descbench": descbench.__version__},
        "git_commit": _git_commit(),
        "world_size": result.world_size, "threads": args.threads,
    }
    save_model(out / "model.pt", args.method, result.state_dict, meta)
    print(f"{args.method} on {args.train_set} (seed {args.seed}, {args.scale}, {args.threads} "
          f"thread{'s' if args.threads > 1 else ''}): {result.steps} steps "
          f"in {result.seconds:.0f} s; validation FPR95 {100 * result.val_fpr95_before:.2f}% -> "
          f"{100 * result.val_fpr95_after:.2f}%; model {out / 'model.pt'}")
    return 0
