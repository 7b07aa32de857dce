"""Released weights in the report: rows marked "released" in the UBC and HPatches tables, on synthetic
score files laid out as the workflow writes them (descbench.report.layout), with no significance marks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from descbench import weights
from descbench.report import layout
from descbench.report.build import DAGGER, build_report
from descbench.report.tables import latex_escape
from test_report_end_to_end import _ubc_pairs, make_results, synthetic_config, write_hpatches, write_ubc

SETS = ["liberty", "notredame", "yosemite"]
# one UBC train set (liberty); one on none (hardtfeat); one on a set that is no configured train set
# (yosemite: no UBC cell); one on all of UBC and HPatches (hardnet++: no cell at all); one on HPatches split a
RELEASES = ["hardnet-plus@liberty", "hardtfeat", "hardnet-plus@yosemite", "hardnet++", "sosnet@hpatches_a"]
QUALITY = {"hardnet-plus@liberty": 0.95, "hardtfeat": 0.5, "hardnet-plus@yosemite": 0.8,
           "hardnet++": 0.9, "sosnet@hpatches_a": 0.85}


def released_config(methods=True) -> dict:
    cfg = synthetic_config(seeds=(0,))
    cfg["ubc"].update(sets=SETS, train_sets=["liberty", "notredame"])
    cfg["hpatches"]["train_set"] = "liberty"
    cfg["released"] = list(RELEASES)
    if not methods:
        cfg.update(methods=[], handcrafted=["raw"], reference=None)
    return cfg


def write_released(root, cfg, seed=1) -> dict:
    """The score files of every release the workflow makes (released_ubc_scores / released_hpatches_scores)."""
    rng = np.random.default_rng(seed)
    pairs = {s: _ubc_pairs(np.random.default_rng(0)) for s in SETS}  # not compared: any pairs do
    truth = {}
    for name in cfg["released"]:
        for test in weights.ubc_test_sets(name, cfg["ubc"]["sets"]):
            truth[(name, test)] = 100 * write_ubc(layout.ubc_released_dir(root, name, test), name, test,
                                                  pairs[test], QUALITY[name], rng)
        split = weights.hpatches_split_for(name, cfg["hpatches"]["split"])
        if split is not None:
            write_hpatches(layout.hpatches_released_dir(root, name, split), name, QUALITY[name], rng)
    return truth


def _md_row(md: str, label: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def test_released_rows_in_every_table_format_without_significance_marks(tmp_path):
    cfg = released_config()
    results, out = tmp_path / "results", tmp_path / "out"
    make_results(results, cfg)
    truth = write_released(results, cfg)
    build_report(cfg, results, out)
    tables = out / "tables"

    # UBC, CSV: the tidy numbers, flagged released, only in the cells a release fills
    ubc = pd.read_csv(tables / "ubc_fpr95.csv")
    assert not ubc[ubc.method.isin(cfg["methods"] + cfg["handcrafted"])].released.any()
    plus = ubc[ubc.method == "hardnet-plus@liberty (released)"]
    assert plus.released.all() and (plus.n_seeds == 1).all()
    assert set(zip(plus.train_set, plus.test_set)) == {("liberty", "notredame"), ("liberty", "yosemite")}
    for test in ("notredame", "yosemite"):
        assert plus[plus.test_set == test].fpr95_mean.iloc[0] == pytest.approx(truth[("hardnet-plus@liberty", test)])
    tfeat = ubc[ubc.method == "hardtfeat (released)"]  # trained on no UBC set: every column and the mean
    assert len(tfeat) == 5
    assert tfeat[tfeat.test_set == "mean"].fpr95_mean.iloc[0] == pytest.approx(np.mean(
        [truth[("hardtfeat", t)] for t in ("notredame", "yosemite", "liberty", "yosemite")]))
    assert not ubc.method.str.startswith(("hardnet-plus@yosemite", "hardnet++")).any()

    # UBC, Markdown and LaTeX: the same cells, empty where not tested, never a dagger
    md = (tables / "ubc_fpr95.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| method |"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == [
        "liberty→notredame", "liberty→yosemite", "notredame→liberty", "notredame→yosemite", "mean"]
    cells = [c.replace("**", "").replace("<ins>", "").replace("</ins>", "") for c in
             _md_row(md, "hardnet-plus@liberty (released)")]
    assert cells == [f"{truth[('hardnet-plus@liberty', 'notredame')]:.2f}",
                     f"{truth[('hardnet-plus@liberty', 'yosemite')]:.2f}", "", "", ""]
    assert all(c for c in _md_row(md, "hardtfeat (released)"))
    assert "not tested against balanced" in md and "hardnet-plus@yosemite, hardnet++" in md
    tex = (tables / "ubc_fpr95.tex").read_text()
    tex_line = next(line for line in tex.splitlines() if line.startswith("hardnet-plus@liberty (released) &"))
    assert tex_line.endswith("&  &  &  \\\\") and "dagger" not in tex_line
    for label in ("hardnet-plus@liberty (released)", "hardtfeat (released)"):
        assert DAGGER not in "".join(_md_row(md, label))

    # HPatches: every release scored on a split (sosnet on split a, named and not ranked), none on hardnet++
    hp = pd.read_csv(tables / "hpatches.csv")
    released = hp[hp.released]
    assert set(released.method) == {"hardnet-plus@liberty (released)", "hardtfeat (released)",
                                     "hardnet-plus@yosemite (released)", "sosnet@hpatches_a (released, split a)"}
    assert set(released[released.method.str.startswith("sosnet")].split) == {"a"}
    assert (released.groupby("method").size() == 12).all()
    summary = pd.read_json(layout.hpatches_released_dir(results, "hardtfeat", "full") / "summary.json",
                           typ="series")
    row = released[(released.method == "hardtfeat (released)") & (released.task == "matching")
                   & (released.level == "all")].iloc[0]
    assert row.map_mean == pytest.approx(100 * summary["matching"])
    hp_md = (tables / "hpatches.md").read_text()
    hp_tex = (tables / "hpatches.tex").read_text()
    for label in released.method.unique():
        cells = _md_row(hp_md, label)
        assert len(cells) == 12 and all(cells) and DAGGER not in "".join(cells)
        tex_line = next(line for line in hp_tex.splitlines() if line.startswith(f"{latex_escape(label)} &"))
        assert "dagger" not in tex_line
    sosnet = _md_row(hp_md, "sosnet@hpatches_a (released, split a)")
    assert not any("**" in c or "<ins>" in c for c in sosnet)  # other sequences: not ranked
    assert "not scored: hardnet++" in hp_md and "not tested against balanced" in hp_md

    # no significance test and no ablation involves a release
    tests = pd.read_csv(out / "stats" / "tests.csv")
    assert len(tests)
    for name in RELEASES:
        assert not tests.comparison.str.contains(name, regex=False).any()
    ablations = pd.read_csv(tables / "ablations.csv")
    assert set(ablations.variant) == {"balanced-no-annealing"}
    assert "take no part in the ablations" in (tables / "ablations.md").read_text()


def test_report_with_released_and_handcrafted_only(tmp_path):
    cfg = released_config(methods=False)
    results, out = tmp_path / "results", tmp_path / "out"
    make_results(results, cfg)  # handcrafted scores only: no trained method
    write_released(results, cfg)
    written = build_report(cfg, results, out)
    for path in layout.report_files(out):
        assert path in written and path.stat().st_size > 0, path
    ubc = pd.read_csv(out / "tables" / "ubc_fpr95.csv")
    assert set(ubc.method) == {"raw", "hardnet-plus@liberty (released)", "hardtfeat (released)",
                               "sosnet@hpatches_a (released)"}
    md = (out / "tables" / "ubc_fpr95.md").read_text()
    assert DAGGER not in md.split("\n\n")[1] and "No reference method" in md
    assert pd.read_csv(out / "stats" / "tests.csv").empty
    assert pd.read_csv(out / "tables" / "ablations.csv").empty
    assert "No trained methods" in (out / "tables" / "ablations.md").read_text()
