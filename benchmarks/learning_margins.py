"""The margins of the training tests' learning assertions, under 1 and 2 intra-op threads.

    python benchmarks/learning_margins.py [--threads 1 2]

``tests/test_train_loop.py::test_every_method_lowers_validation_fpr95`` asks that each method's
short schedule cut the validation FPR95 to below ``LEARNING_RATIO`` x the untrained value. float32
training differs with the thread count and the CPU, so the assertion must hold with room to spare:
this prints, per method and thread count, the untrained and trained FPR95, the ratio, and the margin
(1 - ratio / LEARNING_RATIO; the project aims at >= 25 %).
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _test_module():
    spec = importlib.util.spec_from_file_location("test_train_loop", ROOT / "tests" / "test_train_loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    from descbench.data import mini

    tests = _test_module()
    data = mini.make_ubc_set("mini_liberty", seed=0, part=0, scale=0.5)  # the tests' ubc_like set
    rows = []
    for threads in args.threads:
        with tempfile.TemporaryDirectory() as tmp:
            runs = tests.learning_runs(data["patches"], data["labels"], Path(tmp), threads=threads)
        for name, (before, after) in sorted(runs.items()):
            ratio = after / before
            rows.append((name, threads, before, after, ratio, 1 - ratio / tests.LEARNING_RATIO))
    print(f"{'method':32s} {'threads':>7s} {'untrained':>9s} {'trained':>8s} {'ratio':>6s} "
          f"{'threshold':>9s} {'margin':>7s}")
    for name, threads, before, after, ratio, margin in rows:
        print(f"{name:32s} {threads:7d} {before:9.4f} {after:8.4f} {ratio:6.3f} "
              f"{tests.LEARNING_RATIO:9.2f} {100 * margin:6.1f}%")
    print(f"smallest margin: {100 * min(r[-1] for r in rows):.1f}%")


if __name__ == "__main__":
    main()
