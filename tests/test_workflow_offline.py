"""The paper preset without the network: the failing download says why on the console (every mirror's
reason, --from-dir / data.from_dir, the mini preset), not only in its log file; and data.from_dir makes the
download rules take the user's own files.

The mirrors are made unreachable by a proxy whose host cannot resolve (``.invalid`` never does), so these
tests never touch the network and fail in seconds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from descbench.data import sources
from test_workflow import PAPER, REPO, snakemake
from test_workflow_paths import run_env

UNREACHABLE = "http://proxy.invalid:1"
TASKS_TARGET = "data/raw/hpatches-tasks"


def offline_env() -> dict[str, str]:
    env = run_env()
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[name] = UNREACHABLE
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    return env


def run_workflow(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--cores", "1", *args],
        capture_output=True, text=True, timeout=300, env=offline_env())


def test_failed_download_says_why_on_the_console(tmp_path):
    result = run_workflow(tmp_path / "work", TASKS_TARGET)
    console = result.stdout + result.stderr
    assert result.returncode != 0, console[-3000:]
    first = sources.HPATCHES_TASKS.files[0]
    # the reason, with every mirror, on the console (before: only "CalledProcessError ... check log file(s)")
    assert f"could not get a verified copy of {first.name} from any mirror" in console, console[-3000:]
    for mirror in first.mirrors:
        assert mirror.url in console
    assert "--from-dir" in console and "data.from_dir" in console
    assert "snakemake --cores all --configfile config/mini.yaml" in console
    # every missing task file is named
    assert all(remote.name in console for remote in sources.HPATCHES_TASKS.files)
    log = tmp_path / "work" / "results" / "logs" / "data" / "download_hpatches_tasks.log"
    assert f"could not get a verified copy of {first.name}" in log.read_text()
    assert f"the command's full output is in {Path('results/logs/data/download_hpatches_tasks.log')}" in console


def test_data_from_dir_is_passed_to_the_download_rules(tmp_path):
    mine = tmp_path / "my archives"
    mine.mkdir()
    cfg = {**PAPER, "data": {**PAPER["data"], "from_dir": str(mine)}}
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg))
    dry = snakemake(tmp_path / "dry", "--configfile", str(config), "--printshellcmds")
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    downloads = [line for line in dry.stdout.splitlines() if " download " in line and "descbench" in line]
    assert len(downloads) == 6, downloads  # three UBC sets, HPatches, the task files, the sequences
    assert all(f"--from-dir '{mine}'" in line for line in downloads), downloads
    # a real run: the empty folder is searched, nothing is downloaded, every missing file is named
    result = run_workflow(tmp_path / "work", TASKS_TARGET, "--configfile", str(config))
    console = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"not in --from-dir {mine} or its subfolders ({len(sources.HPATCHES_TASKS.files)})" in console, \
        console[-3000:]
    assert all(remote.name in console for remote in sources.HPATCHES_TASKS.files)


def test_data_from_dir_with_the_mini_source_is_refused(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "mini.yaml").read_text())
    cfg["data"]["from_dir"] = str(tmp_path)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg))
    dry = snakemake(tmp_path / "dry", "--configfile", str(config))
    assert dry.returncode != 0
    assert "data.from_dir is used by data source download only" in dry.stdout + dry.stderr


def test_the_proxy_really_is_unreachable():
    """The premise of these tests: nothing leaves the machine through the configured proxy."""
    import requests

    env = offline_env()
    session = requests.Session()
    session.trust_env = False
    try:
        session.get("https://example.org/", proxies={"https": env["HTTPS_PROXY"]}, timeout=30)
    except requests.RequestException:
        return
    raise AssertionError("a request through the .invalid proxy succeeded")

