"""Result tables in LaTeX (booktabs), Markdown and CSV.

A ``Table`` holds display strings plus, for ranked tables, the numbers each column is ranked by:
the best value per column is set in bold and the second underlined (``\\underline`` in LaTeX,
``<ins>`` in Markdown, which GitHub renders underlined); whether lower or higher is better is per table.
The LaTeX is a complete ``table`` float (caption, label, grouped headers) that fits one column of a
two-column article; it needs ``\\usepackage{booktabs,graphicx}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from descbench.fileio import write_text


@dataclass
class Table:
    """Rows x columns of display text; ``values`` (same shape, NaN where not ranked) decides emphasis."""

    title: str
    row_header: str
    rows: list[str]
    columns: list[str]
    cells: list[list[str]]
    values: np.ndarray | None = None
    lower_is_better: bool = False
    notes: list[str] = field(default_factory=list)
    tidy: pd.DataFrame | None = None
    # LaTeX header: (group label, sub-column labels) in column order; "" leaves a group unlabelled
    groups: list[tuple[str, list[str]]] | None = None
    # LaTeX rows: (group label, the short labels of its rows) in row order, each group under a rule
    row_groups: list[tuple[str, list[str]]] | None = None

    def emphasis(self) -> list[list[str | None]]:
        """'best' / 'second' / None per cell, ranked per column over the finite values."""
        marks: list[list[str | None]] = [[None] * len(self.columns) for _ in self.rows]
        if self.values is None:
            return marks
        for j in range(len(self.columns)):
            column = self.values[:, j]
            finite = np.unique(column[np.isfinite(column)])
            if finite.size == 0:
                continue
            ordered = finite if self.lower_is_better else finite[::-1]
            for i, value in enumerate(column):
                if not math.isfinite(value):
                    continue
                if value == ordered[0]:
                    marks[i][j] = "best"
                elif ordered.size > 1 and value == ordered[1]:
                    marks[i][j] = "second"
        return marks


LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
                 "±": r"$\pm$", "→": r"$\to$", "Δ": r"$\Delta$", "†": r"$^\dagger$", "–": "--",
                 "−": "$-$", "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$", "²": r"$^2$"}
NOT_TESTED = "–"  # the display text of a cell with no value; empty in the CSV


def latex_escape(text: str) -> str:
    return "".join(LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def _latex_header(table: Table) -> list[str]:
    head = latex_escape(table.row_header)
    if not table.groups:
        return [" & ".join([head] + [latex_escape(c) for c in table.columns]) + r" \\"]
    spans, rules, subs, first = [], [], [], 2
    for label, columns in table.groups:
        subs += columns
        if label:
            spans.append(f"\\multicolumn{{{len(columns)}}}{{c}}{{{latex_escape(label)}}}")
            rules.append(f"\\cmidrule(lr){{{first}-{first + len(columns) - 1}}}")
        else:
            spans += [""] * len(columns)
        first += len(columns)
    if len(subs) != len(table.columns):
        raise ValueError(f"table {table.title!r}: the header groups name {len(subs)} columns, the table "
                         f"has {len(table.columns)}")
    return [" & ".join([""] + spans) + r" \\", " ".join(rules),
            " & ".join([head] + [latex_escape(c) for c in subs]) + r" \\"]


def to_latex(table: Table, label: str = "") -> str:
    """A ``table`` float: caption (the title, then the notes), ``\\label{tab:<label>}``, a booktabs
    tabular with grouped headers, shrunk to the column width when wider."""
    marks = table.emphasis()
    spec = "l" + "c" * len(table.columns)
    caption = " ".join([table.title.rstrip(".") + "."] + table.notes)
    lines = [r"% needs \usepackage{booktabs,graphicx}", r"\begin{table}[t]", r"\centering",
             f"\\caption[{latex_escape(table.title)}]{{{latex_escape(caption)}}}"]
    if label:
        lines.append(f"\\label{{tab:{label}}}")
    lines += [r"\resizebox{\ifdim\width>\columnwidth\columnwidth\else\width\fi}{!}{%",
              f"\\begin{{tabular}}{{{spec}}}", r"\toprule"]
    lines += _latex_header(table)
    starts, labels = {}, list(table.rows)
    if table.row_groups:
        labels = [label for _group, rows in table.row_groups for label in rows]
        if len(labels) != len(table.rows):
            raise ValueError(f"table {table.title!r}: the row groups name {len(labels)} rows, the table "
                             f"has {len(table.rows)}")
        first = 0
        for group, rows in table.row_groups:
            starts[first] = group
            first += len(rows)
    else:
        lines.append(r"\midrule")
    for i, (row, cells, row_marks) in enumerate(zip(labels, table.cells, marks)):
        if i in starts:
            lines += [r"\midrule",
                      f"\\multicolumn{{{len(table.columns) + 1}}}{{l}}{{\\emph{{{latex_escape(starts[i])}}}}} \\\\"]
        out = [latex_escape(row)]
        for cell, mark in zip(cells, row_marks):
            text = latex_escape(cell)
            if mark == "best":
                text = f"\\textbf{{{text}}}"
            elif mark == "second":
                text = f"\\underline{{{text}}}"
            out.append(text)
        lines.append(" & ".join(out) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return str(text).replace("|", r"\|")


def to_markdown(table: Table) -> str:
    marks = table.emphasis()
    header = [table.row_header] + table.columns
    lines = [f"**{table.title}**", "",
             "| " + " | ".join(_md_escape(h) for h in header) + " |",
             "|" + "|".join([":---"] + [":---:"] * len(table.columns)) + "|"]
    for row, cells, row_marks in zip(table.rows, table.cells, marks):
        out = [_md_escape(row)]
        for cell, mark in zip(cells, row_marks):
            text = _md_escape(cell)
            if mark == "best" and text:
                text = f"**{text}**"
            elif mark == "second" and text:
                text = f"<ins>{text}</ins>"
            out.append(text)
        lines.append("| " + " | ".join(out) + " |")
    if table.notes:
        lines.append("")
        lines += [f"{note}  " for note in table.notes]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """The tidy numbers behind the table when given, else the display cells."""
    if table.tidy is not None:
        return table.tidy.to_csv(index=False)
    frame = pd.DataFrame([["" if c == NOT_TESTED else c for c in row] for row in table.cells],
                         columns=table.columns)
    frame.insert(0, table.row_header, table.rows)
    return frame.to_csv(index=False)


def write_table(table: Table, out_dir: str | Path, name: str) -> list[Path]:
    """Write ``name``.tex / .md / .csv under ``out_dir`` (atomically); return the paths."""
    out_dir = Path(out_dir)
    paths = []
    for suffix, text in (("tex", to_latex(table, name)), ("md", to_markdown(table)), ("csv", to_csv(table))):
        path = out_dir / f"{name}.{suffix}"
        write_text(path, text)
        paths.append(path)
    return paths


def mean_sd(values, scale: float = 100.0, digits: int = 2) -> tuple[str, float, float, int]:
    """'m ± sd' over seeds (just 'm' for one value); returns the text, mean, sd and count."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return NOT_TESTED, float("nan"), float("nan"), 0
    mean = float(arr.mean()) * scale
    if arr.size == 1:
        return f"{mean:.{digits}f}", mean, float("nan"), 1
    sd = float(arr.std(ddof=1)) * scale
    return f"{mean:.{digits}f} ± {sd:.{digits}f}", mean, sd, int(arr.size)
