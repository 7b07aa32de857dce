"""Report pieces of the HPatches sequences evaluation, on hand-built per-pair tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from descbench.report import sequences as rs
from descbench.report.tables import to_markdown

SEQUENCES = [f"i_s{n}" for n in range(6)] + [f"v_s{n}" for n in range(6)]


def pairs_of(mma: dict[str, float], corner: float = 0.5, matches: int = 100) -> pd.DataFrame:
    """5 pairs per sequence; ``mma[category]`` at every threshold >= 3 px and half of it below."""
    rows = []
    for seq in SEQUENCES:
        for k in range(2, 7):
            value = mma[seq[0]]
            row = dict(sequence=seq, category=seq[0], image=k, n_keypoints_1=200, n_keypoints=100,
                       n_matches=matches, corner_error=corner)
            row.update({f"mma_{t}": value if t >= 3 else value / 2 for t in rs.THRESHOLDS})
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture
def pairs() -> pd.DataFrame:
    better = pairs_of({"i": 0.8, "v": 0.6})
    worse = [pairs_of({"i": 0.6 - 0.01 * s, "v": 0.4}, corner=4.0, matches=50) for s in range(2)]
    return rs.collect([("ours", 0, better, False), ("ours", 1, better, False),
                       ("other", 0, worse[0], False), ("other", 1, worse[1], False),
                       ("sift", None, pairs_of({"i": 0.7, "v": 0.5}), False),
                       ("theirs@liberty", None, pairs_of({"i": 0.9, "v": 0.9}), True)])


def test_curves_average_pairs_then_seeds(pairs):
    curves = rs.mma_curves(pairs).set_index(["method", "category", "threshold"])
    assert curves.loc[("ours", "overall", 3), "mma_mean"] == pytest.approx(0.7)
    assert curves.loc[("ours", "i", 1), "mma_mean"] == pytest.approx(0.4)
    # seed 0: i 0.6, seed 1: i 0.59 -> overall (0.6 + 0.4) / 2 = 0.5 and 0.495
    assert curves.loc[("other", "overall", 5), "mma_mean"] == pytest.approx(0.4975)
    assert curves.loc[("other", "i", 5), "mma_sd"] == pytest.approx(np.std([0.6, 0.59], ddof=1))
    assert np.isnan(curves.loc[("sift", "v", 3), "mma_sd"]) and curves.loc[("sift", "v", 3), "n_seeds"] == 1


def test_tests_and_table_mark_the_significant_cells(pairs):
    tests = rs.paired_tests(pairs, "ours")
    assert set(tests["comparison"]) == {"other vs ours", "sift vs ours"}  # released rows are not tested
    mma = tests[(tests["comparison"] == "other vs ours") & tests["endpoint"].str.startswith("MMA")].iloc[0]
    assert mma["n"] == 12 and mma["p"] < 0.01  # 12 sequences, every one worse
    assert (tests["p_holm"] >= tests["p"]).all()
    table = rs.sequences_table(pairs, reference="ours", tests=tests, preset="mini")
    cells = dict(zip(table.rows, table.cells))
    assert cells["ours"][0] == "70.00 ± 0.00" and cells["ours"][3] == "100.00 ± 0.00"
    assert cells["other"][0].endswith("†") and cells["other"][3] == "0.00 ± 0.00†"
    assert cells["sift"][0] == "60.00†" and cells["other"][4] == "50.0 ± 0.0"
    assert cells["theirs@liberty"][0] == "90.00"
    markdown = to_markdown(table)
    assert "**90.00**" in markdown and "12 sequences (6 i_, 6 v_)" in markdown
    assert "(mini preset)" in table.title
    assert "117 keypoints per image" in markdown  # (200 + 5 x 100) / 6 images


def test_figure_has_three_panels_and_a_line_per_method(pairs):
    fig = rs.mma_figure(pairs, reference="ours")
    assert [ax.get_title() for ax in fig.axes] == ["Overall", "Illumination", "Viewpoint"]
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["ours", "other", "sift", "theirs@liberty"]
    assert np.allclose(lines[0].get_ydata(), [0.35, 0.35] + [0.7] * 8)
    assert [line.get_linestyle() for line in lines] == ["-", "-", "--", ":"]


def test_write_outputs_and_mismatched_sequences(pairs, tmp_path):
    written = rs.write_outputs(pairs, tmp_path, reference="ours", preset="mini")
    names = sorted(p.relative_to(tmp_path).as_posix() for p in written)
    assert names == ["figures/hpatches_sequences_mma.pdf", "figures/hpatches_sequences_mma.png",
                     "stats/hpatches_sequences_tests.csv", "tables/hpatches_sequences.csv",
                     "tables/hpatches_sequences.md", "tables/hpatches_sequences.tex"]
    tidy = pd.read_csv(tmp_path / "tables" / "hpatches_sequences.csv")
    assert set(tidy["measure"]) == {"MMA@3px", "MMA@3px i", "MMA@3px v", "Hom. acc.@3px", "matches/pair"}
    fewer = pairs[~((pairs["method"] == "sift") & (pairs["sequence"] == "v_s5"))]
    with pytest.raises(Exception, match="cover other sequences"):
        rs.paired_tests(fewer, "ours")


def test_scores_dir_layout(tmp_path):
    assert rs.scores_dir("r", "hardnet", "d2net", "liberty", 2).as_posix() == \
        "r/scores/hpatches_sequences/d2net/liberty/hardnet/seed2"
    assert rs.scores_dir("r", "sift").as_posix() == "r/scores/hpatches_sequences/d2net/handcrafted/sift"
    assert rs.scores_dir("r", "x@y", release=True).as_posix() == "r/scores/hpatches_sequences/d2net/released/x@y"
    (tmp_path / "pairs.csv").write_text("sequence,image\nv_a,2\n")
    with pytest.raises(Exception, match="lacks the columns"):
        rs.read_pairs(tmp_path / "pairs.csv")


def test_load_pairs_reads_the_workflow_layout(tmp_path):
    frames = {("ours", 0): pairs_of({"i": 0.8, "v": 0.6}), ("sift", None): pairs_of({"i": 0.7, "v": 0.5}),
              ("x@liberty", None): pairs_of({"i": 0.1, "v": 0.1})}
    for (method, seed), frame in frames.items():
        folder = rs.scores_dir(tmp_path, method, "d2net", "liberty" if seed is not None else None, seed,
                               release=method == "x@liberty")
        folder.mkdir(parents=True)
        frame.to_csv(folder / "pairs.csv", index=False)
    pairs = rs.load_pairs(tmp_path, ["ours"], [0], "liberty", ["sift"], ["x@liberty"],
                          released_label=lambda name: f"{name} (released)")
    assert list(dict.fromkeys(pairs["method"])) == ["ours", "sift", "x@liberty (released)"]
    assert pairs.groupby("method")["released"].first().to_dict() == {
        "ours": False, "sift": False, "x@liberty (released)": True}
    with pytest.raises(Exception, match="is missing"):
        rs.load_pairs(tmp_path, ["ours"], [1], "liberty")
