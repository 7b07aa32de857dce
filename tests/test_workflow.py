"""The Snakemake workflow: the paper DAG on a machine without data, the mini DAG, config validation.

Snakemake runs in a subprocess with --directory in a temporary folder, so nothing lands in the
repository; --dry-run plans jobs without running any.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from descbench import registry

REPO = Path(__file__).resolve().parents[1]
PAPER = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
MINI = yaml.safe_load((REPO / "config" / "mini.yaml").read_text())


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--dry-run", *args],
        capture_output=True, text=True, timeout=180)


def planned_jobs(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job in a dry-run listing."""
    jobs = []
    for block in re.split(r"\n(?=\[[^\]]+\]\nrule )", output):
        rule = re.search(r"^rule (\w+):", block, re.M) or re.search(r"\nrule (\w+):", block)
        if not rule:
            continue
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        pairs = dict(kv.split("=", 1) for kv in wildcards.group(1).split(", ")) if wildcards else {}
        jobs.append((rule.group(1), pairs))
    return jobs


def trained(methods: list[str]) -> set[str]:
    """The configured methods and every method they continue from."""
    found = set()
    for method in methods:
        while method is not None and method not in found:
            found.add(method)
            method = registry.get(method).init_from
    return found


def expected_counts(cfg: dict) -> dict[str, int]:
    sets, train_sets, seeds = cfg["ubc"]["sets"], cfg["ubc"]["train_sets"], cfg["seeds"]
    methods, handcrafted = cfg["methods"], cfg["handcrafted"]
    return {
        "train": len(train_sets) * len(seeds) * len(trained(methods)),
        "evaluate_ubc_model": len(train_sets) * (len(sets) - 1) * len(seeds) * len(methods),
        "evaluate_hpatches_model": len(seeds) * len(methods),
        "evaluate_ubc_handcrafted": len(handcrafted) * len(sets),
        "evaluate_hpatches_handcrafted": len(handcrafted),
        "prepare_ubc": len(sets),
        "prepare_hpatches": 1,
        "report": 1,
        "all": 1,
    }


def test_paper_dry_run_lists_the_whole_dag_without_data(tmp_path):
    result = snakemake(tmp_path, "--printshellcmds")
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = planned_jobs(result.stdout)
    counts = {rule: sum(1 for r, _ in jobs if r == rule) for rule, _ in jobs}
    for rule, n in expected_counts(PAPER).items():
        assert counts.get(rule) == n, (rule, counts)
    assert counts["download_ubc"] == 3 and counts["download_hpatches"] == 1
    assert counts["download_hpatches_tasks"] == 1 and "make_mini" not in counts
    # every (train set, method, seed) trained exactly once: stage 1 is shared
    train = [(w["train_set"], w["method"], w["seed"]) for r, w in jobs if r == "train"]
    assert len(train) == len(set(train))
    assert ("liberty", "balanced-no-annealing", "0") in train
    # HPatches evaluates the models of the configured train set only
    hp_sets = {w["train_set"] for r, w in jobs if r == "evaluate_hpatches_model"}
    assert hp_sets == {PAPER["hpatches"]["train_set"]}
    # a model is never tested on its own train set
    assert all(w["train_set"] != w["test_set"] for r, w in jobs if r == "evaluate_ubc_model")
    # the annealing stage continues from the shared stage-1 model
    init = "--init-from results/models/liberty/balanced-no-annealing/seed1/model.pt"
    assert "--method balanced --train-set liberty --seed 1" in result.stdout
    assert sum(init in line for line in result.stdout.splitlines()) == 2  # balanced, fixed-hardness


def test_mini_dry_run_generates_data_instead_of_downloading(tmp_path):
    result = snakemake(tmp_path, "--configfile", str(REPO / "config" / "mini.yaml"), "--printshellcmds")
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = planned_jobs(result.stdout)
    counts = {rule: sum(1 for r, _ in jobs if r == rule) for rule, _ in jobs}
    for rule, n in expected_counts(MINI).items():
        assert counts.get(rule) == n, (rule, counts)
    assert counts["make_mini"] == 1 and not any(r.startswith("download") for r, _ in jobs)
    assert "--scale mini" in result.stdout and "make-mini --data data/mini" in result.stdout


def _with(tmp_path: Path, change) -> Path:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    change(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda c: c.__setitem__("methds", ["hardnet"]),
     ["unknown key 'methds' in config", "did you mean 'methods'", "valid keys:"]),
    (lambda c: c["ubc"].__setitem__("convnetion", "hardnet"),
     ["unknown key 'convnetion' in config.ubc", "did you mean 'convention'"]),
    (lambda c: c.__setitem__("methods", ["balanced", "hardnett"]),
     ["unknown method (learned descriptor) 'hardnett'", "did you mean 'hardnet'", "valid choices:",
      "balanced-no-annealing"]),
    (lambda c: c.__setitem__("scale", "huge"), ["'huge' is not one of ['paper', 'mini']"]),
])
def test_config_errors_name_the_bad_value_and_the_choices(tmp_path, change, message):
    result = snakemake(tmp_path, "--configfile", str(_with(tmp_path, change)))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    for part in message:
        assert part in output, output[-2000:]
