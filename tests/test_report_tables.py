"""Table formatting: bold best, underlined second, direction per table, escaping."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

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


def _grouped() -> Table:
    values = np.array([[58.4, 80.2, 54.1], [57.5, np.nan, 53.2]])
    return Table(title="HPatches mAP (%), 50 % of it", row_header="method", rows=["balanced", "raw_x"],
                 columns=["Verification", "Verif. E", "Verif. H"],
                 cells=[["58.40", "80.20†", "54.10"], ["57.50", "–", "53.20"]], values=values,
                 notes=["One seed (0), so no sd.", "Δ = variant − reference ≥ 0."],
                 groups=[("Verification", ["mean", "E", "H"])])


def test_latex_is_a_table_float_with_caption_label_and_grouped_header():
    tex = to_latex(_grouped(), "hpatches")
    lines = tex.splitlines()
    assert lines[1] == r"\begin{table}[t]" and lines[-1] == r"\end{table}"
    caption = next(line for line in lines if line.startswith(r"\caption"))
    assert "One seed (0), so no sd." in caption and "$-$" in caption and r"$\geq$" in caption
    assert r"\label{tab:hpatches}" in lines
    assert r" & \multicolumn{3}{c}{Verification} \\" in lines and r"\cmidrule(lr){2-4}" in lines
    assert r"method & mean & E & H \\" in lines
    assert r"\resizebox{" in tex and tex.index(r"\toprule") < tex.index(r"\multicolumn")
    assert all(ord(ch) < 128 for ch in tex)  # every symbol is escaped for pdflatex
    assert not any(line.startswith("% ") and "seed" in line for line in lines)  # no caption in a comment


def test_csv_leaves_cells_without_a_value_empty():
    csv_text = to_csv(_grouped())
    assert "–" not in csv_text
    assert csv_text.splitlines()[2] == "raw_x,57.50,,53.20"


LATEX_DOCUMENT = r"""\documentclass[twocolumn]{article}
\usepackage[T1]{fontenc}
\usepackage{booktabs,graphicx}
\begin{document}
\input{ubc_fpr95.tex}
\input{hpatches.tex}
\input{ablations.tex}
Table~\ref{tab:ubc_fpr95}, \ref{tab:hpatches} and \ref{tab:ablations}.
\end{document}
"""


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_report_tables_compile_in_a_two_column_article(tmp_path):
    """The three tables of a synthetic report, with released rows and their notes, through pdflatex;
    none may be wider than the column (no overfull box)."""
    from test_report_end_to_end import make_results
    from test_report_released import released_config, write_released

    from descbench.report.build import ReportBuilder
    from descbench.report.scores import ReportConfig, Results

    cfg = released_config()
    make_results(tmp_path / "results", cfg)
    write_released(tmp_path / "results", cfg)
    rc = ReportConfig.from_config(cfg)
    builder = ReportBuilder(rc, Results(tmp_path / "results", rc))
    for table, name in ((builder.ubc_table(), "ubc_fpr95"), (builder.hpatches_table(), "hpatches"),
                        (builder.ablation_table(), "ablations")):
        (tmp_path / f"{name}.tex").write_text(to_latex(table, name))
    (tmp_path / "doc.tex").write_text(LATEX_DOCUMENT)
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert "Overfull \\hbox" not in log and "Missing character" not in log


def test_latex_row_groups_put_each_group_under_its_own_heading():
    table = Table(title="Ablations", row_header="comparison", rows=["v1: UBC", "v1: HP", "v2: UBC"],
                  columns=["ref", "Δ", "p"], cells=[["1", "+1", "0.5"], ["2", "-1", "–"], ["3", "+2", "0.1"]],
                  row_groups=[("v1", ["UBC", "HP"]), ("v2", ["UBC"])])
    lines = to_latex(table, "ablations").splitlines()
    first = lines.index(r"\multicolumn{4}{l}{\emph{v1}} \\")
    assert lines[first - 1] == r"\midrule" and lines[first + 1:first + 3] == [r"UBC & 1 & +1 & 0.5 \\",
                                                                           r"HP & 2 & -1 & -- \\"]
    assert lines[first + 3:first + 6] == [r"\midrule", r"\multicolumn{4}{l}{\emph{v2}} \\",
                                          r"UBC & 3 & +2 & 0.1 \\"]
    assert "| v1: UBC | 1 | +1 | 0.5 |" in to_markdown(table)  # Markdown keeps the full labels
