"""How much the mini preset's learned numbers move with the seed and the intra-op thread count.

    python benchmarks/mini_spread.py [--workdir DIR]

Runs the mini preset (config/mini.yaml) in DIR three ways: as configured (seed 0, one training thread
per job), with seeds 1 and 2, and with seed 0 at two training threads. The data, the handcrafted scores
and everything upstream of training are shared (one Snakemake working directory; only the results
folders differ). Prints, per method, UBC FPR95 (mean of the two test sets) and HPatches mAP
(verification / matching / retrieval) for each run, and the spread: the range over seeds 0-2, and the
difference between 1 and 2 threads at seed 0. Handcrafted descriptors (sift, rootsift, raw) have no
training, so their numbers are exact on any machine; learned ones depend on float32 summation order,
i.e. on the thread count and the CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from mini_workflow import run_env  # noqa: E402

RUNS = {  # name -> (seeds, training threads)
    "seed0-1thread": ([0], 1),
    "seeds12-1thread": ([1, 2], 1),
    "seed0-2threads": ([0], 2),
}


def run(workdir: Path, name: str, seeds: list[int], threads: int) -> float:
    config = yaml.safe_load((REPO / "config" / "mini.yaml").read_text())
    config["results_dir"] = f"results/{name}"
    config["seeds"] = seeds
    config["threads"]["train"] = threads
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
                    str(workdir), "--configfile", str(path), "--cores", "2", "--quiet", "rules"],
                   check=True, env=run_env(), stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def scores(results: Path, method: str, seed: int, config: dict) -> tuple[float, float, float, float]:
    train = config["ubc"]["train_sets"][0]
    tests = [s for s in config["ubc"]["sets"] if s != train]
    ubc = [json.loads((results / f"scores/ubc/{train}/{method}/seed{seed}/{t}/summary.json").read_text())
           ["fpr95"] for t in tests]
    hp = json.loads((results / f"scores/hpatches/full/{train}/{method}/seed{seed}/summary.json")
                    .read_text())
    maps = [hp[task] for task in ("verification", "matching", "retrieval")]
    return (100 * sum(ubc) / len(ubc), *(100 * m for m in maps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="descbench-spread-"))
    workdir.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((REPO / "config" / "mini.yaml").read_text())
    for name, (seeds, threads) in RUNS.items():
        seconds = run(workdir, name, seeds, threads)
        print(f"{name}: {seconds:.0f} s wall", flush=True)
    cols = ("UBC FPR95", "verif.", "match.", "retr.")
    print(f"\n{'method':26s} {'metric':10s} {'seed 0':>7s} {'seed 1':>7s} {'seed 2':>7s} "
          f"{'range':>6s} {'2 thr':>7s} {'2-1 thr':>8s}")
    for method in config["methods"]:
        by_seed = [scores(workdir / "results/seed0-1thread", method, 0, config),
                   scores(workdir / "results/seeds12-1thread", method, 1, config),
                   scores(workdir / "results/seeds12-1thread", method, 2, config)]
        two = scores(workdir / "results/seed0-2threads", method, 0, config)
        for i, col in enumerate(cols):
            values = [s[i] for s in by_seed]
            print(f"{method:26s} {col:10s} {values[0]:7.2f} {values[1]:7.2f} {values[2]:7.2f} "
                  f"{max(values) - min(values):6.2f} {two[i]:7.2f} {two[i] - values[0]:+8.2f}")
    print(f"\nworking directory: {workdir}")


if __name__ == "__main__":
    main()
