"""The downstream rules in the workflow DAG: the paper preset downloads the sequences, the mini preset
takes make-mini's, both evaluate every model, handcrafted descriptor and eligible release."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def dry_run(workdir: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
                             str(workdir), "--dry-run", "--printshellcmds", *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1].split("\n\n")[0]
    return {line.split()[0]: int(line.split()[1]) for line in table.splitlines()[3:] if line.strip()}


def test_paper_and_mini_dags_list_the_sequences_jobs(tmp_path):
    for preset, config in (("paper", REPO / "config" / "config.yaml"), ("mini", REPO / "config" / "mini.yaml")):
        cfg = yaml.safe_load(config.read_text())
        assert cfg["downstream"] == ["hpatches_sequences"]
        out = dry_run(tmp_path / preset, "--configfile", str(config))
        jobs = counts(out)
        assert jobs["prepare_hpatches_sequences"] == 1
        assert jobs["evaluate_sequences_model"] == len(cfg["methods"]) * len(cfg["seeds"])
        assert jobs["evaluate_sequences_handcrafted"] == len(cfg["handcrafted"])
        assert jobs.get("download_hpatches_sequences", 0) == (preset == "paper")
        train_set = cfg["hpatches"]["train_set"]
        assert f"scores/hpatches_sequences/d2net/{train_set}/balanced/seed0/pairs.csv" in out
        assert " evaluate hpatches-sequences --descriptor sift" in out and "--subset d2net" in out


def test_downstream_off_plans_none(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "mini.yaml").read_text())
    cfg["downstream"] = []
    path = tmp_path / "off.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert not any("sequences" in rule for rule in counts(dry_run(tmp_path, "--configfile", str(path))))
