"""The workflow's report rule on synthetic score files, through the real Snakefile, and the HTML report.

Every upstream output (data, models, scores) is made here, older than the report, so Snakemake runs
only the report rule; then `snakemake --report` must carry the tables and figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from descbench.report import layout
from test_report_end_to_end import make_results, synthetic_config

REPO = Path(__file__).resolve().parents[1]


def workflow_config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load((REPO / "config" / "mini.yaml").read_text())
    synthetic = synthetic_config(seeds=(0,))
    synthetic["handcrafted"] = ["raw"]
    cfg.update({k: synthetic[k] for k in ("methods", "handcrafted", "reference", "seeds", "ubc",
                                          "hpatches", "report")})
    cfg.update(preset="synthetic", results_dir="results", data={"root": "data", "source": "mini"},
               downstream=[])  # the sequences report has tests of its own
    path = tmp_path / "synthetic.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def fake_upstream(tmp_path: Path, cfg: dict) -> None:
    """Data files the DAG expects, and every model and score file, all dated an hour ago."""
    data = tmp_path / "data"
    paths = [data / "raw" / "hpatches-release", data / "raw" / "hpatches-tasks"]
    paths += [data / "raw" / "ubc" / s for s in cfg["ubc"]["sets"]]
    for p in paths:
        p.mkdir(parents=True, exist_ok=True)
    files = [data / "hpatches" / "meta.json"] + [
        data / "ubc" / s / name for s in cfg["ubc"]["sets"]
        for name in ("patches.npy", "labels.npy", "pairs_100k.npy", "meta.json")]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("")
    make_results(tmp_path / "results", cfg)
    past = os.path.getmtime(tmp_path) - 3600
    for root, dirs, names in os.walk(tmp_path):
        for name in dirs + names:
            os.utime(Path(root) / name, (past, past))


def test_report_rule_runs_alone_and_the_html_report_carries_tables_and_figures(tmp_path):
    config_path = workflow_config(tmp_path)
    cfg = yaml.safe_load(config_path.read_text())
    fake_upstream(tmp_path, cfg)
    base = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
            "--configfile", str(config_path)]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    run = subprocess.run(base + ["--cores", "1"], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "localrule report:" in run.stderr + run.stdout
    assert "localrule train:" not in run.stderr + run.stdout
    for path in layout.report_files(tmp_path / "results"):
        assert path.is_file() and path.stat().st_size > 0, path

    html = tmp_path / "results" / "report.html"
    rep = subprocess.run(base + ["--report", str(html)], capture_output=True, text=True, timeout=300,
                         env=env)
    assert rep.returncode == 0, rep.stdout[-3000:] + rep.stderr[-3000:]
    text = html.read_text(errors="replace")
    for name in ("ubc_fpr95", "hpatches_summary", "training_curves", "difficulty", "tests.csv"):
        assert name in text


def test_released_only_dry_run_plans_the_report_on_the_released_scores(tmp_path):
    """config/released.yaml trains nothing (methods: []): the report still runs, on the released scores."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(REPO / "config" / "released.yaml"), "--dry-run", "--forceall"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = yaml.safe_load((REPO / "config" / "released.yaml").read_text())["results_dir"]
    # the report reads the manifest of each stage with files (only released scores here), not every
    # score file, so Snakemake's `reason:` line for it stays readable
    manifest = str(layout.manifest_file(results, "released_scores"))
    sequences = str(layout.manifest_file(results, "sequences_scores"))  # the releases on the sequences
    assert sorted(_jobs(run.stdout, "report")[0]["input"]) == sorted([manifest, sequences])
    jobs = {job["output"][0]: job for job in _jobs(run.stdout, "report_manifest")}
    assert sorted(jobs) == sorted([manifest, sequences])
    released = jobs[manifest]["input"]
    assert all("/scores/hpatches_sequences/d2net/released/" in path for path in jobs[sequences]["input"])
    assert str(layout.ubc_released_dir(results, "hardnet-plus@liberty", "notredame") / "summary.json") in released
    assert str(layout.hpatches_released_dir(results, "sosnet@hpatches_a", "a") / "summary.json") in released
    assert "rule train:" not in run.stdout



def _jobs(stdout: str, rule: str) -> list[dict[str, list[str]]]:
    """The input and output paths of every job of ``rule`` in a dry run's listing."""
    jobs = []
    for block in stdout.split(f"rule {rule}:\n")[1:]:
        fields = {}
        for line in block.splitlines():
            key, _, value = line.strip().partition(": ")
            if key in ("input", "output") and key not in fields:
                fields[key] = [path.strip() for path in value.split(",")]
        jobs.append(fields)
    return jobs
