"""Time the three HPatches tasks on full-scale synthetic data (split ``full``) and print one table.

    python benchmarks/hpatches_eval.py [--dir DIR] [--threads 2] [--reference] [--sequences N]
                                       [--device cuda]

Writes (once, then reused) into DIR: the 116 sequences of split full with their real patch counts
(``REAL_LENGTHS``: 1 + the largest index per sequence in the official retrieval files, 156,456 points)
as ``desc/<seq>/<type>.npy``, 128-D unit float32 descriptors whose targets are noisier copies of the ref
descriptor (Easy < Hard < Tough), random 65x65 ref patches (some flat, so the std > 10 filter acts),
and full-size task files made by ``write_task_files`` (10^6 pairs, 10^4 queries, 2 x 10^4
distractors). ``--sequences N`` uses the first N sequences only (own folder; for profiling).

The evaluation runs in a fresh process limited to ``--threads`` threads (BLAS, OpenMP, descbench), so
its figures are the evaluation's alone: loading, then the three tasks one after the other as
``descbench evaluate hpatches`` runs them, each with wall time, CPU time (all threads) and the peak RSS
of the process so far. ``--reference`` adds a plain float64 path (full float64 distance matrices,
argmin, stable sorts, scipy's cdist for the distances that rank; each task in its own process, so
each peak is its own) and the largest
difference of any cell from descbench's. The table states the load average before and after: on a
shared machine, wall times follow the load; CPU times much less so.

If ``HPATCHES_BENCHMARK_DIR`` points at a checkout of hpatches/hpatches-benchmark, the script also
writes the descriptors as CSV, runs the official python code on the same task files (with
``HPATCHES_BENCHMARK_PYTHON``, default this interpreter; it needs numpy < 2.4 and pandas >= 1 with
``.as_matrix()`` replaced by ``.values``, docs/protocols.md §0), times it, compares every number and
prints the speed-up. The official code is never imported by descbench itself.
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

# Patches per sequence of the real release: 1 + the largest patch index of the sequence in the official
# retrieval files of split full (hpatches-benchmark tasks/retr_{queries,distractors}_split-full.csv at
# commit e0c993c; 156,456 in all). Data, not code: the numbers only size the synthetic sequences.
REAL_LENGTHS = {
    "i_ajuntament": 852, "i_autannes": 1087, "i_bologna": 344, "i_books": 474, "i_boutique": 1020,
    "i_bridger": 1976, "i_brooklyn": 1990, "i_castle": 612, "i_chestnuts": 891, "i_contruction": 1990,
    "i_crownday": 1854, "i_crownnight": 1959, "i_dc": 1954, "i_dome": 1703, "i_duda": 815, "i_fenis": 547,
    "i_fog": 722, "i_fruits": 634, "i_gonnenberg": 550, "i_greenhouse": 879, "i_greentea": 1060,
    "i_indiana": 1989, "i_kions": 710, "i_ktirio": 526, "i_kurhaus": 1973, "i_leuven": 594, "i_lionday": 712,
    "i_lionnight": 471, "i_londonbridge": 1764, "i_melon": 554, "i_miniature": 881, "i_nescafe": 851,
    "i_nijmegen": 1991, "i_nuts": 784, "i_objects": 1996, "i_parking": 485, "i_partyfood": 721,
    "i_pencils": 1994, "i_pinard": 505, "i_pool": 760, "i_porta": 408, "i_resort": 1682, "i_salon": 1101,
    "i_santuario": 1708, "i_school": 514, "i_ski": 619, "i_smurf": 1386, "i_steps": 813, "i_table": 1991,
    "i_tools": 998, "i_toy": 779, "i_troulos": 298, "i_veggies": 1191, "i_village": 673,
    "i_whitebuilding": 1950, "i_yellowtent": 861, "i_zion": 1993, "v_abstract": 1886, "v_adam": 764,
    "v_apprentices": 1993, "v_artisans": 1997, "v_astronautis": 1950, "v_azzola": 1997, "v_bark": 1165,
    "v_bees": 1991, "v_beyus": 1537, "v_bip": 1318, "v_bird": 1270, "v_birdwoman": 1997, "v_blueprint": 1995,
    "v_boat": 1523, "v_bricks": 1993, "v_busstop": 2000, "v_calder": 1924, "v_cartooncity": 1620,
    "v_charing": 526, "v_churchill": 1240, "v_circus": 1903, "v_coffeehouse": 1996, "v_colors": 257,
    "v_courses": 1504, "v_dirtywall": 1975, "v_dogman": 590, "v_eastsouth": 1644, "v_feast": 2000,
    "v_fest": 1808, "v_gardens": 1963, "v_grace": 1597, "v_graffiti": 1120, "v_home": 1590, "v_laptop": 781,
    "v_london": 1994, "v_machines": 1967, "v_man": 1655, "v_maskedman": 1069, "v_pomegranate": 1987,
    "v_posters": 1999, "v_samples": 1982, "v_soldiers": 1520, "v_strand": 1804, "v_sunseason": 1936,
    "v_tabletop": 1995, "v_talent": 1992, "v_tempera": 1399, "v_there": 944, "v_underground": 1579,
    "v_vitro": 1460, "v_wall": 1777, "v_wapping": 1996, "v_war": 1989, "v_weapons": 1464, "v_woman": 1048,
    "v_wormhole": 1095, "v_wounded": 927, "v_yard": 1612, "v_yuri": 713,
}
DIM = 128
NOISE = {"e": 1.8, "h": 2.5, "t": 3.2}  # per-coordinate noise of the targets; scores ~ real descriptors


def sequence_names() -> list[str]:
    return sorted(REAL_LENGTHS)


def _usage() -> tuple[float, float, float]:
    """(wall s, CPU s of all threads, peak RSS GB) of this process so far."""
    return (time.perf_counter(), time.process_time(),
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20)


def _since(start: tuple[float, float, float]) -> list[float]:
    now = _usage()
    return [now[0] - start[0], now[1] - start[1], now[2]]


def prepare(root: Path, seed: int, n_sequences: int | None = None) -> None:
    """Write descriptors (``desc/<seq>/<type>.npy``) and task files (``tasks/``) unless present."""
    from descbench.evaluate.hpatches import IMAGE_TYPES
    from descbench.data.hpatches_tasks import write_task_files

    names = sequence_names()[:n_sequences]
    rng = np.random.default_rng(seed)
    lengths = [REAL_LENGTHS[name] for name in names]
    desc_dir = root / "desc"
    if not (desc_dir / names[-1] / "t5.npy").is_file():
        for name, n in zip(names, lengths):
            base = rng.normal(size=(n, DIM)).astype(np.float32)
            stack = np.empty((len(IMAGE_TYPES), n, DIM), np.float32)
            for k, image_type in enumerate(IMAGE_TYPES):
                sigma = 0.0 if image_type == "ref" else NOISE[image_type[0]] * (0.9 + 0.05 * int(image_type[1]))
                x = base + np.float32(sigma) * rng.normal(size=(n, DIM)).astype(np.float32)
                stack[k] = x / np.linalg.norm(x, axis=1, keepdims=True)
            (desc_dir / name).mkdir(parents=True, exist_ok=True)
            for image_type, table in zip(IMAGE_TYPES, stack):  # the official layout, as .npy
                np.save(desc_dir / name / f"{image_type}.npy", table)
    task_dir = root / "tasks"
    if not (task_dir / "retr_distractors_split-full.csv").is_file():
        refs = {}
        for name, n in zip(names, lengths):
            patches = rng.integers(0, 256, size=(n, 65, 65), dtype=np.uint8)
            patches[rng.random(n) < 0.1] = 128  # flat: std 0, filtered out of retrieval
            refs[name] = patches
        splits = {"full": {"name": "full", "test": names}}
        share = sum(lengths) / sum(REAL_LENGTHS.values())  # a subset gets proportionally fewer
        write_task_files(task_dir, refs, splits, n_pairs=max(1000, round(1_000_000 * share)),
                         n_queries=max(100, round(10_000 * share)),
                         n_distractors=max(200, round(20_000 * share)))
        (task_dir / "splits.json").write_text(json.dumps(splits))


def reference_matching(desc, sequences, convention):
    """Plain float64 path: full float64 distance matrices (dgemm), argmin, stable sort; scipy's cdist
    (the official distances) for each row's nearest distance and wherever dgemm's rounding could
    decide the argmin (columns within 1e-9 of the row minimum)."""
    import pandas as pd
    from scipy.spatial.distance import cdist

    from descbench.evaluate import hpatches as hp
    from descbench.evaluate.ranking import average_precision, negatives_before_positives

    rows = []
    for seq in sequences:
        ref = desc.sequence(seq, 0).astype(np.float64)
        r_sq = (ref * ref).sum(1)
        for level in hp.LEVELS:
            for k in range(1, 6):
                tgt = desc.sequence(seq, hp.LEVEL_BASE[level] + k).astype(np.float64)
                d = np.sqrt(np.maximum(r_sq[:, None] - 2 * ref @ tgt.T + (tgt * tgt).sum(1)[None], 0))
                nn = d.argmin(1)
                near = d <= d[np.arange(len(nn)), nn][:, None] + 1e-9
                for r in np.flatnonzero(near.sum(1) > 1):
                    cols = np.flatnonzero(near[r])
                    nn[r] = cols[cdist(ref[r:r + 1], tgt[cols])[0].argmin()]
                dn = np.array([cdist(ref[r:r + 1], tgt[nn[r]:nn[r] + 1])[0, 0] for r in range(len(nn))])
                correct = nn == np.arange(len(nn))
                before = negatives_before_positives(correct[np.argsort(dn, kind="stable")])
                rows.append((seq, level, k, float(average_precision(before, len(nn), convention.ap_kind))))
    return pd.DataFrame(rows, columns=["sequence", "level", "image", "ap"])


def reference_retrieval(desc, task_dir, split, convention):
    """Plain float64 path: per query scipy's cdist (the official distances) to the distractors and the
    positives, a count per pool."""
    from scipy.spatial.distance import cdist

    from descbench.evaluate import hpatches as hp
    from descbench.evaluate import tasks as taskfiles
    from descbench.evaluate.ranking import average_precision

    q = taskfiles.read_queries(task_dir, split["name"])
    dl = taskfiles.read_distractors(task_dir, split["name"])
    q_rows = desc.rows(q.names, q.seq, q.idx, "queries")
    d_rows = desc.rows(dl.names, dl.seq, dl.idx, "distractors")
    q_seq = np.array([desc.index[n] for n in q.names])[q.seq]
    d_seq = np.array([desc.index[n] for n in dl.names])[dl.seq]
    D = desc.data[0, d_rows].astype(np.float64)
    ap = np.empty((len(q_rows), 3, len(hp.POOL_SIZES)))
    for i, (row, sq) in enumerate(zip(q_rows, q_seq)):
        a = desc.data[0, row].astype(np.float64)[None]
        neg = cdist(a, D[d_seq != sq])[0]
        for li, level in enumerate(hp.LEVELS):
            pos = cdist(a, desc.data[[hp.LEVEL_BASE[level] + k for k in range(1, 6)], row].astype(np.float64))[0]
            for pi, pool in enumerate(hp.POOL_SIZES):
                n = neg[:pool - 5]
                before = np.sort((n[None, :] < pos[:, None]).sum(1))  # positives first on ties
                ap[i, li, pi] = average_precision(before, 5, convention.ap_kind)
    return ap.ravel()


def paired_distances(a, b, metric):
    """The official verification distances of paired float32 rows, plainly: scipy's euclidean /
    cityblock take the difference in float32; the L2 norm is accurate and rounded to float32, L1 a
    numpy float32 sum (MATLAB's squared L2: the float64 sum)."""
    diff = a - b
    if metric == "L1":
        return np.abs(diff).sum(axis=1).astype(np.float64)
    sq = np.einsum("ij,ij->i", diff, diff, dtype=np.float64)
    return np.sqrt(sq).astype(np.float32).astype(np.float64) if metric == "L2" else sq


def reference_verification(desc, task_dir, split, convention):
    """Plain path: per level the distances of each pair file in file order, one stable sort of the
    merged list per score."""
    from descbench.evaluate import hpatches as hp
    from descbench.evaluate import tasks as taskfiles
    from descbench.evaluate.ranking import average_precision, negatives_before_positives

    flat, total = desc.data.reshape(-1, desc.dim), desc.data.shape[1]
    tables = {k: taskfiles.read_pairs(task_dir, k, split["name"]) for k in taskfiles.VERIF_KINDS}
    rows = {k: (desc.rows(t.names, t.seq1, t.idx1, k), desc.rows(t.names, t.seq2, t.idx2, k))
            for k, t in tables.items()}
    values = []
    for level in hp.LEVELS:
        d = {}
        for k, t in tables.items():
            i1 = np.where(t.t1 == 0, 0, hp.LEVEL_BASE[level] + t.t1) * total + rows[k][0]
            i2 = np.where(t.t2 == 0, 0, hp.LEVEL_BASE[level] + t.t2) * total + rows[k][1]
            d[k] = np.concatenate([paired_distances(flat[i1[s:s + 100_000]], flat[i2[s:s + 100_000]], convention.metric)
                                   for s in range(0, len(i1), 100_000)])
        pos = d["pos"]
        for negatives in hp.NEGATIVES:
            neg = d[f"neg_{negatives}"]
            for keep in (len(pos), int(len(pos) * 0.2)):  # balanced: all positives; imbalanced: 20 %
                merged = np.concatenate([neg, pos[:keep]])  # python lists the negatives first
                labels = np.arange(len(merged)) >= len(neg)
                before = negatives_before_positives(labels[np.argsort(merged, kind="stable")])
                values.append(float((len(neg) - before).sum() / keep / len(neg)) if keep == len(pos)
                              else float(average_precision(before, keep, convention.ap_kind)))
    return np.array(values)


def measure(root: Path, out: Path, threads: int, engine: str, tasks: list[str], device: str | None) -> None:
    """Load the descriptors and run ``tasks`` with ``engine`` (descbench or float64); dump figures and
    every cell."""
    from descbench.evaluate import hpatches as hp
    from descbench.evaluate import tasks as taskfiles
    from descbench.data.hpatches_tasks import load_splits

    rows = {}
    start = _usage()
    if engine == "descbench":
        desc = hp.HPatchesDescriptors.from_dir(root / "desc")
    else:  # np.load of every file, stacked per sequence
        desc = hp.HPatchesDescriptors({
            seq.name: np.stack([np.load(seq / f"{t}.npy") for t in hp.IMAGE_TYPES])
            for seq in sorted((root / "desc").iterdir())})
    rows["load (.npy)"] = _since(start)
    split = load_splits(root / "tasks")["full"]
    convention = hp.convention_for("python")
    for task in tasks:
        start = _usage()
        if engine == "descbench":
            if task == "verification":
                frame = hp.verification(desc, taskfiles.read_task_files(root / "tasks", "full", [task]), convention,
                                        threads=threads)
            elif task == "matching":
                frame = hp.matching(desc, list(split["test"]), convention, device=device, threads=threads)
            else:
                frame = hp.retrieval(desc, taskfiles.read_task_files(root / "tasks", "full", [task]), convention,
                                     device=device, threads=threads)
            rows[task] = _since(start)
            frame.to_csv(out / f"{task}.csv", index=False)
            cells = frame["value" if task == "verification" else "ap"].to_numpy()
        else:
            cells = {"verification": reference_verification, "matching": reference_matching,
                     "retrieval": reference_retrieval}[task](
                desc, *((list(split["test"]),) if task == "matching" else (root / "tasks", split)), convention)
            cells = cells["ap"].to_numpy() if task == "matching" else cells
            rows[task] = _since(start)
        np.save(out / f"{engine}_{task}.npy", cells)
    (out / f"{engine}_{'_'.join(tasks)}.json").write_text(json.dumps({"rows": rows, "device": device or "cpu"}))


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

    from descbench.evaluate import hpatches as hp
    from descbench.evaluate.extract import write_descriptor_dir

    csv_dir = root / "csv" / "synthetic"
    names = sorted(p.name for p in (root / "desc").iterdir())
    if not (csv_dir / names[-1] / "t5.csv").is_file():
        write_descriptor_dir(csv_dir, {name: np.stack([np.load(root / "desc" / name / f"{t}.npy")
                                                       for t in hp.IMAGE_TYPES]) for name in names})
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


def _load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if os.path.exists("/proc/loadavg") else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "descbench-hpatches-bench",
                        help="where the synthetic data lives (kept for reruns)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the timed process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sequences", type=int, default=None,
                        help="use the first N of the 116 sequences (default all; for profiling)")
    parser.add_argument("--device", default=None, choices=("cpu", "cuda"),
                        help="run the distance products with torch on this device (default: numpy/torch "
                             "CPU kernels); HPATCHES_DEVICE=cuda does the same")
    parser.add_argument("--reference", action="store_true",
                        help="also time the plain float64 path (minutes) and compare every cell")
    parser.add_argument("--measure", nargs=2, metavar=("ENGINE", "TASKS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = args.device or os.environ.get("HPATCHES_DEVICE") or None
    if args.sequences is not None and args.dir.name == "descbench-hpatches-bench":
        args.dir = args.dir.with_name(f"descbench-hpatches-bench-{args.sequences}")
    out = args.dir / "scores"
    out.mkdir(parents=True, exist_ok=True)
    if args.measure:
        measure(args.dir, out, args.threads, args.measure[0], args.measure[1].split(","), device)
        return 0

    t0 = time.perf_counter()
    prepare(args.dir, args.seed, args.sequences)
    print(f"synthetic data ready in {args.dir} ({time.perf_counter() - t0:.0f} s)")
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    env["DESCBENCH_THREADS"] = str(args.threads)
    tasks = ("verification", "matching", "retrieval")

    def run(engine: str, what: str) -> dict:
        subprocess.run([sys.executable, __file__, "--dir", str(args.dir), "--threads", str(args.threads),
                        "--measure", engine, what] + (["--device", device] if device else []),
                       env=env, check=True)
        return json.loads((out / f"{engine}_{what.replace(',', '_')}.json").read_text())

    load_before = _load_average()
    fast = run("descbench", ",".join(tasks))
    reference = {task: run("float64", task) for task in tasks} if args.reference else {}
    load_after = _load_average()
    official = None
    if os.environ.get("HPATCHES_BENCHMARK_DIR"):
        official = run_official(Path(os.environ["HPATCHES_BENCHMARK_DIR"]), args.dir, out)

    names = sequence_names()[:args.sequences]
    points = sum(REAL_LENGTHS[n] for n in names)
    print(f"\nHPatches split full, {len(names)} sequences with the real N ({points:,} points), {DIM}-D, "
          f"python convention, {args.threads} threads, device {fast['device']}")
    print(f"load average (1, 5, 15 min) before {load_before}, after {load_after}; CPU s counts all threads")
    print("descbench: one process, the tasks in turn (peak RSS of the process so far); float64 reference: "
          "each task in its own process")
    head = f"{'step':14s} {'wall s':>8s} {'CPU s':>8s} {'peak GB':>8s}"
    if reference:
        head += f" | {'f64 wall s':>10s} {'f64 CPU s':>10s} {'f64 peak':>8s} {'max |diff|':>10s}"
    print(head)
    for step in ("load (.npy)",) + tasks:
        wall, cpu, peak = fast["rows"][step]
        line = f"{step:14s} {wall:8.2f} {cpu:8.2f} {peak:8.2f}"
        if reference:
            ref = reference["verification" if step == "load (.npy)" else step]["rows"][step]
            diff = "" if step == "load (.npy)" else f"{np.abs(np.load(out / f'descbench_{step}.npy') - np.load(out / f'float64_{step}.npy')).max():10.1e}"
            line += f" | {ref[0]:10.2f} {ref[1]:10.2f} {ref[2]:8.2f} {diff:>10s}"
        print(line)
    wall = sum(fast["rows"][t][0] for t in tasks)
    cpu = sum(fast["rows"][t][1] for t in tasks)
    line = f"{'three tasks':14s} {wall:8.2f} {cpu:8.2f} {max(fast['rows'][t][2] for t in tasks):8.2f}"
    if reference:
        line += (f" | {sum(reference[t]['rows'][t][0] for t in tasks):10.2f} "
                 f"{sum(reference[t]['rows'][t][1] for t in tasks):10.2f} "
                 f"{max(reference[t]['rows'][t][2] for t in tasks):8.2f}")
    print(line)
    if official:
        for task in tasks:
            print(f"official {task}: {official['times'][task]:.1f} s, max |diff| "
                  f"{official['max_abs_diff'][task]:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
