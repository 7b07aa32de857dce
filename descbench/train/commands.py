"""``descbench train``: train one registered method on one UBC training set.

Writes ``OUT/model.pt`` (weights + metadata: recipe, scale, seed, train set, versions, git commit,
init_from), ``OUT/metrics.csv``, ``OUT/diagnostics.npz`` and ``OUT/checkpoint.pt``; prints a summary.
Runs under ``torchrun --nproc-per-node=N`` unchanged (the global batch is kept).
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add ``train`` to the ``descbench`` parser."""
    p = subparsers.add_parser("train", help="train a learned descriptor on a UBC training set")
    p.add_argument("--method", required=True, help="registered learned descriptor (descbench list)")
    p.add_argument("--train-set", required=True, help="prepared UBC set, e.g. liberty or mini_liberty")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", required=True, help="data root holding ubc/<set>/ (descbench prepare)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--scale", default="paper", choices=("paper", "mini"),
                   help="paper recipe or its shrunken offline version")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--init-from", default=None,
                   help="model.pt of the method this one continues (required when it has init_from)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
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
    from pathlib import Path

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    import torch

    import descbench
    from descbench import registry
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

    data = load_ubc(args.data, args.train_set)
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
