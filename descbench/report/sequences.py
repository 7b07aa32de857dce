"""Report pieces of the HPatches sequences image-matching evaluation, built from plain tables.

Input everywhere: one long ``pairs`` frame, the ``pairs.csv`` files of ``descbench evaluate
hpatches-sequences`` stacked with a ``method`` column, a ``seed`` column (NaN for handcrafted descriptors
and released weights) and a ``released`` column (``collect`` builds it). From it:

* ``mma_curves``: MMA per threshold for overall / illumination / viewpoint, mean and sd over seeds;
* ``mma_figure``: the MMA-vs-threshold figure (three panels, one line per method), as D2-Net plots it;
* ``paired_tests``: Wilcoxon signed-rank tests over sequences against the reference method (per-sequence
  MMA@3 px and homography accuracy @3 px, seeds averaged), Holm-adjusted within this table's family;
* ``sequences_table``: MMA@3 px (overall, i_, v_), homography accuracy @3 px and matches per pair.

Where the workflow puts the score files is fixed here too (``scores_dir``), for the Snakefile and the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from descbench.errors import DescbenchError  # noqa: E402
from descbench.fileio import write_csv  # noqa: E402
from descbench.report import stats  # noqa: E402
from descbench.report.tables import Table, mean_sd, write_table  # noqa: E402

LEARNED_DIR = "scores/hpatches_sequences/{subset}/{train_set}/{method}/seed{seed}"
HANDCRAFTED_DIR = "scores/hpatches_sequences/{subset}/handcrafted/{method}"
RELEASED_DIR = "scores/hpatches_sequences/{subset}/released/{release}"
SCORE_FILES = ("summary.json", "pairs.csv")
SUBSET = "d2net"  # the subset the workflow evaluates and the tables show
TABLE_NAME = "hpatches_sequences"
FIGURE_NAME = "hpatches_sequences_mma"
TESTS_NAME = "hpatches_sequences_tests.csv"
FAMILY = "hpatches_sequences"
THRESHOLDS = tuple(range(1, 11))
MMA_COLUMNS = tuple(f"mma_{t}" for t in THRESHOLDS)
PAIR_COLUMNS = ("sequence", "category", "image", "n_keypoints_1", "n_keypoints", "n_matches", *MMA_COLUMNS,
                "corner_error")
PANELS = (("overall", "Overall"), ("i", "Illumination"), ("v", "Viewpoint"))
ENDPOINT_PX = 3  # MMA and homography accuracy threshold of the table and the tests
ENDPOINTS = {"mma": f"MMA@{ENDPOINT_PX}px per sequence",
             "homography": f"homography accuracy @{ENDPOINT_PX}px per sequence"}
TEST_COLUMNS = ["family", "comparison", "endpoint", "test", "inputs", "n", "statistic", "p", "p_holm", "caveat"]
SUBSET_NOTES = {
    "d2net": "Subset d2net (D2-Net's benchmark): the 8 sequences with images over 1600x1200 left out (i_contruction, "
             "i_crownnight, i_dc, i_pencils, i_whitebuilding, v_artisans, v_astronautis, v_talent), 108 of the "
             "real 116 (52 i_, 56 v_)",
    "full": "Subset full: every sequence (116 real ones: 57 i_, 59 v_)",
}


def scores_dir(results: str | Path, method: str, subset: str = SUBSET, train_set: str | None = None,
               seed: int | None = None, release: bool = False) -> Path:
    """The score folder of a learned model (train set and seed), a handcrafted descriptor, or released
    weights (``release=True``, ``method`` the release name)."""
    if release:
        return Path(results) / RELEASED_DIR.format(subset=subset, release=method)
    if train_set is None:
        return Path(results) / HANDCRAFTED_DIR.format(subset=subset, method=method)
    return Path(results) / LEARNED_DIR.format(subset=subset, train_set=train_set, method=method, seed=seed)


def eligible_releases(names: Iterable[str]) -> list[str]:
    """The released weights scored on the sequences: those not trained on HPatches (any of its sequences)."""
    from descbench import weights

    return [name for name in names if weights.get(name).hpatches_overlap in ("none", "unstated")]


def read_pairs(path: str | Path) -> pd.DataFrame:
    """One ``pairs.csv``, with its columns checked."""
    path = Path(path)
    if not path.is_file():
        raise DescbenchError(f"{path} is missing; it is made by `descbench evaluate hpatches-sequences` (the "
                             "workflow's evaluate_sequences_* rules)")
    frame = pd.read_csv(path)
    missing = [c for c in PAIR_COLUMNS if c not in frame.columns]
    if missing:
        raise DescbenchError(f"{path} lacks the columns {missing}; evaluate it again")
    return frame


def collect(entries: Iterable[tuple[str, int | None, pd.DataFrame, bool]]) -> pd.DataFrame:
    """Stack (method, seed or None, pairs frame, released?) into the long ``pairs`` frame."""
    frames = [frame.assign(method=method, seed=np.nan if seed is None else seed, released=released)
              for method, seed, frame, released in entries]
    if not frames:
        raise DescbenchError("no HPatches sequences results to report")
    return pd.concat(frames, ignore_index=True)


def load_pairs(results: str | Path, methods: list[str], seeds: list[int], train_set: str,
               handcrafted: list[str] = (), released: list[str] = (), subset: str = SUBSET,
               released_label=lambda name: name) -> pd.DataFrame:
    """The long ``pairs`` frame of a results tree: every method at every seed (models of ``train_set``),
    every handcrafted descriptor, every release (its row named ``released_label(name)``)."""
    entries = [(m, seed, read_pairs(scores_dir(results, m, subset, train_set, seed) / "pairs.csv"), False)
               for m in methods for seed in seeds]
    entries += [(m, None, read_pairs(scores_dir(results, m, subset) / "pairs.csv"), False)
                for m in handcrafted if m not in methods]
    entries += [(released_label(r), None, read_pairs(scores_dir(results, r, subset, release=True) / "pairs.csv"),
                 True) for r in released]
    return collect(entries)


def _methods(pairs: pd.DataFrame, methods: list[str] | None) -> list[str]:
    return list(methods) if methods is not None else list(dict.fromkeys(pairs["method"]))


def _per_seed(pairs: pd.DataFrame, column: pd.Series, category: str) -> pd.DataFrame:
    """Mean of ``column`` over the pairs of ``category`` ('overall', 'i', 'v'), per method and seed."""
    part = pairs if category == "overall" else pairs[pairs["category"] == category]
    keys = [part["method"], part["seed"].fillna(-1)]
    return column.loc[part.index].groupby(keys).mean().rename("value").reset_index()


def mma_curves(pairs: pd.DataFrame) -> pd.DataFrame:
    """Tidy MMA curves: method, category, threshold, mma_mean, mma_sd (over seeds; NaN for one), n_seeds."""
    rows = []
    for category, _title in PANELS:
        for t, column in zip(THRESHOLDS, MMA_COLUMNS):
            per_seed = _per_seed(pairs, pairs[column], category)
            for method, group in per_seed.groupby("method", sort=False):
                values = group["value"].to_numpy()
                rows.append(dict(method=method, category=category, threshold=t, mma_mean=float(values.mean()),
                                 mma_sd=float(values.std(ddof=1)) if len(values) > 1 else np.nan,
                                 n_seeds=len(values)))
    return pd.DataFrame(rows, columns=["method", "category", "threshold", "mma_mean", "mma_sd", "n_seeds"])


HANDCRAFTED_COLOURS = ("black", "teal", "saddlebrown", "darkmagenta", "navy")


def mma_figure(pairs: pd.DataFrame, methods: list[str] | None = None, reference: str | None = None,
               title: str | None = None) -> plt.Figure:
    """MMA against the threshold (1-10 px) in three panels, Overall, Illumination, Viewpoint; one line per
    method (mean over seeds): learned models solid in tab10 colours (the reference thicker), handcrafted
    descriptors dashed in dark colours, released weights dotted. The MMA axis starts at 0 unless every
    curve lies above 0.5; then at the tenth below the lowest value, so close methods stay apart."""
    methods = _methods(pairs, methods)
    curves = mma_curves(pairs)
    kinds = pairs.groupby("method")[["seed", "released"]].agg({"seed": lambda s: s.notna().any(),
                                                               "released": "any"})
    tab10 = plt.get_cmap("tab10")
    styles, n_coloured, n_dark = {}, 0, 0
    for method in methods:
        if kinds.loc[method, "seed"] or kinds.loc[method, "released"]:
            styles[method] = (":" if kinds.loc[method, "released"] else "-", tab10(n_coloured % 10))
            n_coloured += 1
        else:
            styles[method] = ("--", HANDCRAFTED_COLOURS[n_dark % len(HANDCRAFTED_COLOURS)])
            n_dark += 1
    shown = curves[curves["method"].isin(methods)]["mma_mean"]
    low = 0.0 if shown.empty or shown.min() < 0.5 else np.floor(10 * shown.min()) / 10
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharey=True)
    for ax, (category, panel) in zip(axes, PANELS):
        for method in methods:
            curve = curves[(curves["method"] == method) & (curves["category"] == category)]
            if curve.empty:
                continue
            style, colour = styles[method]
            ax.plot(curve["threshold"], curve["mma_mean"], ls=style, marker="o", ms=3,
                    lw=2.8 if method == reference else 1.4, color=colour, label=method)
        ax.set_title(panel)
        ax.set_xlim(THRESHOLDS[0], THRESHOLDS[-1])
        ax.set_xticks(THRESHOLDS)
        ax.set_ylim(low, 1)
        ax.set_xlabel("threshold [px]")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("MMA")
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def per_sequence(pairs: pd.DataFrame, method: str, endpoint: str) -> pd.Series:
    """One value per sequence (mean over its 5 pairs, then over seeds): ``endpoint`` 'mma' (MMA@3 px) or
    'homography' (fraction of pairs with corner error <= 3 px)."""
    own = pairs[pairs["method"] == method]
    if own.empty:
        raise DescbenchError(f"no HPatches sequences results for {method!r}")
    value = own[f"mma_{ENDPOINT_PX}"] if endpoint == "mma" else (own["corner_error"] <= ENDPOINT_PX).astype(float)
    by_seed = value.groupby([own["sequence"], own["seed"].fillna(-1)]).mean()
    return by_seed.groupby(level="sequence").mean()


def paired_tests(pairs: pd.DataFrame, reference: str, methods: list[str] | None = None,
                 subset: str = SUBSET) -> pd.DataFrame:
    """Wilcoxon signed-rank (two-sided) of each non-released method against ``reference`` over sequences,
    for both endpoints; Holm-adjusted within the family. Columns as ``descbench.report.build.TestLog``."""
    ref = {e: per_sequence(pairs, reference, e) for e in ENDPOINTS}
    released = set(pairs.loc[pairs["released"].astype(bool), "method"])
    rows = []
    for method in _methods(pairs, methods):
        if method == reference or method in released:
            continue
        for endpoint, label in ENDPOINTS.items():
            own = per_sequence(pairs, method, endpoint)
            if not own.index.equals(ref[endpoint].index):
                raise DescbenchError(f"HPatches sequences results of {method!r} cover other sequences than "
                                     f"{reference!r}'s; evaluate both on the same subset")
            statistic, p = stats.wilcoxon_paired(own.to_numpy(), ref[endpoint].to_numpy())
            rows.append(dict(family=FAMILY, comparison=f"{method} vs {reference}", endpoint=label,
                             test="Wilcoxon signed-rank (two-sided)",
                             inputs=f"per-sequence {label.split(' per ')[0]} (mean over the 5 pairs, seeds "
                                    f"averaged), subset {subset}",
                             n=len(own), statistic=statistic, p=p, p_holm=np.nan,
                             caveat="sequences differ in size and difficulty; the test treats them as "
                                    "exchangeable units"))
    frame = pd.DataFrame(rows, columns=TEST_COLUMNS)
    frame["p_holm"] = stats.holm(frame["p"].to_numpy(dtype=float))
    return frame


def sequences_table(pairs: pd.DataFrame, methods: list[str] | None = None, reference: str | None = None,
                    alpha: float = 0.05, subset: str = SUBSET, preset: str = "",
                    tests: pd.DataFrame | None = None) -> Table:
    """MMA@3 px (overall, i_, v_), homography accuracy @3 px (%) and matches per pair; mean ± sd over seeds.
    ``tests`` (``paired_tests``) marks with † the cells whose Holm-adjusted p is below ``alpha``."""
    methods = _methods(pairs, methods)
    correct = (pairs["corner_error"] <= ENDPOINT_PX).astype(float)
    mma = pairs[f"mma_{ENDPOINT_PX}"]
    entries = [(f"MMA@{ENDPOINT_PX}px", mma, "overall", 100.0, 2, "mma"),
               (f"MMA@{ENDPOINT_PX}px i", mma, "i", 100.0, 2, None),
               (f"MMA@{ENDPOINT_PX}px v", mma, "v", 100.0, 2, None),
               (f"Hom. acc.@{ENDPOINT_PX}px", correct, "overall", 100.0, 2, "homography"),
               ("matches/pair", pairs["n_matches"].astype(float), "overall", 1.0, 1, None)]
    per_seed = [_per_seed(pairs, column, category) for _l, column, category, *_ in entries]
    significant = set()
    if tests is not None and not tests.empty:
        for _, row in tests[tests["p_holm"] < alpha].iterrows():
            endpoint = next(e for e, label in ENDPOINTS.items() if label == row["endpoint"])
            significant.add((row["comparison"].split(" vs ")[0], endpoint))
    cells, values, tidy = [], np.full((len(methods), len(entries)), np.nan), []
    for i, method in enumerate(methods):
        row = []
        for j, ((label, _c, category, scale, digits, endpoint), frame) in enumerate(zip(entries, per_seed)):
            vals = frame.loc[frame["method"] == method, "value"].tolist()
            text, mean, sd, n = mean_sd(vals, scale=scale, digits=digits)
            if (method, endpoint) in significant:
                text += "†"
            row.append(text)
            if label != "matches/pair":  # more matches is not better in itself: not ranked
                values[i, j] = mean
            tidy.append(dict(method=method, measure=label, category=category, n_seeds=n, mean=mean, sd=sd,
                             subset=subset))
        cells.append(row)
    keypoints = _keypoints_per_image(pairs)
    notes = [f"{SUBSET_NOTES.get(subset, subset)}; here {_counts(pairs)}. Mean ± sd over seeds; one SIFT "
             f"detector for every descriptor ({keypoints:.0f} keypoints per image on average), mutual "
             "nearest-neighbour matching. "
             f"MMA@{ENDPOINT_PX}px: matches within {ENDPOINT_PX} px of the ground-truth homography's "
             f"reprojection; Hom. acc.: RANSAC homography whose image-corner error is <= {ENDPOINT_PX} px (%)."]
    if reference is not None and tests is not None:
        notes.append(f"†: differs from {reference} by a Wilcoxon signed-rank test over sequences, Holm-adjusted "
                     f"p < {alpha}.")
    preset_note = f" ({preset} preset)" if preset else ""
    return Table(title=f"HPatches sequences image matching (%), higher is better{preset_note}",
                 row_header="method", rows=methods, columns=[e[0] for e in entries], cells=cells, values=values,
                 lower_is_better=False, notes=notes,
                 tidy=pd.DataFrame(tidy, columns=["method", "measure", "category", "n_seeds", "mean", "sd",
                                                  "subset"]))


def _counts(pairs: pd.DataFrame) -> str:
    """'N sequences (a i_, b v_)' of the results."""
    first = pairs.drop_duplicates("sequence")
    n_i = int((first["category"] == "i").sum())
    return f"{len(first)} sequences ({n_i} i_, {len(first) - n_i} v_)"


def _keypoints_per_image(pairs: pd.DataFrame) -> float:
    """Mean keypoints per image over one method's images (the detector is the same for all)."""
    own = pairs[pairs["method"] == pairs["method"].iloc[0]]
    own = own[own["seed"].fillna(-1) == own["seed"].fillna(-1).iloc[0]]
    first = own.drop_duplicates("sequence")["n_keypoints_1"]
    return float((first.sum() + own["n_keypoints"].sum()) / (len(first) + len(own)))


def write_outputs(pairs: pd.DataFrame, out_dir: str | Path, methods: list[str] | None = None,
                  reference: str | None = None, alpha: float = 0.05, subset: str = SUBSET,
                  preset: str = "") -> list[Path]:
    """tables/hpatches_sequences.{tex,md,csv}, figures/hpatches_sequences_mma.{pdf,png} and
    stats/hpatches_sequences_tests.csv under ``out_dir``."""
    from descbench.report.figures import save

    out_dir = Path(out_dir)
    tests = paired_tests(pairs, reference, methods, subset) if reference is not None else None
    table = sequences_table(pairs, methods, reference, alpha, subset, preset, tests)
    written = write_table(table, out_dir / "tables", TABLE_NAME)
    title = f"HPatches sequences, subset {subset}: {_counts(pairs)}"
    written += save(mma_figure(pairs, methods, reference, title), out_dir / "figures", FIGURE_NAME)
    # without a reference there is nothing to test: the file is written with its header only
    write_csv(out_dir / "stats" / TESTS_NAME, tests if tests is not None else pd.DataFrame(columns=TEST_COLUMNS))
    written.append(out_dir / "stats" / TESTS_NAME)
    return written
