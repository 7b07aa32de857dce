"""Table formatting: bold best, underlined second, direction per table, escaping."""

from __future__ import annotations

import numpy as np

from descbench.report.tables import Table, mean_sd, to_csv, to_latex, to_markdown, write_table


def _table(lower_is_better: bool) -> Table:
    values = np.array([[10.0, 80.0], [5.0, 90.0], [7.5, np.nan]])
    cells = [[f"{v:.1f}" if np.isfinite(v) else "–" for v in row] for row in values]
    return Table(title="t", row_header="method", rows=["a_1", "b", "c"], columns=["x→y", "mean"],
                 cells=cells, values=values, lower_is_better=lower_is_better)


def test_lower_is_better_bolds_the_smallest_and_underlines_the_second():
    tex = to_latex(_table(lower_is_better=True))
    assert r"b & \textbf{5.0} & \underline{90.0} \\" in tex
    assert r"c & \underline{7.5} & -- \\" in tex
    assert r"a\_1 & 10.0 & \textbf{80.0} \\" in tex
    assert r"x$\to$y" in tex and r"\toprule" in tex and r"\bottomrule" in tex


def test_higher_is_better_reverses_the_ranking():
    md = to_markdown(_table(lower_is_better=False))
    assert "| a\\_1 |" not in md  # markdown keeps underscores
    assert "| a_1 | **10.0** | <ins>80.0</ins> |" in md
    assert "| b | 5.0 | **90.0** |" in md
    assert "| c | <ins>7.5</ins> | – |" in md


def test_ties_share_the_mark():
    table = Table(title="t", row_header="m", rows=["a", "b", "c"], columns=["v"],
                  cells=[["1"], ["1"], ["2"]], values=np.array([[1.0], [1.0], [2.0]]),
                  lower_is_better=True)
    assert table.emphasis() == [["best"], ["best"], ["second"]]


def test_mean_sd_over_seeds():
    text, mean, sd, n = mean_sd([0.10, 0.12, 0.14])
    assert text == "12.00 ± 2.00" and n == 3
    assert mean_sd([0.1])[0] == "10.00"
    assert mean_sd([])[0] == "–"


def test_write_table_writes_three_formats(tmp_path):
    paths = write_table(_table(True), tmp_path, "demo")
    assert sorted(p.suffix for p in paths) == [".csv", ".md", ".tex"]
    assert to_csv(_table(True)).splitlines()[0] == "method,x→y,mean"
