"""``descbench report`` end to end on synthetic score files laid out as the workflow writes them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from descbench.cli import main
from descbench.evaluate.fpr95 import fpr95
from descbench.report import layout
from descbench.report.build import build_report

LEVELS = ("easy", "hard", "tough")
SEQUENCES = ("i_alpha", "i_beta", "i_gamma", "i_delta", "v_alpha", "v_beta", "v_gamma", "v_delta")
POOLS = (100, 500)

# lower separation of positives = better descriptor; method quality drives every synthetic score
QUALITY = {"balanced": 0.9, "balanced-no-annealing": 0.7, "hardnet": 0.6, "sift": 0.3, "raw": 0.1}


def synthetic_config(seeds=(0, 1)) -> dict:
    return {
        "preset": "synthetic", "methods": ["balanced", "balanced-no-annealing", "hardnet"],
        "handcrafted": ["sift", "raw"], "reference": "balanced", "seeds": list(seeds),
        "ubc": {"sets": ["s1", "s2", "s3"], "train_sets": ["s1", "s2"], "convention": "hardnet"},
        "hpatches": {"split": "full", "convention": "python", "train_set": "s1"},
        "report": {"n_bootstrap": 200, "seed": 0, "alpha": 0.05},
    }


def _ubc_pairs(rng, n_points=40, n_pairs=200):
    pos_points = rng.integers(0, n_points, n_pairs // 2)
    neg1 = rng.integers(0, n_points, n_pairs // 2)
    neg2 = (neg1 + rng.integers(1, n_points, n_pairs // 2)) % n_points
    point1 = np.concatenate([pos_points, neg1])
    point2 = np.concatenate([pos_points, neg2])
    is_match = np.concatenate([np.ones(n_pairs // 2, int), np.zeros(n_pairs // 2, int)])
    idx1 = np.arange(n_pairs) * 2
    return point1, point2, is_match, idx1, idx1 + 1


def write_ubc(folder, method, test_set, pairs, quality, rng):
    point1, point2, is_match, idx1, idx2 = pairs
    distance = np.where(is_match == 1, 1.0 - quality * 0.6, 1.0) + rng.normal(0, 0.2, len(is_match))
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(dict(idx1=idx1, idx2=idx2, point1=point1, point2=point2, is_match=is_match,
                      distance=distance)).to_csv(folder / "pairs.csv", index=False)
    value = fpr95(distance, is_match)
    (folder / "summary.json").write_text(json.dumps(dict(
        fpr95=value, test_set=test_set, descriptor=method, convention="hardnet",
        n_pairs=len(is_match), revisited_map=revisited_of(value))))
    return value


def revisited_of(fpr: float) -> float:
    """The revisited mAP the synthetic summaries carry: any known function of the run will do."""
    return 1.0 - fpr / 2


def write_hpatches(folder, method, quality, rng):
    folder.mkdir(parents=True, exist_ok=True)
    matching = pd.DataFrame([
        dict(sequence=s, category=s[0], level=lv, image=im,
             ap=float(np.clip(quality * (1 - 0.2 * k) + rng.normal(0, 0.05), 0, 1)), sr=0.5)
        for s in SEQUENCES for k, lv in enumerate(LEVELS) for im in range(1, 6)])
    retrieval = pd.DataFrame([
        dict(query=q, sequence=s, idx=q, level=lv, pool=pool,
             ap=float(np.clip(quality * (1 - 0.1 * k) - pool / 5000 + rng.normal(0, 0.05), 0, 1)))
        for s in SEQUENCES for q in range(4) for k, lv in enumerate(LEVELS) for pool in POOLS])
    verification = pd.DataFrame([
        dict(level=lv, negatives=neg, protocol=prot, value=float(np.clip(quality - 0.1 * k, 0, 1)))
        for k, lv in enumerate(LEVELS) for neg in ("inter", "intra")
        for prot in ("balanced", "imbalanced")])
    levels = {
        "verification": {lv: float(verification[(verification.level == lv)
                                                & (verification.protocol == "imbalanced")].value.mean())
                         for lv in LEVELS},
        "matching": {lv: float(matching[matching.level == lv].groupby("category").ap.mean().mean())
                     for lv in LEVELS},
        "retrieval": {lv: float(retrieval[retrieval.level == lv].groupby("pool").ap.mean().mean())
                      for lv in LEVELS},
    }
    summary = {task: float(np.mean(list(levels[task].values()))) for task in levels}
    summary.update(levels=levels, split="full", convention="python", descriptor=method)
    matching.to_csv(folder / "matching.csv", index=False)
    retrieval.to_csv(folder / "retrieval.csv", index=False)
    verification.to_csv(folder / "verification.csv", index=False)
    (folder / "summary.json").write_text(json.dumps(summary))


def write_training(folder, quality, rng, steps=12, bins=10):
    folder.mkdir(parents=True, exist_ok=True)
    rows = [dict(step=s, epoch=s // 6, loss=2.0 - quality * s / steps, lr=1e-3, median_a=0.5,
                 median_b=1.0, bound=1.5, mean_w=0.8, masked_fraction=0.0,
                 val_fpr95=(0.5 - quality * s / 30) if s % 6 == 5 else None) for s in range(steps)]
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)
    hist = rng.integers(0, 20, size=(steps, bins)).astype(np.float64)
    np.savez(folder / "diagnostics.npz", steps=np.arange(steps), bin_edges=np.linspace(0, 2, bins + 1),
             hist_a=hist, hist_b=hist[::-1], hist_w=hist * 0.5)
    (folder / "model.pt").write_bytes(b"")


def make_results(root, cfg, seed=0) -> dict:
    """Every file the workflow would hand the report; returns the true FPR95 values written."""
    rng = np.random.default_rng(seed)
    truth = {}
    pairs = {s: _ubc_pairs(rng) for s in cfg["ubc"]["sets"]}
    for method in cfg["methods"]:
        for train in cfg["ubc"]["train_sets"]:
            for s in cfg["seeds"]:
                write_training(layout.model_dir(root, train, method, s), QUALITY[method], rng)
                for test in cfg["ubc"]["sets"]:
                    if test != train:
                        truth[(method, train, test, s)] = write_ubc(
                            layout.ubc_dir(root, method, test, train, s), method, test, pairs[test],
                            QUALITY[method], rng)
        for s in cfg["seeds"]:
            write_hpatches(layout.hpatches_dir(root, method, "full", cfg["hpatches"]["train_set"], s),
                           method, QUALITY[method], rng)
    for method in cfg["handcrafted"]:
        for test in cfg["ubc"]["sets"]:
            truth[(method, None, test, None)] = write_ubc(
                layout.ubc_dir(root, method, test), method, test, pairs[test], QUALITY[method], rng)
        write_hpatches(layout.hpatches_dir(root, method, "full"), method, QUALITY[method], rng)
    return truth


def test_report_writes_every_table_figure_and_test(tmp_path):
    cfg = synthetic_config()
    truth = make_results(tmp_path / "results", cfg)
    written = build_report(cfg, tmp_path / "results", tmp_path / "out")
    expected = set(layout.report_files(tmp_path / "out"))
    assert expected <= set(written)
    for path in expected:
        assert path.stat().st_size > 0, path

    ubc = pd.read_csv(tmp_path / "out/tables/ubc_fpr95.csv")
    row = ubc[(ubc.method == "hardnet") & (ubc.train_set == "s1") & (ubc.test_set == "s2")].iloc[0]
    seeds = [truth[("hardnet", "s1", "s2", s)] * 100 for s in cfg["seeds"]]
    assert row.fpr95_mean == pytest.approx(np.mean(seeds))
    assert row.fpr95_sd == pytest.approx(np.std(seeds, ddof=1))
    assert set(ubc.method) == set(cfg["methods"]) | set(cfg["handcrafted"])

    tex = (tmp_path / "out/tables/ubc_fpr95.tex").read_text()
    assert "\\toprule" in tex and "\\textbf{" in tex and "\\underline{" in tex
    md = (tmp_path / "out/tables/hpatches.md").read_text()
    balanced_line = next(line for line in md.splitlines() if line.startswith("| balanced |"))
    assert balanced_line.count("**") >= 2  # best on the synthetic data in at least one column

    ablations = pd.read_csv(tmp_path / "out/tables/ablations.csv")
    assert set(ablations.variant) == {"balanced-no-annealing"}
    assert set(ablations.endpoint) == {"UBC FPR95", "HPatches verification", "HPatches matching",
                                       "HPatches retrieval"}
    match = ablations[ablations.endpoint == "HPatches matching"].iloc[0]
    assert match.delta < 0 and match.ci_low <= match.delta <= match.ci_high

    tests = pd.read_csv(tmp_path / "out/stats/tests.csv")
    assert set(tests.family) == {"ubc_fpr95", "hpatches", "ablations"}
    assert not tests.duplicated(["family", "comparison", "endpoint"]).any()  # one test per comparison
    assert not tests.test.str.contains("McNemar").any()
    assert set(tests.test) == {"paired cluster bootstrap over 3D points",
                               "Wilcoxon signed-rank over sequences (two-sided)"}  # two seeds: no t-test
    assert tests.caveat.notna().all() and tests.inputs.notna().all()
    # the ablation's UBC row is the UBC table's mean-column test, not a second test of the same thing
    same = tests[(tests.comparison == "balanced-no-annealing vs balanced")
                 & tests.endpoint.isin(["FPR95 mean", "UBC FPR95"])]
    assert len(same) == 2 and same.p.nunique() == 1
    assert (tests[tests.test.str.startswith("paired cluster")].p >= 1 / 201 - 1e-12).all()
    tested = tests.p.notna()
    assert tested.sum() > 0 and tests.p_holm[~tested].isna().all()
    assert (tests.p_holm[tested] >= tests.p[tested] - 1e-12).all()


def test_revisited_map_table_gives_mean_and_sd_over_seeds_and_the_mean_column(tmp_path):
    cfg = synthetic_config()
    truth = make_results(tmp_path / "results", cfg)
    build_report(cfg, tmp_path / "results", tmp_path / "out")
    table = pd.read_csv(tmp_path / "out/tables/ubc_revisited_map.csv")
    row = table[(table.method == "hardnet") & (table.train_set == "s1") & (table.test_set == "s2")].iloc[0]
    seeds = [100 * revisited_of(truth[("hardnet", "s1", "s2", s)]) for s in cfg["seeds"]]
    assert row.map_mean == pytest.approx(np.mean(seeds)) and row.map_sd == pytest.approx(np.std(seeds, ddof=1))
    sift = table[(table.method == "sift") & (table.test_set == "mean")].iloc[0]
    columns = [(tr, te) for tr in cfg["ubc"]["train_sets"] for te in cfg["ubc"]["sets"] if te != tr]
    assert sift.map_mean == pytest.approx(np.mean([100 * revisited_of(truth[("sift", None, te, None)])
                                                   for _, te in columns]))
    md = (tmp_path / "out/tables/ubc_revisited_map.md").read_text()
    assert "higher is better" in md and "†" not in md


def test_report_cli_names_a_missing_score_file(tmp_path, capsys):
    cfg = synthetic_config(seeds=(0,))
    make_results(tmp_path / "results", cfg)
    missing = layout.ubc_dir(tmp_path / "results", "hardnet", "s3", "s1", 0) / "summary.json"
    missing.unlink()
    code = main(["report", "--config-json", json.dumps(cfg), "--results", str(tmp_path / "results")])
    assert code == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "evaluate_ubc_model" in err


def test_three_seeds_compare_trained_methods_by_a_paired_t_test_over_seeds(tmp_path):
    """With >= 3 seeds two trained methods are compared over seeds; handcrafted rows (no seed) keep
    the per-unit tests; the t-test's p is scipy's on the per-seed values."""
    from scipy import stats as sps

    from descbench.report.build import ReportBuilder
    from descbench.report.scores import ReportConfig, Results

    cfg = synthetic_config(seeds=(0, 1, 2))
    truth = make_results(tmp_path, cfg)
    rc = ReportConfig.from_config(cfg)
    builder = ReportBuilder(rc, Results(tmp_path, rc))
    builder.ubc_table()
    builder.hpatches_table()
    tests = builder.tests.frame()
    learned = tests[tests.comparison.str.startswith(("hardnet", "balanced-no-annealing"))]
    assert set(learned.test) == {"paired t-test over seeds"}
    assert "verification mAP" in set(learned.endpoint)  # testable over seeds, unlike over sequences
    assert set(tests[tests.comparison.str.startswith(("sift", "raw"))].test) == {
        "paired cluster bootstrap over 3D points", "Wilcoxon signed-rank over sequences (two-sided)"}
    row = tests[(tests.comparison == "hardnet vs balanced") & (tests.endpoint == "FPR95 s1→s2")].iloc[0]
    expected = sps.ttest_rel([truth[("hardnet", "s1", "s2", s)] for s in cfg["seeds"]],
                             [truth[("balanced", "s1", "s2", s)] for s in cfg["seeds"]])
    assert row.p == pytest.approx(expected.pvalue) and row.statistic == pytest.approx(expected.statistic)


def test_manifest_lists_size_and_sha256_and_names_a_missing_file(tmp_path, capsys):
    import hashlib

    first, second = tmp_path / "a.csv", tmp_path / "b b.json"
    first.write_text("x,y\n1,2\n")
    second.write_text("{}")
    out = tmp_path / "manifests" / "ubc_scores.tsv"
    assert main(["manifest", "--out", str(out), str(first), str(second)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "path\tbytes\tsha256"
    assert lines[1] == f"{first}\t8\t{hashlib.sha256(b'x,y' + bytes([10]) + b'1,2' + bytes([10])).hexdigest()}"
    assert lines[2].split("\t")[:2] == [str(second), "2"]
    assert main(["manifest", "--out", str(out), str(tmp_path / "gone.csv")]) == 2
    assert "gone.csv is missing" in capsys.readouterr().err
