"""Figures draw from plain tables and arrays: descbench.report.figures works without the report builder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import sys
import numpy as np
import pandas as pd
from descbench.report import figures

out = sys.argv[1]
rows = [dict(method=m, task=t, level=lv, map_mean=v + k)
        for m, v in (("a", 40.0), ("b", 60.0)) for t in figures.TASKS
        for k, lv in enumerate(("all", "easy", "hard", "tough"))]
paths = figures.save(figures.hpatches_summary(pd.DataFrame(rows), ["a", "b"], "t"), out, "hp")

def metrics(steps, bound):
    return pd.DataFrame(dict(step=np.arange(steps), loss=np.linspace(-3, -2, steps),
                             bound=np.linspace(2.6, 2.2, steps) if bound else np.nan,
                             val_fpr95=[0.3 if s % 5 == 4 else np.nan for s in range(steps)]))

runs = {"s1": metrics(10, True), "s2": metrics(15, True), "other": metrics(12, False)}
fig = figures.training_curves([["s1", "s2"], ["other"]], runs, "t", "v")
paths += figures.save(fig, out, "curves")
edges = np.linspace(0, 2, 11)
diag = {"s1": dict(steps=np.arange(10), bin_edges=edges, hist_a=np.ones((10, 10)),
                   hist_b=np.ones((10, 10)), hist_w=np.ones((10, 10))),
        "s2": dict(steps=np.arange(15), bin_edges=edges, hist_a=np.ones((15, 10)),
                   hist_b=np.ones((15, 10)), hist_w=np.zeros((15, 10)))}
paths += figures.save(figures.difficulty([["s1", "s2"], ["s1"]], diag, "t"), out, "difficulty")
assert all(p.stat().st_size > 0 for p in paths), paths
assert "descbench.report.build" not in sys.modules and "descbench.report.scores" not in sys.modules
print(len(paths))
"""


def test_figures_draw_plain_tables_without_the_builder(tmp_path):
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "6"
