"""Assemble the report: the three tables, the statistics file and the figures from one results tree."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from descbench import registry, weights
from descbench.errors import DescbenchError
from descbench.fileio import write_csv
from descbench.report import figures, layout, sequences, stats
from descbench.report.scores import ReportConfig, Results
from descbench.report.tables import Table, mean_sd, write_table

log = logging.getLogger(__name__)

LEVEL_LABELS = {"easy": "E", "hard": "H", "tough": "T"}
TASKS = ("verification", "matching", "retrieval")
DAGGER = "†"
RELEASED_TAG = "released"


def released_label(release: str, split: str | None = None) -> str:
    """The table row of released weights, e.g. 'hardnet-plus@liberty (released)'; ``split`` when the release
    is scored on another HPatches split than the table's."""
    return f"{release} ({RELEASED_TAG}, split {split})" if split else f"{release} ({RELEASED_TAG})"


def released_ubc_columns(release: str, columns: list[tuple[str, str]], ubc_sets: list[str]) -> dict[int, str]:
    """{column index: test set} of the UBC columns a release fills.

    A release trained on one configured UBC set fills that set's train→test columns; one trained on no UBC
    set, or on several, fills every column whose test set it was not trained on. The test set must be one
    it was not trained on (descbench.weights.ubc_test_sets), so cells stay empty where the release was
    trained on the test set or its train→test pair is not configured.
    """
    tested = set(weights.ubc_test_sets(release, ubc_sets))
    own = [s for s in weights.get(release).trained_on if s in ubc_sets]
    return {j: test for j, (train, test) in enumerate(columns)
            if test in tested and (len(own) != 1 or train == own[0])}


MIN_SEEDS_FOR_T = 3  # a paired t-test over seeds replaces the per-unit test from this many seeds on


def seeds_phrase(seeds: list[int]) -> str:
    """'mean ± sd over seeds 0, 1, 2', or 'one seed (0), so no sd' (no Python lists in captions)."""
    if len(seeds) == 1:
        return f"one seed ({seeds[0]}), so no sd"
    return "mean ± sd over seeds " + ", ".join(str(s) for s in seeds)


@dataclass(frozen=True)
class Comparison:
    """One test of a method against the reference on one endpoint, shared by every table showing it.

    ``min_p`` is the smallest p the test can give (1/(B+1) for a bootstrap, 2/2^n for Wilcoxon over n
    sequences, 0 for a t-test), from which a table says whether Holm can reach significance at all.
    """

    test: str
    short: str
    statistic: float
    p: float
    min_p: float
    n: int
    inputs: str
    caveat: str


@dataclass
class TestLog:
    """Every test shown in the report, one row per (table, comparison), Holm-adjusted per table."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, family: str, comparison: str, endpoint: str, test: Comparison) -> int:
        self.rows.append(dict(family=family, comparison=comparison, endpoint=endpoint, test=test.test,
                              inputs=test.inputs, n=test.n, statistic=test.statistic, p=test.p,
                              p_holm=np.nan, p_min=test.min_p, caveat=test.caveat))
        return len(self.rows) - 1

    def adjust(self) -> None:
        frame = pd.DataFrame(self.rows)
        if frame.empty:
            return
        for _family, index in frame.groupby("family").groups.items():
            adjusted = stats.holm(frame.loc[index, "p"].to_numpy(dtype=float))
            for i, value in zip(index, adjusted):
                self.rows[i]["p_holm"] = value

    def family(self, family: str) -> pd.DataFrame:
        return self.frame().query("family == @family")

    def frame(self) -> pd.DataFrame:
        columns = ["family", "comparison", "endpoint", "test", "inputs", "n", "statistic", "p",
                   "p_holm", "p_min", "caveat"]
        return pd.DataFrame(self.rows, columns=columns)


def reach_note(tests: pd.DataFrame, alpha: float, what: str) -> str:
    """Whether Holm over ``tests`` (one table's family) can reach ``alpha``, derived from the smallest
    p each test can give; names the limit of each kind of test that cannot."""
    tested = tests[np.isfinite(tests["p"].to_numpy(dtype=float))]
    m = len(tested)
    if m == 0:
        return ""
    floors = stats.holm_floor(tested["p_min"].to_numpy(dtype=float))
    limits = []
    for name, group in tested.groupby("test", sort=False):
        floor = floors[tested.index.get_indexer(group.index)].min()
        if floor >= alpha:
            p_min = group["p_min"].min()
            why = (f"with {int(group['n'].max())} sequences the smallest two-sided Wilcoxon p is "
                   f"2/2^{int(group['n'].max())} = {p_min:.2g}" if name.startswith("Wilcoxon") else
                   f"the smallest {name} p is {p_min:.2g}")
            by = f" tested by {name}" if tested["test"].nunique() > 1 else ""
            limits.append(f"{why}, so after Holm over this table's {m} comparisons (adjusted p at least "
                          f"{floor:.2g}) no {what} difference{by} can reach p < {alpha}")
    if limits:
        return "; ".join(limits)[0].upper() + "; ".join(limits)[1:] + "."
    return (f"Holm over this table's {m} comparisons can reach p < {alpha} (smallest reachable adjusted "
            f"p {floors.min():.2g}).")


def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "–"
    return f"{p:.2g}" if p >= 1e-3 else "<0.001"


def _pairs_aligned(a: pd.DataFrame, b: pd.DataFrame, what: str) -> None:
    if len(a) != len(b) or not (np.array_equal(a["idx1"].to_numpy(), b["idx1"].to_numpy())
                                and np.array_equal(a["idx2"].to_numpy(), b["idx2"].to_numpy())):
        raise DescbenchError(f"{what}: the two pairs.csv files list different pairs; re-run the "
                             "evaluation of both on the same prepared test set")


def stage_chain(method: str) -> list[str]:
    """``method`` preceded by the runs it continues from (its stage 1), earliest first."""
    known = registry.all_descriptors()
    chain = [method]
    while chain[0] in known and (parent := known[chain[0]].init_from) and parent not in chain:
        chain.insert(0, parent)
    return chain


class ReportBuilder:
    def __init__(self, cfg: ReportConfig, results: Results):
        self.cfg = cfg
        self.results = results
        self.tests = TestLog()
        self.rng = np.random.default_rng(cfg.bootstrap_seed)
        self._ubc_fpr_boot: dict[tuple, np.ndarray] | None = None
        self._comparisons: dict[tuple, Comparison | None] = {}

    @property
    def rows(self) -> list[str]:
        """Our own rows (trained methods, then handcrafted); released weights follow in each table."""
        return list(self.cfg.methods) + [m for m in self.cfg.handcrafted if m not in self.cfg.methods]

    def _released_note(self) -> str:
        ref = self.cfg.reference
        tested = f"not tested against {ref} (never marked {DAGGER})" if ref else "not tested"
        return (f"Rows marked ({RELEASED_TAG}): the authors' released weights (descbench.weights), one "
                f"evaluation each with the same protocol, no seeds; {tested}.")

    def _by_seeds(self, method: str) -> bool:
        """Whether ``method`` is compared with the reference over seeds (both trained, >= 3 seeds)."""
        return self.results.is_learned(method) and len(self.cfg.seeds) >= MIN_SEEDS_FOR_T

    def _own_seed(self, method: str, seed: int) -> int | None:
        return seed if self.results.is_learned(method) else None

    def _mark(self, table: Table, cell_tests: dict[tuple[str, int], int], family: str) -> None:
        """Holm-adjust ``family`` and mark the cells whose test stays below alpha."""
        self.tests.adjust()
        for (method, j), k in cell_tests.items():
            p = self.tests.rows[k]["p_holm"]
            if np.isfinite(p) and p < self.cfg.alpha:
                table.cells[table.rows.index(method)][j] += DAGGER

    def _test_sentence(self, unit_test: str) -> str:
        seeds = (f"; for two trained methods with >= {MIN_SEEDS_FOR_T} seeds, a paired t-test over seeds "
                 "instead" if len(self.cfg.seeds) >= MIN_SEEDS_FOR_T else "")
        return (f"{DAGGER}: differs from {self.cfg.reference} with Holm-adjusted p < {self.cfg.alpha} over "
                f"this table's comparisons, by {unit_test}{seeds}. Every test is listed in "
                f"{layout.TESTS_CSV}.")

    # -- UBC -----------------------------------------------------------------------------------------
    def _fpr_values(self, method: str, train: str, test: str) -> list[float]:
        return [self.results.ubc_fpr95(method, train, test, seed) for seed in self.results.seeds_of(method)]

    def _bootstrapped(self) -> list[str]:
        """Methods whose UBC runs the cluster bootstrap scores: those tested by it, and the ablation
        variants (their intervals)."""
        return [m for m in self.rows
                if m != self.cfg.reference and (not self._by_seeds(m) or m in self.cfg.variants)]

    def _ubc_runs_boot(self) -> dict[tuple, np.ndarray]:
        """(method, train set, test set, seed) -> (B,) FPR95 of that run under the 3D-point resamples
        of its test scene, every run of a scene under the same resamples."""
        if self._ubc_fpr_boot is not None:
            return self._ubc_fpr_boot
        cfg, ref = self.cfg, self.cfg.reference
        out: dict[tuple, np.ndarray] = {}
        for test in cfg.ubc_sets:
            trains = [tr for tr, te in cfg.ubc_columns() if te == test]
            if not trains:
                continue
            first = self.results.ubc_pairs(ref, trains[0], test, cfg.seeds[0])
            group = stats.UBCGroup(first["point1"].to_numpy(), first["point2"].to_numpy(),
                                   first["is_match"].to_numpy())
            keys = []
            for method in [ref] + self._bootstrapped():
                for train in trains:
                    for seed in self.results.seeds_of(method):
                        key = (method, train if self.results.is_learned(method) else None, test, seed)
                        if key in keys:
                            continue
                        pairs = self.results.ubc_pairs(method, train, test, seed)
                        _pairs_aligned(pairs, first, f"{method} vs {ref} on {test}")
                        keys.append(key)
                        group.distances.append(pairs["distance"].to_numpy())
            fprs = stats.ubc_bootstrap(group, cfg.n_bootstrap, self.rng)
            out.update({key: fprs[:, k] for k, key in enumerate(keys)})
        self._ubc_fpr_boot = out
        return out

    def ubc_differences(self, method: str) -> np.ndarray:
        """(B, columns + 1) bootstrap FPR95 differences method - reference per train→test column (seeds
        paired, then averaged) and of their mean."""
        cfg, boot = self.cfg, self._ubc_runs_boot()
        columns = []
        for train, test in cfg.ubc_columns():
            own_train = train if self.results.is_learned(method) else None
            columns.append(np.mean([boot[(method, own_train, test, self._own_seed(method, s))]
                                    - boot[(cfg.reference, train, test, s)] for s in cfg.seeds], axis=0))
        columns = np.stack(columns, axis=1)
        return np.concatenate([columns, columns.mean(axis=1, keepdims=True)], axis=1)

    def _ubc_seed_values(self, method: str, j: int) -> list[float]:
        columns = self.cfg.ubc_columns()
        if j < len(columns):
            return self._fpr_values(method, *columns[j])
        return list(np.mean([self._fpr_values(method, *c) for c in columns], axis=0))

    def ubc_comparison(self, method: str, j: int) -> Comparison:
        """The one test of ``method`` against the reference on UBC column ``j`` (the last: the mean)."""
        key = ("ubc", method, j)
        if key in self._comparisons:
            return self._comparisons[key]
        cfg, ref = self.cfg, self.cfg.reference
        own, base = self._ubc_seed_values(method, j), self._ubc_seed_values(ref, j)
        if self._by_seeds(method):
            t, p = stats.paired_t(own, base)
            result = Comparison("paired t-test over seeds", "t-test (seeds)", t, p, 0.0, len(own),
                                f"FPR95 of seeds {', '.join(map(str, cfg.seeds))}",
                                "few seeds: low power; assumes normal seed differences")
        else:
            observed = float(np.mean(own) - np.mean(base))
            diffs = self.ubc_differences(method)[:, j]
            columns = cfg.ubc_columns()
            tests = [columns[j][1]] if j < len(columns) else sorted({te for _tr, te in columns})
            result = Comparison(
                "paired cluster bootstrap over 3D points", "cluster bootstrap", 100 * observed,
                stats.bootstrap_pvalue(diffs, observed), stats.bootstrap_min_p(cfg.n_bootstrap),
                cfg.n_bootstrap,
                f"pairs.csv of {', '.join(tests)}; {cfg.n_bootstrap} resamples of each test scene's 3D "
                "points (a pair weighted by its points' draw counts), seeds paired; statistic: "
                "observed difference in FPR95 points",
                "p = (k+1)/(B+1) from the null-centred resamples; FPR95 in the HardNet convention")
        self._comparisons[key] = result
        return result

    def _ubc_layout(self) -> tuple[list[tuple[str, str]], list[str], list[tuple[str, list[str]]]]:
        """The UBC tables' (train, test) columns, their labels with the mean, and the LaTeX header groups."""
        columns = self.cfg.ubc_columns()
        labels = [f"{train}→{test}" for train, test in columns] + ["mean"]
        groups = [(f"trained on {train}", [te for tr, te in columns if tr == train])
                  for train in dict.fromkeys(tr for tr, _ in columns)] + [("", ["mean"])]
        return columns, labels, groups

    def ubc_table(self) -> Table:
        cfg = self.cfg
        columns, labels, groups = self._ubc_layout()
        rows = self.rows
        cells, values, tidy = [], np.full((len(rows), len(labels)), np.nan), []
        cell_tests: dict[tuple[str, int], int] = {}
        for i, method in enumerate(self.rows):
            row = []
            per_seed_cols = []
            for j, (train, test) in enumerate(columns):
                vals = self._fpr_values(method, train, test)
                per_seed_cols.append(vals)
                text, mean, sd, n = mean_sd(vals)
                row.append(text)
                values[i, j] = mean
                tidy.append(dict(method=method, train_set=train, test_set=test, n_seeds=n,
                                 fpr95_mean=mean, fpr95_sd=sd, released=False))
            seed_means = list(np.mean(np.array(per_seed_cols), axis=0))
            text, mean, sd, n = mean_sd(seed_means)
            row.append(text)
            values[i, -1] = mean
            tidy.append(dict(method=method, train_set="mean", test_set="mean", n_seeds=n,
                             fpr95_mean=mean, fpr95_sd=sd, released=False))
            cells.append(row)
            if cfg.reference is not None and method != cfg.reference:
                for j, label in enumerate(labels):
                    cell_tests[(method, j)] = self.tests.add(
                        "ubc_fpr95", f"{method} vs {cfg.reference}", f"FPR95 {label}",
                        self.ubc_comparison(method, j))
        released_rows, released_values, left_out = [], [], []
        for release in cfg.released:
            filled = released_ubc_columns(release, columns, cfg.ubc_sets)
            if not filled:
                left_out.append(release)
                continue
            label = released_label(release)
            row, row_values = [""] * len(labels), np.full(len(labels), np.nan)
            for j, test in filled.items():
                value = 100 * self.results.released_ubc_fpr95(release, test)
                row[j], row_values[j] = f"{value:.2f}", value
                train, _ = columns[j]
                tidy.append(dict(method=label, train_set=train, test_set=test, n_seeds=1,
                                 fpr95_mean=value, fpr95_sd=np.nan, released=True))
            if len(filled) == len(columns):
                mean = float(np.mean(row_values[:-1]))
                row[-1], row_values[-1] = f"{mean:.2f}", mean
                tidy.append(dict(method=label, train_set="mean", test_set="mean", n_seeds=1,
                                 fpr95_mean=mean, fpr95_sd=np.nan, released=True))
            released_rows.append(label)
            released_values.append(row_values)
            cells.append(row)
        if released_values:
            values = np.vstack([values, np.array(released_values)])
        table = Table(title=f"UBC PhotoTour FPR95 (%), lower is better ({cfg.preset} preset)",
                      row_header="method", rows=rows + released_rows, columns=labels, cells=cells,
                      values=values, lower_is_better=True, groups=groups,
                      tidy=pd.DataFrame(tidy, columns=["method", "train_set", "test_set", "n_seeds",
                                                       "fpr95_mean", "fpr95_sd", "released"]))
        self._mark(table, cell_tests, "ubc_fpr95")
        note = f"{seeds_phrase(cfg.seeds).capitalize()}; handcrafted descriptors have no seed. "
        if cfg.reference is not None:
            note += self._test_sentence(
                f"a paired cluster bootstrap over 3D points ({cfg.n_bootstrap} resamples of each test "
                "scene's points, every pair weighted by its points' draw counts, p = (k+1)/(B+1)), "
                "in every column and the mean")
            note += " " + reach_note(self.tests.family("ubc_fpr95"), cfg.alpha, "UBC")
        else:
            note += "No reference method: no significance tests."
        table.notes.append(note.strip())
        if cfg.released:
            table.notes.append(
                self._released_note() + " A release trained on one UBC set fills that set's train→test "
                "columns; one trained on no UBC set or on several fills every column of a test set it was "
                "not trained on; a cell is empty where the release was trained on the test set or the pair "
                "is not configured, and its mean is given only when every column is filled.")
        if left_out:
            table.notes.append(f"Released weights with no configured train→test pair: {', '.join(left_out)}.")
        return table

    # -- HPatches ------------------------------------------------------------------------------------
    def ubc_revisited_table(self) -> Table:
        """The revisited mAP (%) in the UBC table's layout; no significance marks (the report tests FPR95)."""
        cfg = self.cfg
        columns, labels, groups = self._ubc_layout()
        rows, cells, value_rows, tidy = [], [], [], []

        def add_row(label: str, per_column: list[list[float]], released: bool) -> None:
            row, row_values = [], []
            for (train, test), vals in zip(columns, per_column):
                text, mean, sd, n = mean_sd(vals) if vals and not np.isnan(vals).any() else ("", np.nan, np.nan, 0)
                row.append(text)
                row_values.append(mean)
                tidy.append(dict(method=label, train_set=train, test_set=test, n_seeds=n, map_mean=mean,
                                 map_sd=sd, released=released))
            complete = all(vals and not np.isnan(vals).any() for vals in per_column)
            seed_means = list(np.mean(np.array(per_column), axis=0)) if complete else []
            text, mean, sd, n = mean_sd(seed_means) if complete else ("", np.nan, np.nan, 0)
            row.append(text)
            row_values.append(mean)
            tidy.append(dict(method=label, train_set="mean", test_set="mean", n_seeds=n, map_mean=mean,
                             map_sd=sd, released=released))
            rows.append(label)
            cells.append(row)
            value_rows.append(row_values)

        for method in self.rows:
            add_row(method, [[self.results.ubc_revisited_map(method, train, test, seed)
                              for seed in self.results.seeds_of(method)] for train, test in columns], False)
        for release in cfg.released:
            filled = released_ubc_columns(release, columns, cfg.ubc_sets)
            if filled:
                add_row(released_label(release),
                        [[self.results.released_ubc_revisited_map(release, columns[j][1])] if j in filled
                         else [] for j in range(len(columns))], True)
        table = Table(title=f"UBC PhotoTour revisited mAP (%), higher is better ({cfg.preset} preset)",
                      row_header="method", rows=rows, columns=labels, cells=cells,
                      values=np.array(value_rows, dtype=float).reshape(len(rows), len(labels)),
                      lower_is_better=False, groups=groups,
                      tidy=pd.DataFrame(tidy, columns=["method", "train_set", "test_set", "n_seeds", "map_mean",
                                                       "map_sd", "released"]))
        table.notes.append(
            f"{seeds_phrase(cfg.seeds).capitalize()}; handcrafted descriptors have no seed. The mAP of "
            "brown_phototour_revisited 0.3.0 (matches within each reference image ranked by the "
            "second-nearest-neighbour ratio; docs/protocols.md §5), over every patch of the test set. No "
            "significance marks: the report tests FPR95. A cell is empty where the set has no interest.txt "
            "(the mAP was not computed) or the pair is not configured.")
        return table

    def _hp_seeds(self, method: str) -> list[dict[str, Any]]:
        return [self.results.hpatches(method, seed) for seed in self.results.seeds_of(method)]

    def hp_comparison(self, method: str, task: str) -> Comparison | None:
        """The one test of ``method`` against the reference on HPatches ``task`` mAP; None for
        verification without seeds to pair (it has no per-sequence scores)."""
        key = ("hpatches", method, task)
        if key in self._comparisons:
            return self._comparisons[key]
        cfg, ref = self.cfg, self.cfg.reference
        if self._by_seeds(method):
            own = [float(e["summary"][task]) for e in self._hp_seeds(method)]
            base = [float(e["summary"][task]) for e in self._hp_seeds(ref)]
            t, p = stats.paired_t(own, base)
            result = Comparison("paired t-test over seeds", "t-test (seeds)", t, p, 0.0, len(own),
                                f"{task} mAP of seeds {', '.join(map(str, cfg.seeds))}, split {cfg.hp_split}",
                                "few seeds: low power; assumes normal seed differences")
        elif task == "verification":
            result = None
        else:
            seqs, own = self._per_sequence(method, task)
            ref_seqs, base = self._per_sequence(ref, task)
            self._check_sequences(seqs, ref_seqs, method)
            stat, p = stats.wilcoxon_paired(own, base)
            result = Comparison(
                "Wilcoxon signed-rank over sequences (two-sided)", "Wilcoxon", stat, p,
                stats.wilcoxon_min_p(len(seqs)), len(seqs),
                f"per-sequence {task} mAP (mean over levels, seeds averaged), split {cfg.hp_split}",
                "sequences differ in size and difficulty; the test treats them as exchangeable units")
        self._comparisons[key] = result
        return result

    def hpatches_table(self) -> Table:
        cfg = self.cfg
        entries = [(t, lv) for t in TASKS for lv in (None,) + stats.LEVELS]
        labels = [t.capitalize() if lv is None else f"{t[:5].capitalize()}. {LEVEL_LABELS[lv]}"
                  for t, lv in entries]
        groups = [(t.capitalize(), ["mean"] + [LEVEL_LABELS[lv] for lv in stats.LEVELS]) for t in TASKS]
        rows = self.rows
        cells, values, tidy = [], np.full((len(rows), len(labels)), np.nan), []
        cell_tests: dict[tuple[str, int], int] = {}
        for i, method in enumerate(rows):
            evaluations = self._hp_seeds(method)
            row = []
            for j, (task, level) in enumerate(entries):
                if level is None:
                    vals = [float(e["summary"][task]) for e in evaluations]
                else:
                    vals = [float(e["summary"]["levels"][task][level]) for e in evaluations]
                text, mean, sd, n = mean_sd(vals)
                row.append(text)
                values[i, j] = mean
                tidy.append(dict(method=method, task=task, level=level or "all", n_seeds=n,
                                 map_mean=mean, map_sd=sd, split=cfg.hp_split, released=False))
            cells.append(row)
            if cfg.reference is not None and method != cfg.reference:
                for task in TASKS:
                    comparison = self.hp_comparison(method, task)
                    if comparison is not None:
                        cell_tests[(method, entries.index((task, None)))] = self.tests.add(
                            "hpatches", f"{method} vs {cfg.reference}", f"{task} mAP", comparison)
        released_rows, released_values, unscored, other_split = [], [], [], []
        for release in cfg.released:
            split = weights.hpatches_split_for(release, cfg.hp_split)
            if split is None:
                unscored.append(release)
                continue
            same = split == cfg.hp_split
            label = released_label(release, None if same else split)
            if not same:
                other_split.append(label)
            summary = self.results.released_hpatches(release, split)
            row, row_values = [], np.full(len(labels), np.nan)
            for j, (task, level) in enumerate(entries):
                value = 100 * float(summary[task] if level is None else summary["levels"][task][level])
                row.append(f"{value:.2f}")
                if same:  # ranked only against scores on the same sequences
                    row_values[j] = value
                tidy.append(dict(method=label, task=task, level=level or "all", n_seeds=1,
                                 map_mean=value, map_sd=np.nan, split=split, released=True))
            released_rows.append(label)
            released_values.append(row_values)
            cells.append(row)
        if released_values:
            values = np.vstack([values, np.array(released_values)])
        train = f"trained on {cfg.hp_train_set}"
        table = Table(title=f"HPatches mAP (%), split {cfg.hp_split}, higher is better; learned "
                            f"models {train} ({cfg.preset} preset)",
                      row_header="method", rows=rows + released_rows, columns=labels, cells=cells,
                      values=values, lower_is_better=False, groups=groups,
                      tidy=pd.DataFrame(tidy, columns=["method", "task", "level", "n_seeds", "map_mean",
                                                       "map_sd", "split", "released"]))
        self._mark(table, cell_tests, "hpatches")
        note = (f"{seeds_phrase(cfg.seeds).capitalize()}. Per task: the mean over the levels, then "
                "E/H/T (Easy/Hard/Tough). ")
        if cfg.reference is not None:
            verification = ("; verification has no per-sequence scores, so it is tested only over seeds"
                            if len(cfg.seeds) >= MIN_SEEDS_FOR_T else
                            "; verification has no per-sequence scores, so no test")
            note += self._test_sentence("a paired Wilcoxon signed-rank test over sequences (matching and "
                                        f"retrieval){verification}")
            note += " " + reach_note(self.tests.family("hpatches"), cfg.alpha, "HPatches")
        else:
            note += "No reference method: no significance tests."
        table.notes.append(note.strip())
        if cfg.released:
            table.notes.append(self._released_note())
        if other_split:
            table.notes.append(f"Scored on the test sequences of another split (the release was trained on "
                               f"that split's training sequences), so not ranked: {', '.join(other_split)}.")
        if unscored:
            table.notes.append(f"Trained on all of HPatches (or said to be), so not scored: {', '.join(unscored)}.")
        return table

    @staticmethod
    def _check_sequences(a: np.ndarray, b: np.ndarray, method: str) -> None:
        if not np.array_equal(a, b):
            raise DescbenchError(f"HPatches scores of {method!r} cover other sequences than the "
                                 "reference's; evaluate both on the same split")

    def _matching_arrays(self, method: str):
        """Sequences, categories and (n_seq, 3) mean matching AP per level, averaged over seeds."""
        frames = [e["matching"] for e in self._hp_seeds(method)]
        per_seed = [f.pivot_table(index="sequence", columns="level", values="ap", aggfunc="mean")
                    .reindex(columns=list(stats.LEVELS)) for f in frames]
        mean = sum(per_seed) / len(per_seed)
        categories = frames[0].groupby("sequence")["category"].first().reindex(mean.index)
        return mean.index.to_numpy(), categories.to_numpy(), mean.to_numpy()

    def _retrieval_arrays(self, method: str):
        """Sequences and (n_seq, levels, pools) sums and counts of query AP, averaged over seeds."""
        sums, counts = [], []
        for e in self._hp_seeds(method):
            f = e["retrieval"]
            grouped = f.groupby(["sequence", "level", "pool"])["ap"].agg(["sum", "count"])
            sums.append(grouped["sum"].unstack(["level", "pool"]))
            counts.append(grouped["count"].unstack(["level", "pool"]))
        total = sum(sums) / len(sums)
        count = counts[0]
        sequences = total.index.to_numpy()
        levels = [lv for lv in stats.LEVELS if lv in total.columns.get_level_values(0)]
        pools = sorted(set(total.columns.get_level_values(1)))
        cols = pd.MultiIndex.from_product([levels, pools])
        shape = (len(sequences), len(levels), len(pools))
        return (sequences, total.reindex(columns=cols).fillna(0).to_numpy().reshape(shape),
                count.reindex(columns=cols).fillna(0).to_numpy().reshape(shape))

    def _per_sequence(self, method: str, task: str) -> tuple[np.ndarray, np.ndarray]:
        """(sequences, one score per sequence) for the Wilcoxon test."""
        if task == "matching":
            seqs, _cats, per_level = self._matching_arrays(method)
            return seqs, np.nanmean(per_level, axis=1)
        seqs, sums, counts = self._retrieval_arrays(method)
        with np.errstate(invalid="ignore", divide="ignore"):
            return seqs, np.nanmean(sums / counts, axis=(1, 2))

    # -- ablations -----------------------------------------------------------------------------------
    def ablation_table(self) -> Table:
        cfg = self.cfg
        ref = cfg.reference
        columns = [ref, "variant", "Δ", f"{100 * (1 - cfg.alpha):.0f}% CI", "test", "p", "p (Holm)"]
        rows, cells, tidy, row_tests = [], [], [], []
        for variant in cfg.variants:
            for endpoint, result in self._ablation_endpoints(variant).items():
                rows.append(f"{variant}: {endpoint}")
                test = result["test"]
                row_tests.append(None if test is None else self.tests.add(
                    "ablations", f"{variant} vs {ref}", endpoint, test))
                low, high = result["ci"]
                tidy.append(dict(variant=variant, endpoint=endpoint, reference=result["ref"],
                                 value=result["var"], delta=result["delta"], ci_low=low, ci_high=high,
                                 test=None if test is None else test.test))
                cells.append([f"{result['ref']:.2f}", f"{result['var']:.2f}", f"{result['delta']:+.2f}",
                              "–" if not np.isfinite(low) else f"[{low:+.2f}, {high:+.2f}]",
                              "–" if test is None else test.short, "–", "–"])
        self.tests.adjust()
        for i, k in enumerate(row_tests):
            if k is not None:
                p, p_holm = self.tests.rows[k]["p"], self.tests.rows[k]["p_holm"]
                cells[i][5], cells[i][6] = _fmt_p(p), _fmt_p(p_holm)
                tidy[i].update(p=p, p_holm=p_holm)
        if ref is None:
            notes = ["No trained methods are configured, so there is no reference and no ablation."]
        else:
            seeds = (f" Trained variants with >= {MIN_SEEDS_FOR_T} seeds: a paired t-test over seeds "
                     "instead of either." if len(cfg.seeds) >= MIN_SEEDS_FOR_T else "")
            verification = ("" if len(cfg.seeds) >= MIN_SEEDS_FOR_T else
                            " HPatches verification has no per-sequence scores, so no interval or test.")
            notes = [f"Δ = variant − {ref} in percentage points (FPR95: lower is better; mAP: higher is "
                     f"better); {seeds_phrase(cfg.seeds)}. CI: paired cluster bootstrap "
                     f"({cfg.n_bootstrap} resamples; UBC: 3D points; HPatches: sequences within i/v). "
                     "Test: UBC, the same cluster bootstrap (p = (k+1)/(B+1)); HPatches, a Wilcoxon "
                     f"signed-rank test over sequences; the same tests as in the UBC and HPatches "
                     f"tables.{seeds} p (Holm): adjusted within this table.{verification}"]
            reach = reach_note(self.tests.family("ablations"), cfg.alpha, "ablation")
            if reach:
                notes.append(reach)
            if not rows:
                notes.append(f"No ablation variants ('{ref}-...') are configured.")
        if cfg.released:
            notes.append(f"Released weights ({RELEASED_TAG}) take no part in the ablations.")
        row_groups = [(variant, [r.split(": ", 1)[1] for r in rows if r.startswith(f"{variant}: ")])
                      for variant in cfg.variants]
        return Table(title=f"Ablations against {ref or 'no reference'} ({cfg.preset} preset)",
                     row_header="comparison",
                     rows=rows, columns=columns, cells=cells, notes=notes, row_groups=row_groups or None,
                     tidy=pd.DataFrame(tidy, columns=["variant", "endpoint", "reference", "value",
                                                      "delta", "ci_low", "ci_high", "test", "p",
                                                      "p_holm"]))

    def _ablation_endpoints(self, variant: str) -> dict[str, dict[str, Any]]:
        """Per endpoint: reference and variant values, Δ, interval and the comparison's one test."""
        cfg, ref = self.cfg, self.cfg.reference
        out: dict[str, dict[str, Any]] = {}
        mean_column = len(cfg.ubc_columns())
        var_seed, ref_seed = (self._ubc_seed_values(m, mean_column) for m in (variant, ref))
        boot = 100 * self.ubc_differences(variant)[:, mean_column]
        out["UBC FPR95"] = dict(ref=100 * np.mean(ref_seed), var=100 * np.mean(var_seed),
                                delta=100 * (np.mean(var_seed) - np.mean(ref_seed)),
                                ci=stats.percentile_interval(boot, cfg.alpha),
                                test=self.ubc_comparison(variant, mean_column))
        var_eval, ref_eval = self._hp_seeds(variant), self._hp_seeds(ref)
        for task in TASKS:
            t_var = [float(e["summary"][task]) for e in var_eval]
            t_ref = [float(e["summary"][task]) for e in ref_eval]
            ci = ((np.nan, np.nan) if task == "verification" else
                  stats.percentile_interval(100 * self._hp_bootstrap(variant, task), cfg.alpha))
            out[f"HPatches {task}"] = dict(ref=100 * np.mean(t_ref), var=100 * np.mean(t_var),
                                           delta=100 * (np.mean(t_var) - np.mean(t_ref)), ci=ci,
                                           test=self.hp_comparison(variant, task))
        return out

    def _hp_bootstrap(self, variant: str, task: str) -> np.ndarray:
        ref = self.cfg.reference
        if task == "matching":
            seqs, cats, var_levels = self._matching_arrays(variant)
            ref_seqs, _, ref_levels = self._matching_arrays(ref)
            self._check_sequences(seqs, ref_seqs, variant)
            weights = stats.stratified_sequence_weights(cats, self.cfg.n_bootstrap, self.rng)
            return (stats.matching_aggregate(var_levels, cats, weights)
                    - stats.matching_aggregate(ref_levels, cats, weights))
        seqs, var_sum, var_count = self._retrieval_arrays(variant)
        ref_seqs, ref_sum, ref_count = self._retrieval_arrays(ref)
        self._check_sequences(seqs, ref_seqs, variant)
        cats = np.array([str(s).split("_", 1)[0] for s in seqs])
        weights = stats.stratified_sequence_weights(cats, self.cfg.n_bootstrap, self.rng)
        return (stats.retrieval_aggregate(var_sum, var_count, weights)
                - stats.retrieval_aggregate(ref_sum, ref_count, weights))


def validation_title(metrics: dict[str, pd.DataFrame], train_set: str) -> str:
    """What the validation pairs came from (metrics.csv's val_classes): held-out points, or a fixed
    slice of the training points when, as in the authors' code, every point is trained on."""
    kinds = set()
    for frame in metrics.values():
        if "val_classes" in frame.columns:
            kinds.update(frame["val_classes"].dropna().astype(str))
    if kinds == {"training-slice"}:
        return f"Validation on a fixed slice of the training points of {train_set} (not held out)"
    if kinds == {"held-out"}:
        return f"Validation on held-out points of {train_set}"
    return f"Validation on points of {train_set} (held-out or a training slice, by method)"


def write_figures(builder: ReportBuilder, hp_scores: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Gather the plain tables and arrays each figure draws, draw and save them."""
    cfg, results = builder.cfg, builder.results
    seed, train_set = cfg.seeds[0], cfg.hp_train_set
    trained = [m for m in cfg.methods]
    stage_ones = {run for m in trained for run in stage_chain(m)[:-1]}
    # a method that is another's stage 1 is drawn as the first part of that method's curve
    curve_chains = [stage_chain(m) for m in trained if m not in stage_ones]
    metrics = {run: results.metrics(run, train_set, seed) for chain in curve_chains for run in chain}
    diff_chains = ([stage_chain(m) for m in [cfg.reference] + cfg.variants if m not in stage_ones]
                   if cfg.reference is not None else [])
    diagnostics = {run: results.diagnostics(run, train_set, seed) for chain in diff_chains for run in chain}
    where = f"{train_set}, seed {seed}, {cfg.preset} preset"
    figures_made = (
        ("hpatches_summary", figures.hpatches_summary(
            hp_scores[~hp_scores["released"]], builder.rows,
            f"HPatches, split {cfg.hp_split} ({cfg.preset} preset): bars are the mean over the "
            "Easy/Hard/Tough levels")),
        ("training_curves", figures.training_curves(
            curve_chains, metrics, f"Training on {where}", validation_title(metrics, train_set))),
        ("difficulty", figures.difficulty(
            diff_chains, diagnostics, f"Difficulty distributions over training ({where})")),
    )
    written = []
    for name, fig in figures_made:
        written += figures.save(fig, out_dir, name)
    return written


def build_report(cfg_dict: dict[str, Any], results_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write every table, the statistics file and the figures; return the written paths."""
    cfg = ReportConfig.from_config(cfg_dict)
    if not cfg.methods and not cfg.handcrafted and not cfg.released:
        raise DescbenchError("the config has no methods, handcrafted descriptors or released weights to report")
    if cfg.methods and cfg.reference not in cfg.methods:
        raise DescbenchError(f"the reference method {cfg.reference!r} is not among the configured "
                             f"methods {cfg.methods}; add it or change 'reference'")
    results = Results(results_dir, cfg)
    builder = ReportBuilder(cfg, results)
    out_dir = Path(out_dir)
    written: list[Path] = []
    log.info("UBC table (%d bootstrap resamples)", cfg.n_bootstrap)
    ubc = builder.ubc_table()
    log.info("HPatches table")
    hp = builder.hpatches_table()
    log.info("ablation table (%d variants)", len(cfg.variants))
    ablations = builder.ablation_table()
    builder.tests.adjust()
    log.info("UBC revisited mAP table")
    revisited = builder.ubc_revisited_table()
    for table, name in ((ubc, "ubc_fpr95"), (revisited, "ubc_revisited_map"), (hp, "hpatches"),
                        (ablations, "ablations")):
        written += write_table(table, out_dir / "tables", name)
    tests_path = out_dir / layout.TESTS_CSV
    write_csv(tests_path, builder.tests.frame())
    written.append(tests_path)
    log.info("figures")
    written += write_figures(builder, hp.tidy, out_dir / "figures")
    if "hpatches_sequences" in (cfg_dict.get("downstream") or []):
        log.info("HPatches sequences: table, MMA figure, tests")
        pairs = sequences.load_pairs(results_dir, cfg.methods, cfg.seeds, cfg.hp_train_set, cfg.handcrafted,
                                     sequences.eligible_releases(cfg.released), released_label=released_label)
        written += sequences.write_outputs(pairs, out_dir, None, cfg.reference, cfg.alpha, preset=cfg.preset)
    return written
