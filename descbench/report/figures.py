"""Report figures (PDF + PNG, matplotlib's Agg backend, so no display is needed).

* ``hpatches_summary``: per task, a bar per descriptor (mean over levels) with Easy/Hard/Tough markers;
* ``training_curves``: training loss per step and validation FPR95 per epoch (metrics.csv);
* ``difficulty``: histograms of a, b and w over training (diagnostics.npz) of the reference method
  and its ablations, each after the stage it continues from, showing how the difficulty
  distribution moves.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from descbench.fileio import atomic_path  # noqa: E402

if TYPE_CHECKING:
    from descbench.report.build import ReportBuilder

LEVEL_MARKERS = {"easy": ("o", "tab:green"), "hard": ("s", "tab:orange"), "tough": ("^", "tab:red")}
TASKS = ("verification", "matching", "retrieval")


def save(fig, out_dir: Path, name: str) -> list[Path]:
    paths = []
    for fmt in ("pdf", "png"):
        path = Path(out_dir) / f"{name}.{fmt}"
        with atomic_path(path, suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def hpatches_summary(builder: "ReportBuilder") -> plt.Figure:
    methods = builder.rows
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.35 * len(methods) + 1.5), sharey=True)
    for ax, task in zip(axes, TASKS):
        means, levels = [], {lv: [] for lv in LEVEL_MARKERS}
        for method in methods:
            evaluations = builder._hp_seeds(method)
            means.append(100 * np.mean([e["summary"][task] for e in evaluations]))
            for lv in LEVEL_MARKERS:
                levels[lv].append(100 * np.mean([e["summary"]["levels"][task][lv] for e in evaluations]))
        y = np.arange(len(methods))
        ax.barh(y, means, color="lightsteelblue", edgecolor="steelblue")
        for lv, (marker, color) in LEVEL_MARKERS.items():
            ax.scatter(levels[lv], y, marker=marker, color=color, zorder=3, s=18, label=lv.capitalize())
        for yi, m in zip(y, means):
            ax.text(m, yi, f" {m:.1f}", va="center", fontsize=7)
        ax.set_title(f"{task.capitalize()} mAP (%)")
        ax.set_xlim(0, 100)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(np.arange(len(methods)), methods)
    axes[0].invert_yaxis()
    axes[-1].legend(loc="lower right", fontsize=7)
    fig.suptitle(f"HPatches, split {builder.cfg.hp_split} ({builder.cfg.preset} preset)", y=1.02)
    return fig


def training_curves(builder: "ReportBuilder") -> plt.Figure:
    cfg = builder.cfg
    seed, train_set = cfg.seeds[0], cfg.hp_train_set
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for method in cfg.methods:
        metrics = builder.results.metrics(method, train_set, seed)
        ax_loss.plot(metrics["step"], metrics["loss"], label=method, lw=1)
        if "val_fpr95" in metrics.columns:
            val = metrics.dropna(subset=["val_fpr95"])
            if not val.empty:
                x = val["epoch"] if "epoch" in val.columns else val["step"]
                ax_val.plot(x, 100 * pd.to_numeric(val["val_fpr95"]), marker="o", label=method, lw=1)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("Loss (each method's own loss: scales differ)")
    ax_val.set_xlabel("epoch")
    ax_val.set_ylabel("validation FPR95 (%)")
    ax_val.set_title(_validation_title(builder, train_set, seed))
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
    if cfg.methods:
        ax_loss.legend(fontsize=7)
    else:
        ax_loss.text(0.5, 0.5, "no trained methods", ha="center", va="center", transform=ax_loss.transAxes)
    fig.suptitle(f"Training on {train_set}, seed {seed} ({cfg.preset} preset)")
    return fig


def _validation_title(builder: "ReportBuilder", train_set: str, seed: int) -> str:
    """What the validation pairs came from (metrics.csv's val_classes): held-out points, or a fixed
    slice of the training points when, as in the authors' code, every point is trained on."""
    kinds = set()
    for method in builder.cfg.methods:
        metrics = builder.results.metrics(method, train_set, seed)
        if "val_classes" in metrics.columns:
            kinds.update(metrics["val_classes"].dropna().astype(str))
    if kinds == {"training-slice"}:
        return f"A fixed slice of the training points of {train_set} (not held out)"
    if kinds == {"held-out"}:
        return f"Held-out points of {train_set}"
    return f"Points of {train_set} (held-out or a training slice, by method)"


def with_stages(methods: list[str]) -> list[str]:
    """Each method preceded by the methods it continues from (its stage 1), each listed once."""
    from descbench import registry

    known = registry.all_descriptors()
    ordered: list[str] = []
    for method in methods:
        chain = [method]
        while chain[0] in known and (parent := known[chain[0]].init_from) and parent not in chain:
            chain.insert(0, parent)
        ordered += [m for m in chain if m not in ordered]
    return ordered


def difficulty(builder: "ReportBuilder") -> plt.Figure:
    cfg = builder.cfg
    if cfg.reference is None:  # released weights and handcrafted only: nothing was trained
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "No trained methods: no difficulty distributions", ha="center", va="center")
        return fig
    methods = with_stages([cfg.reference] + cfg.variants)
    seed, train_set = cfg.seeds[0], cfg.hp_train_set
    quantities = (("hist_a", "a (positive distance)"), ("hist_b", "b (hardest negative)"),
                  ("hist_w", "w (self-teacher weight)"))
    fig, axes = plt.subplots(len(methods), 3, figsize=(12, 2.4 * len(methods) + 0.8), squeeze=False)
    for row, method in enumerate(methods):
        diag = builder.results.diagnostics(method, train_set, seed)
        steps = np.asarray(diag.get("steps", np.arange(1)))
        edges = np.asarray(diag["bin_edges"])
        for col, (key, label) in enumerate(quantities):
            ax = axes[row, col]
            hist = np.asarray(diag.get(key, np.zeros((len(steps), len(edges) - 1))), dtype=np.float64)
            if hist.size == 0 or not np.any(hist):
                ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
            else:
                norm = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1e-12)
                x_hi = steps[-1] if len(steps) > 1 and steps[-1] > steps[0] else steps[0] + 1
                ax.imshow(norm.T, origin="lower", aspect="auto", cmap="viridis",
                          extent=(steps[0], x_hi, edges[0], edges[-1]))
            if row == 0:
                ax.set_title(label)
            if col == 0:
                ax.set_ylabel(f"{method}\nvalue", fontsize=7)
            if row == len(methods) - 1:
                ax.set_xlabel("step")
    fig.suptitle(f"Difficulty distributions over training ({train_set}, seed {seed}; "
                 "colour: fraction per step)")
    return fig


def write_all(builder: "ReportBuilder", out_dir: Path) -> list[Path]:
    written = []
    for name, make in (("hpatches_summary", hpatches_summary), ("training_curves", training_curves),
                       ("difficulty", difficulty)):
        written += save(make(builder), out_dir, name)
    return written
