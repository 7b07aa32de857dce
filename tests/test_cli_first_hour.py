"""What a newcomer meets in the first hour (issue 10): one name per folder option, help texts, no silent
overwrite of another model's results, defaults that fit the data folder, and batches the training set can
fill, checked before any work.

Data are generated here: two tiny prepared UBC sets and a tiny HPatches folder; models are saved from
untrained networks (what is tested is the bookkeeping, not the scores).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from descbench import cli, registry
from descbench.data import hpatches_tasks, sources
from descbench.models import save_model

RNG = np.random.default_rng(7)


# ------------------------------------------------------------------------------------------ small data

def make_ubc_set(data: Path, name: str, n_points: int = 20) -> None:
    folder = data / "ubc" / name
    folder.mkdir(parents=True)
    labels = np.repeat(np.arange(n_points), 2)
    patches = RNG.integers(0, 256, (2 * n_points, 64, 64)).astype(np.uint8)
    n = 2 * n_points
    pairs = [[2 * i, 2 * i + 1, 1] for i in range(n_points)] + [[2 * i, (2 * i + 3) % n, 0] for i in range(n_points)]
    np.save(folder / "patches.npy", patches)
    np.save(folder / "labels.npy", labels.astype(np.int64))
    np.save(folder / "pairs_100k.npy", np.asarray(pairs, dtype=np.int64))


def make_hpatches(data: Path) -> None:
    folder = data / "hpatches"
    folder.mkdir(parents=True)
    refs = {}
    for name, n in (("i_x", 12), ("v_y", 10)):
        stack = RNG.integers(0, 256, (16, n, 65, 65)).astype(np.uint8)
        np.save(folder / f"{name}.npy", stack)
        refs[name] = stack[0]
    splits = {"full": {"name": "full", "test": ["i_x", "v_y"]}}
    hpatches_tasks.write_task_files(folder / "tasks", refs, splits, n_pairs=40, n_queries=4, n_distractors=6)
    (folder / "tasks" / "splits.json").write_text(json.dumps(splits))


def make_model(path: Path, method: str, train_set: str, seed: int = 0) -> Path:
    net = registry.get(method).network()
    save_model(path, method, net.state_dict(), {"method": method, "train_set": train_set, "seed": seed,
                                                 "scale": "mini"})
    return path


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """tmp_path/data with UBC sets tiny_a, tiny_b and a tiny HPatches; the working folder is tmp_path, so
    default outputs land under tmp_path/results."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "data"
    make_ubc_set(root, "tiny_a")
    make_ubc_set(root, "tiny_b")
    make_hpatches(root)
    return root


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


# ------------------------------------------------------------------- item 9/10: one name per folder option

ALIASES = [
    (["download", "ubc", "--root", "D"], ["download", "ubc", "--data", "D"]),
    (["download", "hpatches", "--root", "D"], ["download", "hpatches", "--data", "D"]),
    (["download", "hpatches-tasks", "--root", "D"], ["download", "hpatches-tasks", "--data", "D"]),
    (["download", "weights", "--root", "D"], ["download", "weights", "--data", "D"]),
    (["prepare", "ubc", "--root", "D"], ["prepare", "ubc", "--data", "D"]),
    (["prepare", "hpatches", "--root", "D"], ["prepare", "hpatches", "--data", "D"]),
    (["make-mini", "--out", "D"], ["make-mini", "--data", "D"]),
]


@pytest.mark.parametrize("old, new", ALIASES, ids=[" ".join(old[:-1]) for old, _ in ALIASES])
def test_old_spellings_of_the_data_folder_still_work(old, new):
    parser = cli.build_parser()
    assert parser.parse_args(old).data == parser.parse_args(new).data == Path("D")


@pytest.mark.parametrize("command", [["download", "ubc"], ["download", "hpatches"], ["download", "hpatches-tasks"],
                                     ["download", "weights"], ["prepare", "ubc"], ["prepare", "hpatches"],
                                     ["make-mini"], ["train"], ["evaluate", "ubc"], ["evaluate", "hpatches"],
                                     ["export"]])
def test_help_shows_data_and_no_old_spelling(capsys, command):
    text = _help(capsys, *command)
    assert "--data DATA" in text and "--root" not in text
    if command == ["make-mini"]:
        assert "--out" not in text
    assert "--descriptors" not in text  # the old name of --descriptor-files


def test_descriptor_files_and_its_hidden_alias(capsys):
    parser = cli.build_parser()
    for benchmark in ("ubc", "hpatches"):
        new = parser.parse_args(["evaluate", benchmark, "--descriptor-files", "F"])
        old = parser.parse_args(["evaluate", benchmark, "--descriptors", "F"])
        assert new.descriptor_files == old.descriptor_files == Path("F")
        assert "--descriptor-files PATH" in _help(capsys, "evaluate", benchmark)
    with pytest.raises(SystemExit):  # still one source at a time
        parser.parse_args(["evaluate", "ubc", "--descriptors", "F", "--descriptor", "sift"])


def test_the_alias_runs_the_command(tmp_path, capsys):
    """--root is not only parsed: prepare with it reads the same folder (and names --data in its error)."""
    assert cli.main(["prepare", "ubc", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"no UBC sets in {tmp_path / 'raw' / 'ubc'}" in err and f"--data {tmp_path}" in err


# --------------------------------------------------------------------------------------- item 12: help

def _option_help(text: str, option: str) -> str:
    """The help text of ``option`` in the options section of a --help output."""
    options = text.split("\noptions:\n", 1)[1]
    return re.split(r"\n  -", options.split(f"\n  {option}", 1)[1], maxsplit=1)[0].strip()


def test_help_texts(capsys):
    top = _help(capsys)
    assert "``" not in top and "--log FILE" in top
    train = _help(capsys, "train")
    for option in ("--seed SEED", "--device {auto,cpu,cuda}", "--scale {paper,mini}"):
        assert len(_option_help(train, option)) > 20, option  # a help text, not just the option
    assert "(default;" in _option_help(train, "--scale {paper,mini}")
    export = _help(capsys, "export")
    assert "{,,;}" not in export and "--delimiter CHAR" in export
    for option in ("--format {csv,npy}", "--device {auto,cpu,cuda}"):
        assert len(_option_help(export, option)) > 20, option
    assert "Describe every prepared HPatches sequence" in export
    assert "Every registered descriptor" in _help(capsys, "list")
    assert len(_option_help(_help(capsys, "make-mini"), "--seed SEED")) > 20



def test_help_and_building_the_parser_do_not_import_torch_or_opencv():
    """Every command builds the whole parser first: a heavy import there slows down each one (and --help)."""
    code = textwrap.dedent("""
        import sys
        from descbench import cli
        cli.build_parser()
        for argv in (["--help"], ["evaluate", "hpatches-sequences", "--help"]):
            try:
                cli.main(argv)
            except SystemExit:
                pass
        print(",".join(m for m in ("torch", "cv2") if m in sys.modules), file=sys.stderr)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--max-keypoints MAX_KEYPOINTS" in result.stdout and "(default 2000)" in result.stdout
    assert result.stderr.strip() == "", f"building the parser imported {result.stderr.strip()}"

def test_list_columns_fit_long_names(monkeypatch, capsys):
    found = registry.discovery()
    long = dataclasses.replace(found.descriptors["sift"], name="a-plugin-with-a-name-longer-than-any-column")
    monkeypatch.setattr(registry, "discovery",
                        lambda: dataclasses.replace(found, descriptors={**found.descriptors, long.name: long}))
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(found.descriptors) + 1
    kinds = {line.index(" handcrafted ") if " handcrafted " in line else
             line.index(" learned ") if " learned " in line else line.index(" released ") for line in lines}
    dims = {re.search(r" \d+-D ", line).start() for line in lines}
    assert len(kinds) == 1 and len(dims) == 1  # every column starts at the same place on every line


# -------------------------------------------------------------------------- item 2: errors on the console

def test_log_sends_output_to_the_file_and_the_error_to_the_console_too(tmp_path):
    """A download whose every mirror fails, under --log (as the workflow runs it): the reason, each mirror
    and the mini preset on the console, everything in the log."""
    script = tmp_path / "run.py"
    log = tmp_path / "logs" / "download.log"
    script.write_text(textwrap.dedent(f"""
        import sys
        from descbench import cli
        from descbench.data import download

        def unreachable(mirror, *args, **kwargs):
            raise download._MirrorFailed(f"host {{mirror.url.split('/')[2]}} not found")

        download._download = unreachable
        sys.exit(cli.main(["--log", {str(log)!r}, "download", "ubc", "liberty", "--data", {str(tmp_path / "d")!r}]))
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    mirrors = [m.url for m in sources.CATALOGUE.ubc["liberty"].archive.mirrors]
    for text in (result.stderr, log.read_text()):
        assert "could not get a verified copy of liberty from any mirror" in text
        assert all(url in text for url in mirrors)
        assert "snakemake --cores all --configfile config/mini.yaml" in text and "data.from_dir" in text
    assert f"the command's full output is in {log}" in result.stderr
    assert "WARNING" in log.read_text() and "WARNING" not in result.stderr  # the progress stays in the log


def test_log_that_cannot_be_written_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert cli.main(["--log", str(tmp_path / "file" / "x.log"), "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("descbench list: error: --log ") and err.count("\n") == 1


def test_hpatches_tasks_from_dir_names_every_missing_file(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "splits.json").write_text("{}")  # present but not the published file
    assert cli.main(["download", "hpatches-tasks", "--data", str(tmp_path / "d"), "--from-dir", str(mine)]) == 2
    err = capsys.readouterr().err
    names = [remote.name for remote in sources.HPATCHES_TASKS.files]
    assert f"hpatches-tasks: {len(names)} of {len(names)} task files missing" in err
    absent = err.split(f"not in --from-dir {mine} or its subfolders ({len(names) - 1}): ", 1)[1].split(";")[0]
    assert absent.split(", ") == [n for n in names if n != "splits.json"]
    assert "no verified copy of splits.json in --from-dir" in err


# ------------------------------------------------------------------------- item 4: no silent overwrite

def test_default_output_is_named_after_the_model_and_records_it(data, tmp_path, capsys):
    hardnet = make_model(tmp_path / "runs" / "seed0" / "model.pt", "hardnet", "tiny_a")
    assert cli.main(["evaluate", "ubc", "--model", str(hardnet), "--data", str(data)]) == 0
    out = tmp_path / "results" / "adhoc" / "ubc" / "hardnet" / "tiny_a" / "seed0"
    assert sorted(p.name for p in out.iterdir()) == ["tiny_b"]  # every prepared set but its train set
    summary = json.loads((out / "tiny_b" / "summary.json").read_text())
    assert summary["source"] == {"kind": "model", "method": "hardnet", "train_set": "tiny_a", "seed": 0,
                                 "scale": "mini", "path": str(hardnet)}
    assert cli.main(["evaluate", "hpatches", "--model", str(hardnet), "--data", str(data),
                     "--tasks", "matching"]) == 0
    hp = tmp_path / "results" / "adhoc" / "hpatches" / "hardnet" / "tiny_a" / "seed0" / "full" / "summary.json"
    assert json.loads(hp.read_text())["source"]["method"] == "hardnet"
    # another method from a folder of the same name goes elsewhere: nothing is replaced
    sosnet = make_model(tmp_path / "other" / "seed0" / "model.pt", "sosnet", "tiny_a")
    assert cli.main(["evaluate", "ubc", "--model", str(sosnet), "--data", str(data)]) == 0
    assert (tmp_path / "results" / "adhoc" / "ubc" / "sosnet" / "tiny_a" / "seed0" / "tiny_b").is_dir()
    assert json.loads((out / "tiny_b" / "summary.json").read_text()) == summary


def test_replacing_another_models_results_needs_force(data, tmp_path, capsys):
    hardnet = make_model(tmp_path / "a" / "model.pt", "hardnet", "tiny_a")
    sosnet = make_model(tmp_path / "b" / "model.pt", "sosnet", "tiny_a")
    out = tmp_path / "scores"
    args = ["evaluate", "ubc", "--data", str(data), "--test-set", "tiny_b", "--out", str(out)]
    assert cli.main([*args, "--model", str(hardnet)]) == 0
    before = (out / "summary.json").read_bytes()
    capsys.readouterr()
    assert cli.main([*args, "--model", str(sosnet)]) == 2
    err = capsys.readouterr().err
    assert "holds the UBC results of model hardnet trained on tiny_a, seed 0" in err
    assert "this run evaluates model sosnet trained on tiny_a, seed 0" in err and "--force" in err
    assert (out / "summary.json").read_bytes() == before
    assert cli.main([*args, "--model", str(hardnet)]) == 0  # the same model again: replaced quietly
    assert cli.main([*args, "--model", str(sosnet), "--force"]) == 0
    assert json.loads((out / "summary.json").read_text())["source"]["method"] == "sosnet"
    # registered descriptors, and HPatches, the same way
    assert cli.main([*args[:-1], str(tmp_path / "sift"), "--descriptor", "sift"]) == 0
    assert cli.main([*args[:-1], str(tmp_path / "sift"), "--descriptor", "raw"]) == 2
    assert "results of descriptor sift; this run evaluates descriptor raw" in capsys.readouterr().err
    hp = ["evaluate", "hpatches", "--data", str(data), "--tasks", "matching", "--out", str(tmp_path / "hp")]
    assert cli.main([*hp, "--descriptor", "raw"]) == 0
    assert cli.main([*hp, "--model", str(hardnet)]) == 2
    assert "HPatches results of descriptor raw; this run evaluates model hardnet" in capsys.readouterr().err


def test_results_written_before_sources_were_recorded(data, tmp_path, capsys):
    out = tmp_path / "scores"
    args = ["evaluate", "ubc", "--data", str(data), "--test-set", "tiny_b", "--out", str(out)]
    assert cli.main([*args, "--descriptor", "sift"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    del summary["source"]
    (out / "summary.json").write_text(json.dumps(summary))
    assert cli.main([*args, "--descriptor", "sift"]) == 0  # same descriptor name: replaced
    (out / "summary.json").write_text(json.dumps(summary))
    assert cli.main([*args, "--descriptor", "raw"]) == 2
    assert "holds the UBC results of sift" in capsys.readouterr().err


# ------------------------------------------------------------------ item 11/12: defaults and warnings

def test_test_set_defaults_and_errors_list_the_prepared_sets(data, tmp_path, capsys, caplog):
    out = tmp_path / "all"
    assert cli.main(["evaluate", "ubc", "--descriptor", "raw", "--data", str(data), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["tiny_a", "tiny_b"]  # every prepared set, one folder each
    capsys.readouterr()
    assert cli.main(["evaluate", "ubc", "--descriptor", "raw", "--data", str(data), "--test-set", "notredame"]) == 2
    err = capsys.readouterr().err
    assert "--test-set notredame" in err and "prepared: tiny_a, tiny_b" in err
    assert cli.main(["evaluate", "ubc", "--descriptor", "raw", "--data", str(tmp_path / "empty")]) == 2
    assert "no UBC set is prepared in" in capsys.readouterr().err
    model = make_model(tmp_path / "m" / "model.pt", "hardnet", "tiny_a")
    with caplog.at_level(logging.WARNING):
        assert cli.main(["evaluate", "ubc", "--model", str(model), "--data", str(data), "--test-set", "tiny_a",
                         "--out", str(tmp_path / "own")]) == 0
    assert any("was trained on tiny_a" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert cli.main(["evaluate", "ubc", "--model", str(model), "--data", str(data), "--test-set", "tiny_b",
                         "--out", str(tmp_path / "other")]) == 0
    assert not any("was trained on" in r.getMessage() for r in caplog.records)


def test_train_refuses_an_unfillable_batch_before_any_step(data, tmp_path, monkeypatch, capsys):
    from descbench.train import loop

    def no_training(*args, **kwargs):
        pytest.fail("training started")

    monkeypatch.setattr(loop, "train", no_training)
    args = ["train", "--method", "hardnet", "--train-set", "tiny_a", "--data", str(data)]
    assert cli.main([*args, "--out", str(tmp_path / "paper")]) == 2  # default scale: paper
    err = capsys.readouterr().err
    assert "hardnet at --scale paper cannot train on tiny_a (40 patches, 20 3D points)" in err
    assert "K=1024 classes per batch" in err and "use --scale mini" in err
    make_ubc_set(data, "tinier", n_points=12)  # too small for the mini scale too
    assert cli.main([*args[:4], "tinier", *args[5:], "--scale", "mini", "--out", str(tmp_path / "mini")]) == 2
    err = capsys.readouterr().err
    assert "at --scale mini cannot train on tinier" in err and "train on a larger set" in err
    assert cli.main([*args[:4], "liberty", *args[5:], "--out", str(tmp_path / "x")]) == 2
    assert "prepared: tinier, tiny_a, tiny_b" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() and any((tmp_path / name).iterdir())
                   for name in ("paper", "mini", "x"))
