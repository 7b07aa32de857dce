"""Report figures (PDF + PNG, matplotlib's Agg backend, so no display is needed), drawn from plain
tables and arrays (descbench.report.build gathers them), so this module knows nothing of the results
layout.

* ``hpatches_summary``: per task, a bar per descriptor (the mean over Easy/Hard/Tough) with the three
  levels as markers;
* ``training_curves``: validation FPR95 of every run and each method's training loss on its own axis,
  over training steps, with stage 1 and annealing drawn as one run and the boundary marked;
* ``difficulty``: histograms of a, b and w over training steps (diagnostics.npz) of the reference and
  its ablations, stage 1 and annealing in one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import PowerNorm  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from descbench.fileio import atomic_path  # noqa: E402

LEVEL_MARKERS = {"easy": ("o", "tab:green"), "hard": ("s", "tab:orange"), "tough": ("^", "tab:red")}
TASKS = ("verification", "matching", "retrieval")
BOUNDARY_STYLE = dict(color="0.35", ls=":", lw=1.2)
LABEL_X = 103  # value labels sit right of 100 %, where no marker can be


def save(fig, out_dir: Path, name: str) -> list[Path]:
    paths = []
    for fmt in ("pdf", "png"):
        path = Path(out_dir) / f"{name}.{fmt}"
        with atomic_path(path, suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def hpatches_summary(scores: pd.DataFrame, methods: list[str], title: str) -> plt.Figure:
    """``scores``: the HPatches table's tidy rows (method, task, level in all/easy/hard/tough, map_mean
    in %); one row of bars per method in ``methods`` order."""
    by = scores.set_index(["method", "task", "level"])["map_mean"]
    y = np.arange(len(methods))
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.32 * len(methods) + 1.6), sharey=True,
                             layout="constrained")
    for ax, task in zip(axes, TASKS):
        means = [by.get((m, task, "all"), np.nan) for m in methods]
        ax.barh(y, means, color="lightsteelblue", edgecolor="steelblue", height=0.7)
        for level, (marker, color) in LEVEL_MARKERS.items():
            ax.scatter([by.get((m, task, level), np.nan) for m in methods], y, marker=marker,
                       color=color, edgecolor="black", linewidth=0.4, zorder=3, s=22)
        for yi, mean in zip(y, means):
            if np.isfinite(mean):
                ax.text(LABEL_X, yi, f"{mean:.1f}", va="center", fontsize=7)
        ax.axvline(100, color="0.6", lw=0.8)
        ax.set_title(f"{task.capitalize()} mAP (%)")
        ax.set_xlim(-2, 114)
        ax.set_xticks(range(0, 101, 20))
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, methods)
    axes[0].invert_yaxis()
    handles = [Patch(facecolor="lightsteelblue", edgecolor="steelblue",
                     label="bar and number: mean over E/H/T")]
    handles += [Line2D([], [], marker=marker, color=color, markeredgecolor="black", ls="",
                       label=f"{level.capitalize()} ({level[0].upper()})")
                for level, (marker, color) in LEVEL_MARKERS.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(title)
    return fig


@dataclass
class Run:
    """One training run's metrics.csv, drawn from ``offset`` steps on (its stage 1's length)."""

    name: str
    metrics: pd.DataFrame
    offset: int = 0
    stage: str = "stage 1"


def chained(chain: list[str], metrics: dict[str, pd.DataFrame]) -> list[Run]:
    """The runs of ``chain`` (stage 1 first) on one step axis: each run starts where the one it
    continues from ended."""
    runs, offset = [], 0
    for k, name in enumerate(chain):
        frame = metrics[name]
        runs.append(Run(name, frame, offset, "stage 1" if k == 0 else "annealing"))
        offset += int(frame["step"].max()) + 1
    return runs


def _boundaries(runs: list[Run]) -> list[int]:
    return [r.offset for r in runs if r.offset > 0]


BALANCE_NOTE = ("Balance losses are not bounded below by 0: per class they are w[R a² + (m − b)₊² − m²] "
                "with the bound m (grey, right axis). In stage 1, m is re-estimated from every batch and "
                "falls as training pulls positives in, so the loss rises by construction; in annealing, "
                "m is fixed at B/2 and each cycle masks more triplets (a masked one adds 0 instead of a "
                "negative term), so the loss rises towards 0. A rising balance loss is not divergence: "
                "the validation FPR95 (top) shows progress.")


def run_colours(chains: list[list[str]]) -> dict[str, tuple]:
    """A distinct colour per run: a light and a dark shade of one hue for a method's stage 1 and its
    annealing (tab20 pairs), so 11 runs never share a colour; a shared stage 1 keeps its first hue."""
    palette = plt.get_cmap("tab20").colors
    colours: dict[str, tuple] = {}
    for k, chain in enumerate(chains):
        dark, light = palette[(2 * k) % 20], palette[(2 * k + 1) % 20]
        for name in chain:
            colours.setdefault(name, dark if name == chain[-1] and len(chain) > 1 else
                               light if len(chain) > 1 else dark)
    return colours


def training_curves(chains: list[list[str]], metrics: dict[str, pd.DataFrame], title: str,
                    val_title: str) -> plt.Figure:
    """``chains``: per reported method, the runs it is made of (stage 1 first); ``metrics``: run name
    -> metrics.csv (step, loss, optional bound, val_fpr95). Top: validation FPR95 of every run;
    below: each chain's loss on its own axis (losses of different methods do not share a scale)."""
    if not chains:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "No trained methods: no training curves", ha="center", va="center")
        return fig
    n_cols = min(4, len(chains))
    n_rows = -(-len(chains) // n_cols)
    fig = plt.figure(figsize=(3.6 * n_cols, 3.2 + 2.3 * n_rows), layout="constrained")
    grid = fig.add_gridspec(n_rows + 1, n_cols, height_ratios=[1.5] + [1] * n_rows)
    ax_val = fig.add_subplot(grid[0, :])
    colours = run_colours(chains)
    drawn = set()
    for chain in chains:
        for run in chained(chain, metrics):
            if run.name in drawn:  # a stage 1 shared by several methods is drawn once
                continue
            drawn.add(run.name)
            val = run.metrics.dropna(subset=["val_fpr95"]) if "val_fpr95" in run.metrics else run.metrics[:0]
            if not val.empty:
                ax_val.plot(val["step"] + run.offset, 100 * pd.to_numeric(val["val_fpr95"]), marker="o",
                            ms=3, lw=1, color=colours[run.name], label=f"{run.name} ({run.stage})",
                            ls="-" if run.stage == "stage 1" else "--")
    for x in sorted({b for chain in chains for b in _boundaries(chained(chain, metrics))}):
        ax_val.axvline(x, **BOUNDARY_STYLE)
    ax_val.set_xlabel("training step (annealing continues the step count of its stage 1; dotted: "
                      "annealing starts)")
    ax_val.set_ylabel("validation FPR95 (%)")
    ax_val.set_title(val_title)
    ax_val.grid(alpha=0.3)
    ax_val.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    balance = False
    for k, chain in enumerate(chains):
        ax = fig.add_subplot(grid[1 + k // n_cols, k % n_cols])
        runs = chained(chain, metrics)
        bound_ax = None
        for run in runs:
            frame = run.metrics.dropna(subset=["loss"])
            ax.plot(frame["step"] + run.offset, frame["loss"], lw=1, color=colours.get(run.name),
                    label=run.stage)
            if "bound" in frame and frame["bound"].notna().any():
                balance = True
                bound_ax = bound_ax or ax.twinx()
                bound_ax.plot(frame["step"] + run.offset, frame["bound"], color="0.6", lw=0.8)
        for x in _boundaries(runs):
            ax.axvline(x, **BOUNDARY_STYLE)
        if bound_ax is not None:
            bound_ax.set_ylabel("bound m", fontsize=7, color="0.45")
            bound_ax.tick_params(labelsize=6, colors="0.45")
        ax.set_title(chain[-1] if len(chain) == 1 else f"{chain[-1]}\n(from {' → '.join(chain[:-1])})",
                     fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if k % n_cols == 0:
            ax.set_ylabel("training loss", fontsize=8)
        if k >= len(chains) - n_cols:
            ax.set_xlabel("training step", fontsize=8)
    note = ("Each loss on its own axis: the methods' losses have different scales. " +
            (BALANCE_NOTE if balance else ""))
    fig.suptitle(title)
    fig.text(0.01, -0.01, note, fontsize=7.5, ha="left", va="top", wrap=True,
             transform=fig.transFigure)
    return fig


QUANTITIES = (("hist_a", "a: hardest positive distance"), ("hist_b", "b: hardest negative distance"),
              ("hist_w", "w: self-teacher weight"))


def _stacked(runs: list[tuple[str, dict[str, np.ndarray]]], key: str):
    """One (steps, bins) fraction image over the chained runs (NaN where a run did not record ``key``),
    its step positions and the runs' start steps."""
    images, steps, starts, offset = [], [], [], 0
    for _name, diag in runs:
        run_steps = np.asarray(diag.get("steps", np.arange(0)), dtype=np.float64)
        edges = np.asarray(diag["bin_edges"])
        hist = np.asarray(diag.get(key, np.zeros((len(run_steps), len(edges) - 1))), dtype=np.float64)
        total = hist.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            images.append(np.where(total > 0, hist / total, np.nan))
        starts.append(offset)
        steps.append(run_steps + offset)
        offset += int(run_steps.max()) + 1 if run_steps.size else 0
    return np.concatenate(images), np.concatenate(steps), starts


def _unrecorded(fractions: np.ndarray, steps: np.ndarray) -> list[tuple[float, float]]:
    """(first, last + 1) step of every stretch of steps without a recorded histogram."""
    missing = np.all(np.isnan(fractions), axis=1)
    spans, start = [], None
    for k, gap in enumerate(missing):
        if gap and start is None:
            start = steps[k]
        if start is not None and (not gap or k == len(missing) - 1):
            spans.append((start, steps[k] + 1 if gap else steps[k]))
            start = None
    return spans


def difficulty(chains: list[list[str]], diagnostics: dict[str, dict[str, np.ndarray]],
               title: str) -> plt.Figure:
    """``chains``: the reference then each ablation, as its runs (stage 1 first); ``diagnostics``: run
    name -> diagnostics.npz arrays (steps, bin_edges, hist_a, hist_b, hist_w)."""
    if not chains:  # released weights and handcrafted only: nothing was trained
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "No trained methods: no difficulty distributions", ha="center", va="center")
        return fig
    fig, axes = plt.subplots(len(chains), 3, figsize=(13, 1.9 * len(chains) + 1.2), squeeze=False,
                             layout="constrained")
    norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)
    image = None
    for row, chain in enumerate(chains):
        runs = [(name, diagnostics[name]) for name in chain]
        edges = np.asarray(runs[0][1]["bin_edges"])
        for col, (key, label) in enumerate(QUANTITIES):
            ax = axes[row, col]
            fractions, steps, starts = _stacked(runs, key)
            if steps.size == 0 or np.all(np.isnan(fractions)):
                ax.axis("off")
                ax.text(0.5, 0.5, f"{key[5:]} not recorded", ha="center", va="center", fontsize=9,
                        color="0.4", transform=ax.transAxes)
            else:
                x_hi = steps[-1] + 1
                image = ax.imshow(np.ma.masked_invalid(fractions.T), origin="lower", aspect="auto",
                                  cmap="viridis", norm=norm, interpolation="nearest",
                                  extent=(steps[0], x_hi, edges[0], edges[-1]))
                ax.set_facecolor("0.88")  # steps where this quantity was not recorded
                for start in starts[1:]:
                    ax.axvline(start, color="white", ls=":", lw=1.2)
                for lo, hi in _unrecorded(fractions, steps):
                    ax.text((lo + hi) / 2, 0.5, "not recorded", ha="center", va="center", fontsize=8,
                            color="0.35", transform=ax.get_xaxis_transform())
                if key == "hist_w":  # a weight in [0, 1]
                    ax.set_ylim(edges[0], 1.05)
                ax.tick_params(labelsize=7)
                if row == len(chains) - 1:
                    ax.set_xlabel("training step", fontsize=7)
            if row == 0:
                ax.set_title(label, fontsize=10)
            if col == 0:
                stages = f"\n(stage 1: {chain[0]})" if len(chain) > 1 else "\n(stage 1 only)"
                ax.set_ylabel(f"{chain[-1]}{stages}", fontsize=8, rotation=0, ha="right", va="center")
    if image is not None:
        bar = fig.colorbar(image, ax=axes, location="right", shrink=0.6, pad=0.01)
        bar.set_label("fraction of the step's classes in the bin (square-root scale)", fontsize=8)
    fig.suptitle(f"{title}\nDotted white line: annealing starts (it continues the stage-1 model); "
                 "grey: not recorded in that stage", fontsize=10)
    return fig
