"""Time the three HPatches tasks on full-scale synthetic data (split ``full``) and print one table.

    python benchmarks/hpatches_eval.py [--dir DIR] [--threads 2]

Writes (once, then reused) into DIR: 116 sequences (57 ``i_``, 59 ``v_``) with N drawn from 257..1999
(seeded; the real per-sequence N are not available offline), 128-D float32 descriptors whose
targets are noisier copies of the ref descriptor (Easy < Hard < Tough), random 65x65 ref patches
(some flat, so the std > 10 filter acts), and full-size task files made by ``write_task_files``
(10^6 pairs, 10^4 queries, 2 x 10^4 distractors). The evaluation then runs in a fresh process limited
to ``--threads`` threads, so its wall time and peak RSS are the evaluation's alone.

If ``HPATCHES_BENCHMARK_DIR`` points at a checkout of hpatches/hpatches-benchmark, the script also
writes the descriptors as CSV, runs the official python code on the same task files (with
``HPATCHES_BENCHMARK_PYTHON``, default this interpreter; it needs numpy < 2.4 and pandas >= 1 with
``.as_matrix()`` replaced by ``.values``, PROTOCOLS.md §0), times it, compares every number and
prints the speed-up. The official code is never imported by descbench itself.

Matching is bound by BLAS products (about 7e11 flops). On a shared, oversubscribed machine OpenBLAS
threads spin-wait for each other and multi-threaded products get several times slower than one
thread; there, run with ``--threads 1`` (or export ``OPENBLAS_NUM_THREADS=1`` for ``descbench``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

N_SEQUENCES_I, N_SEQUENCES_V = 57, 59
N_MIN, N_MAX = 257, 1999
DIM = 128
NOISE = {"e": 1.8, "h": 2.5, "t": 3.2}  # per-coordinate noise of the targets; scores ~ real descriptors


def sequence_names() -> list[str]:
    return [f"i_syn{k:03d}" for k in range(N_SEQUENCES_I)] + [f"v_syn{k:03d}" for k in range(N_SEQUENCES_V)]


def prepare(root: Path, seed: int) -> None:
    """Write descriptors (``desc/<seq>.npy``) and task files (``tasks/``) unless present."""
    from descbench.evaluate.hpatches import IMAGE_TYPES
    from descbench.evaluate.tasks import write_task_files

    names = sequence_names()
    rng = np.random.default_rng(seed)
    lengths = rng.integers(N_MIN, N_MAX + 1, size=len(names))
    desc_dir = root / "desc"
    if not (desc_dir / f"{names[-1]}.npy").is_file():
        desc_dir.mkdir(parents=True, exist_ok=True)
        for name, n in zip(names, lengths):
            base = rng.normal(size=(n, DIM)).astype(np.float32)
            stack = np.empty((len(IMAGE_TYPES), n, DIM), np.float32)
            for k, image_type in enumerate(IMAGE_TYPES):
                sigma = 0.0 if image_type == "ref" else NOISE[image_type[0]] * (0.9 + 0.05 * int(image_type[1]))
                x = base + np.float32(sigma) * rng.normal(size=(n, DIM)).astype(np.float32)
                stack[k] = x / np.linalg.norm(x, axis=1, keepdims=True)
            np.save(desc_dir / f"{name}.npy", stack)
    task_dir = root / "tasks"
    if not (task_dir / "retr_distractors_split-full.csv").is_file():
        refs = {}
        for name, n in zip(names, lengths):
            patches = rng.integers(0, 256, size=(n, 65, 65), dtype=np.uint8)
            patches[rng.random(n) < 0.1] = 128  # flat: std 0, filtered out of retrieval
            refs[name] = patches
        splits = {"full": {"name": "full", "test": names}}
        write_task_files(task_dir, refs, splits, n_pairs=1_000_000, n_queries=10_000,
                         n_distractors=20_000)
        (task_dir / "splits.json").write_text(json.dumps(splits))


def measure(root: Path, out: Path) -> None:
    """Load the descriptors, run the three tasks, dump timings, peak RSS and the numbers."""
    from descbench.evaluate import hpatches as hp
    from descbench.evaluate.tasks import load_splits

    t0 = time.perf_counter()
    per_sequence = {p.stem: np.load(p) for p in sorted((root / "desc").glob("*.npy"))}
    desc = hp.HPatchesDescriptors(per_sequence)
    del per_sequence
    times = {"load": time.perf_counter() - t0}
    split = load_splits(root / "tasks")["full"]
    convention = hp.convention_for("python")
    results = {}
    cpu = {}
    for task in hp.TASKS:
        c0 = time.process_time()
        t0 = time.perf_counter()
        if task == "verification":
            results[task] = hp.verification(desc, root / "tasks", split, convention)
        elif task == "matching":
            results[task] = hp.matching(desc, list(split["test"]), convention)
        else:
            results[task] = hp.retrieval(desc, root / "tasks", split, convention)
        times[task] = time.perf_counter() - t0
        cpu[task] = time.process_time() - c0
    summary = hp.summarise(results)
    for task, frame in results.items():
        frame.to_csv(out / f"{task}.csv", index=False)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    (out / "measure.json").write_text(json.dumps({"times": times, "cpu": cpu, "peak_rss_gb": peak_gb,
                                                  "summary": summary}))


OFFICIAL_DRIVER = textwrap.dedent('''
    import json, os, sys, time
    bench, descr_dir, task_dir, out = sys.argv[1:5]
    sys.path.insert(0, os.path.join(bench, "python"))
    import utils.tasks as T
    from utils.hpatch import load_descrs
    T.tskdir = task_dir
    split = json.load(open(os.path.join(task_dir, "splits.json")))["full"]
    descr = load_descrs(descr_dir, dist="L2", sep=",")
    res, times = {}, {}
    for task in ("verification", "matching", "retrieval"):
        t0 = time.time(); r = T.methods[task](descr, split); times[task] = time.time() - t0
        if task == "verification":
            res[task] = {f"{l}/{n}/{p}": float(r[l][n][p]["auc" if p == "balanced" else "ap"])
                         for l in "eht" for n in ("inter", "intra") for p in ("balanced", "imbalanced")}
        elif task == "matching":
            res[task] = {f"{s}/{l}/{k}": float(r[s][l][k]["ap"]) for s in r for l in "eht" for k in range(1, 6)}
        else:
            res[task] = {f"{q}/{l}/{k}": float(r[q][l][k]["ap"]) for q in r for l in "eht" for k in r[q][l]}
    json.dump({"times": times, "results": res}, open(out, "w"))
''')


def run_official(bench: Path, root: Path, out: Path) -> dict:
    import pandas as pd

    from descbench.evaluate.extract import write_descriptor_dir

    csv_dir = root / "csv" / "synthetic"
    if not (csv_dir / sequence_names()[-1] / "t5.csv").is_file():
        per_sequence = {p.stem: np.load(p) for p in sorted((root / "desc").glob("*.npy"))}
        write_descriptor_dir(csv_dir, per_sequence)
    driver = out / "official_driver.py"
    driver.write_text(OFFICIAL_DRIVER)
    python = os.environ.get("HPATCHES_BENCHMARK_PYTHON", sys.executable)
    subprocess.run([python, str(driver), str(bench), str(csv_dir), str(root / "tasks"),
                    str(out / "official.json")], check=True)
    official = json.loads((out / "official.json").read_text())
    levels = {"easy": "e", "hard": "h", "tough": "t"}
    mine = {
        "verification": {f"{levels[r.level]}/{r.negatives}/{r.protocol}": r.value
                         for r in pd.read_csv(out / "verification.csv").itertuples()},
        "matching": {f"{r.sequence}/{levels[r.level]}/{r.image}": r.ap
                     for r in pd.read_csv(out / "matching.csv").itertuples()},
        "retrieval": {f"{r.query}/{levels[r.level]}/{r.pool}": r.ap
                      for r in pd.read_csv(out / "retrieval.csv").itertuples()},
    }
    diffs = {}
    for task, cells in official["results"].items():
        diffs[task] = max(abs(cells[k] - mine[task][k]) for k in cells) if set(cells) == set(mine[task]) \
            else float("nan")
    return {"times": official["times"], "max_abs_diff": diffs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "descbench-hpatches-bench",
                        help="where the synthetic data lives (kept for reruns)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the timed process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = args.dir / "scores"
    out.mkdir(parents=True, exist_ok=True)
    if args.measure:
        measure(args.dir, out)
        return 0

    t0 = time.perf_counter()
    prepare(args.dir, args.seed)
    print(f"synthetic data ready in {args.dir} ({time.perf_counter() - t0:.0f} s)")
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    subprocess.run([sys.executable, __file__, "--dir", str(args.dir), "--measure"], env=env, check=True)
    m = json.loads((out / "measure.json").read_text())
    official = None
    if os.environ.get("HPATCHES_BENCHMARK_DIR"):
        official = run_official(Path(os.environ["HPATCHES_BENCHMARK_DIR"]), args.dir, out)

    print(f"\nHPatches split full, 116 sequences, {DIM}-D, python convention, {args.threads} threads")
    header = f"{'task':14s} {'descbench s':>12s} {'(CPU s)':>8s}"
    if official:
        header += f" {'official s':>11s} {'speed-up':>9s} {'max |diff|':>11s}"
    print(header)
    for task in ("verification", "matching", "retrieval"):
        line = f"{task:14s} {m['times'][task]:12.2f} {m['cpu'][task]:8.2f}"
        if official:
            t = official["times"][task]
            line += f" {t:11.1f} {t / m['times'][task]:8.0f}x {official['max_abs_diff'][task]:11.2e}"
        print(line)
    total = sum(m["times"][t] for t in ("verification", "matching", "retrieval"))
    cpu_total = sum(m["cpu"][t] for t in ("verification", "matching", "retrieval"))
    line = f"{'total':14s} {total:12.2f} {cpu_total:8.2f}"
    if official:
        t = sum(official["times"].values())
        line += f" {t:11.1f} {t / total:8.0f}x"
    print(line)
    print("descbench s = wall time; CPU s = user + system time of all its threads (on a loaded machine "
          "wall time exceeds CPU time / threads)")
    print(f"loading descriptors {m['times']['load']:.2f} s (not in the total); "
          f"peak RSS of the timed process {m['peak_rss_gb']:.2f} GB")
    s = m["summary"]
    print(f"scores: verification {100 * s['verification']:.2f}  matching {100 * s['matching']:.2f}  "
          f"retrieval {100 * s['retrieval']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
