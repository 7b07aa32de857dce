"""Config values in rule shells: no injection, and paths with spaces and non-ASCII letters work.

The config's paths and set names reach every rule's shell command. The schema refuses shell
metacharacters in them (the Snakefile names the offending key and characters), and every rule quotes
every value it interpolates ({x:q}), so a path with a space is one argument, never two.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from test_workflow import MINI, PAPER, REPO, planned_jobs, snakemake

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
DATA = "my data/ünï root"  # a space and non-ASCII letters, no quotes anywhere
RESULTS = "results/mini run ü"
INJECTED = "INJECTED"


def with_paths(base: dict, data: str = DATA, results: str = RESULTS) -> dict:
    cfg = copy.deepcopy(base)
    cfg["data"]["root"] = data
    cfg["results_dir"] = results
    return cfg


def write(tmp_path: Path, cfg: dict, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def run_env() -> dict[str, str]:
    """The rules call `descbench`: this interpreter's scripts folder first on PATH."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def set_root(c, v):
    c["data"]["root"] = v


def set_results(c, v):
    c["results_dir"] = v


def set_ubc_set(c, v):
    c["ubc"]["sets"][1] = v


def set_train_set(c, v):
    c["ubc"]["train_sets"] = [v]


def set_hp_train_set(c, v):
    c["hpatches"]["train_set"] = v


# (a) injection attempts and other unsafe values, refused by the schema itself

REFUSED = [
    (set_root, "data/mini; touch INJECTED #"),
    (set_root, "data/$(touch INJECTED)"),
    (set_root, "data/`touch INJECTED`"),
    (set_root, "data/a | touch INJECTED"),
    (set_root, "data/a && touch INJECTED"),
    (set_root, "data/a > INJECTED"),
    (set_root, "data/it's"),
    (set_root, 'data/"x"'),
    (set_root, "data\\x"),
    (set_root, "data/{x}"),
    (set_root, "data/*"),
    (set_root, "~/data"),
    (set_root, "-rf"),
    (set_root, ""),
    (set_results, "results\n; touch INJECTED"),
    (set_results, "results\n"),  # Python's `$` would match before a trailing newline
    (set_results, "results/$HOME"),
    (set_results, "results/a\tb"),
    (set_ubc_set, "mini; touch INJECTED"),
    (set_ubc_set, ".."),
    (set_ubc_set, "."),
    (set_ubc_set, "a/b"),
    (set_ubc_set, "a b"),
    (set_ubc_set, "--help"),
    (set_train_set, ".."),
    (set_hp_train_set, "x;y"),
]


@pytest.mark.parametrize("change, value", REFUSED, ids=[repr(v) for _, v in REFUSED])
def test_schema_refuses_shell_metacharacters_in_paths_and_set_names(change, value):
    cfg = copy.deepcopy(MINI)
    change(cfg, value)
    with pytest.raises(WorkflowError, match="does not match"):
        validate(cfg, str(SCHEMA))


ACCEPTED = [
    (set_root, DATA),
    (set_results, RESULTS),
    (set_results, "/abs/path with spaces/Ergebnisse-ä_1.2+x=y@z%:,"),
    (set_ubc_set, "mini_lübeck.v2-a"),
    (set_ubc_set, "..."),
]


@pytest.mark.parametrize("change, value", ACCEPTED, ids=[repr(v) for _, v in ACCEPTED])
def test_schema_accepts_spaces_and_non_ascii_letters(change, value):
    cfg = copy.deepcopy(MINI)
    change(cfg, value)
    validate(cfg, str(SCHEMA))


@pytest.mark.parametrize("change, value, message", [
    (set_root, "data/mini; touch INJECTED #",
     ["config.data.root 'data/mini; touch INJECTED #' is refused: it contains '#', ';'",
      "no shell metacharacters", "spaces"]),
    (set_results, "results/$(touch INJECTED)",
     ["config.results_dir 'results/$(touch INJECTED)' is refused: it contains '$', '(', ')'"]),
    (set_ubc_set, "..", ["config.ubc.sets[1] '..' is refused: it may not be '.' or '..'"]),
])
def test_a_real_run_with_an_injection_attempt_stops_before_any_job(tmp_path, change, value, message):
    """Not a dry run: before the fix `data.root: "data/mini; touch INJECTED #"` ran the touch."""
    cfg = copy.deepcopy(MINI)
    change(cfg, value)
    work = tmp_path / "work"
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work),
         "--configfile", str(write(tmp_path, cfg)), "--cores", "1", "make_mini"],
        capture_output=True, text=True, timeout=120, env=run_env(), cwd=tmp_path)
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    for part in message:
        assert part in output, output[-3000:]
    assert not [p for p in tmp_path.rglob("*") if INJECTED in p.name]
    assert not (work / "data").exists() and not (work / "results").exists()


# (b) every rule's shell command quotes every interpolated value

def shell_commands(output: str) -> list[tuple[str, str]]:
    """(rule, shell command) of every job of a `--dry-run --printshellcmds` listing."""
    found = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", output):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        command = re.search(r"^Shell command: (.*)$", block, re.M)
        if rule and command and command.group(1) != "None":
            found.append((rule.group(1), command.group(1)))
    return found


def options(argv: list[str]) -> dict[str, str]:
    """--option value pairs of an argv (flags without a value map to '')."""
    found = {}
    for i, word in enumerate(argv):
        if word.startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) else ""
            found[word] = "" if nxt.startswith("--") else nxt
    return found


def check_command(rule: str, command: str, cfg: dict) -> None:
    data, results = cfg["data"]["root"], cfg["results_dir"]
    # every space and non-ASCII letter is inside single quotes: nothing of a path is left to the shell
    unquoted = re.sub(r"'[^']*'", "", command)
    assert not any(part in unquoted for part in ("ü", "my data", "mini run")), (rule, command)
    words = shlex.split(command)
    # every rule runs `descbench --log LOG COMMAND ...`: the output in LOG, an error also on the console
    assert words[1] == "--log", (rule, words)
    log = words[2]
    words = words[:1] + words[3:]
    # outside the command itself, for train: `$([ -f OUT/checkpoint.pt ] ...) ... rm -f`
    end = next((i for i, w in enumerate(words) if w.startswith("$(")), len(words))
    argv, rest = words[:end], words[end:]
    assert argv[0] == "descbench", (rule, argv)
    assert log.startswith(f"{results}/logs/") and log.endswith(".log"), (rule, log)
    opts = options(argv)
    assert "--root" not in opts, (rule, argv)  # the old spelling of --data
    if "--data" in opts:
        assert opts["--data"] == data, (rule, argv)
    for opt in ("--model", "--init-from"):
        if opt in opts:
            assert opts[opt].startswith(f"{results}/models/") and opts[opt].endswith("/model.pt"), argv
    if rule == "make_mini":
        seed = str(cfg["data"].get("mini_seed", 0))
        assert argv == ["descbench", "make-mini", "--data", data, "--seed", seed], argv
    elif rule in ("prepare_ubc", "download_ubc"):
        assert argv[:3] == ["descbench", rule.split("_")[0], "ubc"] and argv[4:] == ["--data", data], argv
        assert argv[3] in cfg["ubc"]["sets"], argv
    elif rule.startswith(("prepare_", "download_")):
        what = rule.split("_", 1)[1].replace("_", "-")
        assert argv == ["descbench", rule.split("_")[0], what, "--data", data], argv
    elif rule == "report":
        assert opts["--results"] == results and opts["--out"] == results, argv
        reported = json.loads(opts["--config-json"])
        assert reported["data"]["root"] == data and reported["results_dir"] == results
    else:
        assert opts["--out"].startswith(f"{results}/"), (rule, argv)
    if rule == "train":
        out = opts["--out"]
        assert all(opts[opt] for opt in ("--method", "--train-set", "--seed", "--threads")), argv
        assert rest[:4] == ["$([", "-f", f"{out}/checkpoint.pt", "]"], (rule, rest)
        assert rest[-3:] == ["rm", "-f", f"{out}/checkpoint.pt"], (rule, rest)


@pytest.mark.parametrize("base, rules", [
    (PAPER, {"download_ubc", "download_hpatches", "download_hpatches_tasks", "prepare_ubc",
             "prepare_hpatches", "train", "evaluate_ubc_model", "evaluate_ubc_handcrafted",
             "evaluate_hpatches_model", "evaluate_hpatches_handcrafted", "report_manifest", "report",
             "download_hpatches_sequences", "prepare_hpatches_sequences", "evaluate_sequences_model",
             "evaluate_sequences_handcrafted"}),
    (MINI, {"make_mini", "prepare_ubc", "prepare_hpatches", "train", "evaluate_ubc_model",
            "evaluate_ubc_handcrafted", "evaluate_hpatches_model", "evaluate_hpatches_handcrafted",
            "report_manifest", "report", "prepare_hpatches_sequences", "evaluate_sequences_model", "evaluate_sequences_handcrafted"}),
], ids=["paper", "mini"])
def test_every_shell_command_quotes_paths_with_spaces_and_non_ascii_letters(tmp_path, base, rules):
    cfg = with_paths(base)
    result = snakemake(tmp_path / "work", "--configfile", str(write(tmp_path, cfg)), "--printshellcmds")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    commands = shell_commands(result.stdout)
    assert len(commands) == len(planned_jobs(result.stdout)) - 1  # every job but `all`
    assert {rule for rule, _ in commands} == rules
    for rule, command in commands:
        check_command(rule, command, cfg)
    assert any("--init-from" in c for r, c in commands if r == "train")  # the annealing stage is covered


# (c) a real run of the cheap data rules with such paths

def test_make_mini_and_prepare_run_with_spaces_and_non_ascii_letters_and_leave_no_stray_path(tmp_path):
    """Before the fix `results_dir: "results/mini run ü"` failed and left a stray file results/mini
    (the unquoted `> results/mini run ü/logs/...` redirected into `results/mini`)."""
    cfg = with_paths(MINI)
    work = tmp_path / "work"
    target = f"{DATA}/ubc/{MINI['ubc']['sets'][0]}/meta.json"  # make_mini, then prepare_ubc of one set
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work),
         "--configfile", str(write(tmp_path, cfg)), "--cores", "1", target],
        capture_output=True, text=True, timeout=300, env=run_env())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (work / target).is_file()
    for s in MINI["ubc"]["sets"]:
        assert (work / DATA / "raw" / "ubc" / s).is_dir()
    logs = work / RESULTS / "logs" / "data"
    assert (logs / "make_mini.log").is_file() and (logs / "prepare_ubc_mini_liberty.log").is_file()
    # nothing outside the configured folders: no `results/mini`, no `my`, no `root`, no `run`, no `ü`
    assert sorted(p.name for p in work.iterdir()) == sorted([".snakemake", "my data", "results"])
    assert [p.name for p in (work / "my data").iterdir()] == ["ünï root"]
    assert [p.name for p in (work / "results").iterdir()] == ["mini run ü"]
    assert sorted(p.name for p in (work / RESULTS).iterdir()) == ["benchmarks", "logs"]
