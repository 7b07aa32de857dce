"""Run the mini preset end to end, time it, and check what it produced.

    python benchmarks/mini_workflow.py                      # clean run on 2 cores, in a temp folder
    python benchmarks/mini_workflow.py --interrupt-after 8  # kill the run after 8 finished jobs,
                                                            # unlock, restart, check nothing finished reran

The run uses the repository's Snakefile and config/mini.yaml in a fresh working directory, so data and
results land there (not in the repository). Afterwards it checks that every table, figure and the
statistics file exist and parse, that the UBC and HPatches tables list every configured method, that
every score file parses and every model loads. With --interrupt-after N the whole snakemake process
group is killed (SIGKILL, as a lost node would) once N jobs have finished; the restart must finish the
DAG without re-running any job that had finished, and leave no corrupt output.

Prints one table: wall time, jobs, and the time summed per rule from Snakemake's benchmark files.
Target: the clean mini run within 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 600


def snakemake_command(workdir: Path, cores: int) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(REPO / "config" / "mini.yaml"), "--cores", str(cores),
            "--rerun-incomplete", "--printshellcmds"]


def run_env() -> dict[str, str]:
    """The rules call `descbench`: put this interpreter's scripts folder first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def finished_outputs(log_text: str) -> set[str]:
    """Outputs of every job the log reports as finished (job id -> outputs from its header)."""
    outputs: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", log_text):
        jobid = re.search(r"^\s+jobid: (\d+)$", block, re.M)
        output = re.search(r"^\s+output: (.*)$", block, re.M)
        if jobid and output:
            outputs[jobid.group(1)] = [p.strip() for p in output.group(1).split(",")]
    done = re.findall(r"Finished jobid: (\d+)", log_text)
    return {path for jobid in done for path in outputs.get(jobid, [])}


def started_outputs(log_text: str) -> set[str]:
    found = set()
    for match in re.finditer(r"^\s+output: (.*)$", log_text, re.M):
        found.update(p.strip() for p in match.group(1).split(","))
    return found


def run_interrupted(workdir: Path, cores: int, after: int) -> tuple[float, set[str], dict[str, float]]:
    """Run until ``after`` jobs finished, kill the process group; return (seconds, finished, mtimes)."""
    log_path = workdir / "interrupted.log"
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(snakemake_command(workdir, cores), stdout=log, stderr=subprocess.STDOUT,
                                env=run_env(), start_new_session=True)
        while proc.poll() is None:
            if len(re.findall(r"Finished jobid: \d+", log_path.read_text())) >= after:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.5)
    elapsed = time.perf_counter() - start
    if proc.returncode == 0:
        raise SystemExit(f"the run finished before {after} jobs were done; pass a smaller --interrupt-after")
    finished = {p for p in finished_outputs(log_path.read_text()) if (workdir / p).exists()}
    mtimes = {p: (workdir / p).stat().st_mtime_ns for p in finished}
    print(f"killed snakemake after {len(re.findall('Finished jobid', log_path.read_text()))} finished "
          f"jobs ({elapsed:.0f} s); {len(finished)} finished outputs recorded")
    return elapsed, finished, mtimes


def check_outputs(workdir: Path) -> list[str]:
    """Problems found in the results (empty when everything exists, parses and loads)."""
    sys.path.insert(0, str(REPO))
    from descbench.models import load_model
    from descbench.report import layout

    cfg = yaml.safe_load((REPO / "config" / "mini.yaml").read_text())
    results = workdir / cfg["results_dir"]
    problems = []
    for path in layout.report_files(results, tuple(cfg.get("downstream") or ())):
        if not path.is_file() or path.stat().st_size == 0:
            problems.append(f"missing or empty: {path}")
    expected_rows = set(cfg["methods"]) | set(cfg["handcrafted"])
    names = ["ubc_fpr95", "ubc_revisited_map", "hpatches"] + list(cfg.get("downstream") or [])
    for name, column in ((n, "method") for n in names):
        table = pd.read_csv(results / "tables" / f"{name}.csv")
        if set(table[column]) != expected_rows:
            problems.append(f"{name}.csv lists {sorted(set(table[column]))}, expected {sorted(expected_rows)}")
        md = (results / "tables" / f"{name}.md").read_text()
        problems += [f"{name}.md lacks {m}" for m in expected_rows if f"| {m} |" not in md]
    variants = [m for m in cfg["methods"] if m.startswith(cfg["reference"] + "-")]
    ablations = pd.read_csv(results / "tables" / "ablations.csv")
    if set(ablations["variant"]) != set(variants):
        problems.append(f"ablations.csv covers {sorted(set(ablations['variant']))}, expected {variants}")
    pd.read_csv(results / layout.TESTS_CSV)
    for png in (results / "figures").glob("*.png"):
        if png.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
            problems.append(f"not a PNG: {png}")
    for pdf in (results / "figures").glob("*.pdf"):
        if not pdf.read_bytes().startswith(b"%PDF"):
            problems.append(f"not a PDF: {pdf}")
    for summary in results.glob("scores/**/summary.json"):
        try:
            json.loads(summary.read_text())
        except json.JSONDecodeError as exc:
            problems.append(f"corrupt {summary}: {exc}")
    for csv in results.glob("scores/**/*.csv"):
        try:
            pd.read_csv(csv)
        except Exception as exc:  # any parse failure is a corrupt output
            problems.append(f"corrupt {csv}: {exc}")
    for model in results.glob("models/**/model.pt"):
        try:
            load_model(model)
        except Exception as exc:
            problems.append(f"corrupt {model}: {exc}")
    return problems


def rule_times(workdir: Path) -> pd.DataFrame:
    cfg = yaml.safe_load((REPO / "config" / "mini.yaml").read_text())
    rows = []
    for tsv in (workdir / cfg["results_dir"] / "benchmarks").rglob("*.tsv"):
        rel = tsv.relative_to(workdir / cfg["results_dir"] / "benchmarks")
        step = rel.parts[0] if rel.parts[0] != "report.tsv" else "report"
        if step in ("evaluate",):
            step = f"evaluate {rel.parts[1]}"
        seconds = float(pd.read_csv(tsv, sep="\t")["s"].iloc[-1])
        rows.append(dict(step=step, seconds=seconds))
    frame = pd.DataFrame(rows)
    return frame.groupby("step")["seconds"].agg(["count", "sum", "max"]).reset_index()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="working directory (default: a fresh temporary one, removed afterwards)")
    parser.add_argument("--interrupt-after", type=int, default=0, metavar="N",
                        help="kill the run after N finished jobs, then restart it (robustness check)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary working directory")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="descbench-mini-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"working directory: {workdir}")
    interrupted_s, finished, mtimes = 0.0, set(), {}
    if args.interrupt_after:
        interrupted_s, finished, mtimes = run_interrupted(workdir, args.cores, args.interrupt_after)
        # a killed snakemake leaves its lock behind: release it, as a user would after a crash
        subprocess.run(snakemake_command(workdir, args.cores) + ["--unlock"], check=True,
                       capture_output=True, env=run_env())

    start = time.perf_counter()
    result = subprocess.run(snakemake_command(workdir, args.cores), capture_output=True, text=True,
                            env=run_env())
    wall = time.perf_counter() - start
    (workdir / "run.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        print(result.stderr[-5000:], file=sys.stderr)
        print(f"snakemake failed (exit {result.returncode}); log: {workdir / 'run.log'}", file=sys.stderr)
        return 1

    problems = check_outputs(workdir)
    if args.interrupt_after:
        rerun = finished & started_outputs(result.stdout + result.stderr)
        problems += [f"finished before the kill but recomputed: {p}" for p in sorted(rerun)]
        problems += [f"finished output changed after restart: {p}" for p, t in mtimes.items()
                     if (workdir / p).stat().st_mtime_ns != t]

    times = rule_times(workdir)
    print()
    print(f"mini preset on {args.cores} cores ({os.cpu_count()} visible), snakemake wall time")
    print(times.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    if args.interrupt_after:
        print(f"interrupted run: {interrupted_s:.0f} s, restart to completion: {wall:.0f} s "
              f"({len(finished)} finished outputs kept)")
    else:
        print(f"total wall time: {wall:.0f} s (target <= {TARGET_S} s): "
              f"{'OK' if wall <= TARGET_S else 'OVER TARGET'}")
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    print("outputs: " + ("OK" if not problems else f"{len(problems)} problems"))
    if args.workdir is None and not args.keep and not problems:
        shutil.rmtree(workdir)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
