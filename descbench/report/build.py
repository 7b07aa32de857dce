"""Assemble the report: the three tables, the statistics file and the figures from one results tree."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from descbench import weights
from descbench.errors import DescbenchError
from descbench.fileio import write_csv
from descbench.report import figures, layout, stats
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


@dataclass
class TestLog:
    """Every test run for the report, Holm-adjusted within its family (one family per table)."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, family: str, comparison: str, endpoint: str, test: str, inputs: str, n: int,
            statistic: float, p: float, caveat: str) -> int:
        self.rows.append(dict(family=family, comparison=comparison, endpoint=endpoint, test=test,
                              inputs=inputs, n=n, statistic=statistic, p=p, p_holm=np.nan,
                              caveat=caveat))
        return len(self.rows) - 1

    def adjust(self) -> None:
        frame = pd.DataFrame(self.rows)
        if frame.empty:
            return
        for _family, index in frame.groupby("family").groups.items():
            adjusted = stats.holm(frame.loc[index, "p"].to_numpy(dtype=float))
            for i, value in zip(index, adjusted):
                self.rows[i]["p_holm"] = value

    def frame(self) -> pd.DataFrame:
        columns = ["family", "comparison", "endpoint", "test", "inputs", "n", "statistic", "p",
                   "p_holm", "caveat"]
        return pd.DataFrame(self.rows, columns=columns)


def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "–"
    return f"{p:.2g}" if p >= 1e-3 else "<0.001"


def _pairs_aligned(a: pd.DataFrame, b: pd.DataFrame, what: str) -> None:
    if len(a) != len(b) or not (np.array_equal(a["idx1"].to_numpy(), b["idx1"].to_numpy())
                                and np.array_equal(a["idx2"].to_numpy(), b["idx2"].to_numpy())):
        raise DescbenchError(f"{what}: the two pairs.csv files list different pairs; re-run the "
                             "evaluation of both on the same prepared test set")


class ReportBuilder:
    def __init__(self, cfg: ReportConfig, results: Results):
        self.cfg = cfg
        self.results = results
        self.tests = TestLog()
        self.rng = np.random.default_rng(cfg.bootstrap_seed)

    @property
    def rows(self) -> list[str]:
        """Our own rows (trained methods, then handcrafted); released weights follow in each table."""
        return list(self.cfg.methods) + [m for m in self.cfg.handcrafted if m not in self.cfg.methods]

    def _released_note(self) -> str:
        ref = self.cfg.reference
        tested = f"not tested against {ref} (never marked {DAGGER})" if ref else "not tested"
        return (f"Rows marked ({RELEASED_TAG}): the authors' released weights (descbench.weights), one "
                f"evaluation each with the same protocol, no seeds; {tested}.")

    # -- UBC -----------------------------------------------------------------------------------------
    def _fpr_values(self, method: str, train: str, test: str) -> list[float]:
        return [self.results.ubc_fpr95(method, train, test, seed) for seed in self.results.seeds_of(method)]

    def ubc_table(self) -> Table:
        cfg = self.cfg
        columns = cfg.ubc_columns()
        labels = [f"{train}→{test}" for train, test in columns] + ["mean"]
        rows = self.rows
        cells, values, tidy = [], np.full((len(rows), len(labels)), np.nan), []
        dagger_tests: dict[tuple[str, int], list[int]] = {}
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
                if cfg.reference is not None and method != cfg.reference:
                    dagger_tests[(method, j)] = self._mcnemar(method, train, test)
            seed_means = list(np.mean(np.array(per_seed_cols), axis=0))
            text, mean, sd, n = mean_sd(seed_means)
            row.append(text)
            values[i, -1] = mean
            tidy.append(dict(method=method, train_set="mean", test_set="mean", n_seeds=n,
                             fpr95_mean=mean, fpr95_sd=sd, released=False))
            cells.append(row)
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
                      values=values, lower_is_better=True,
                      tidy=pd.DataFrame(tidy, columns=["method", "train_set", "test_set", "n_seeds",
                                                       "fpr95_mean", "fpr95_sd", "released"]))
        self._dagger_after_holm(table, dagger_tests, "ubc_fpr95")
        note = f"Mean ± sd over seeds {cfg.seeds}; handcrafted descriptors have no seed. "
        if cfg.reference is not None:
            note += (f"{DAGGER}: differs from {cfg.reference} by an exact McNemar test on the "
                     "non-matching pairs (each at its own 95 %-recall threshold), Holm-adjusted "
                     f"p < {cfg.alpha} for every seed.")
        else:
            note += "No reference method: no significance tests."
        table.notes.append(note)
        if cfg.released:
            table.notes.append(
                self._released_note() + " A release trained on one UBC set fills that set's train→test "
                "columns; one trained on no UBC set or on several fills every column of a test set it was "
                "not trained on; a cell is empty where the release was trained on the test set or the pair "
                "is not configured, and its mean is given only when every column is filled.")
        if left_out:
            table.notes.append(f"Released weights with no configured train→test pair: {', '.join(left_out)}.")
        return table

    def _mcnemar(self, method: str, train: str, test: str) -> list[int]:
        """One exact McNemar test per seed pairing of ``method`` with the reference; test-log indices."""
        ref = self.cfg.reference
        indices = []
        for seed in self.cfg.seeds:
            own_seed = seed if self.results.is_learned(method) else None
            a = self.results.ubc_pairs(method, train, test, own_seed)
            b = self.results.ubc_pairs(ref, train, test, seed)
            _pairs_aligned(a, b, f"{method} vs {ref} on {test}")
            n_b, n_c, p = stats.mcnemar_negatives(a["distance"].to_numpy(), b["distance"].to_numpy(),
                                                  a["is_match"].to_numpy())
            seed_text = f"seed {seed}" if own_seed is not None else f"{ref} seed {seed}"
            indices.append(self.tests.add(
                "ubc_fpr95", f"{method} vs {ref}", f"FPR95 {train}→{test} ({seed_text})",
                "exact McNemar (two-sided)",
                f"non-matching pairs of {test}; b={n_b} accepted by {method} only, c={n_c} by {ref} only",
                n_b + n_c, float(n_b), p,
                "negative pairs share 3D points, so they are not independent: p-values are optimistic; "
                "each descriptor is thresholded at its own 95 %-recall distance"))
        return indices

    def _dagger_after_holm(self, table: Table, cell_tests: dict[tuple[str, int], list[int]],
                           family: str) -> None:
        """Holm-adjust ``family`` now and mark cells whose every test stays significant."""
        if not cell_tests:
            return
        frame = pd.DataFrame(self.tests.rows)
        members = frame.index[frame["family"] == family] if not frame.empty else []
        adjusted = dict(zip(members, stats.holm(frame.loc[members, "p"].to_numpy(dtype=float))))
        for (method, j), indices in cell_tests.items():
            ps = [adjusted[k] for k in indices]
            if ps and all(np.isfinite(p) and p < self.cfg.alpha for p in ps):
                i = table.rows.index(method)
                table.cells[i][j] += DAGGER

    # -- HPatches ------------------------------------------------------------------------------------
    def _hp_seeds(self, method: str) -> list[dict[str, Any]]:
        return [self.results.hpatches(method, seed) for seed in self.results.seeds_of(method)]

    def hpatches_table(self) -> Table:
        cfg = self.cfg
        labels = [t.capitalize() for t in TASKS] + [
            f"{t[:5].capitalize()}. {LEVEL_LABELS[lv]}" for t in TASKS for lv in stats.LEVELS]
        rows = self.rows
        cells, values, tidy = [], np.full((len(rows), len(labels)), np.nan), []
        cell_tests: dict[tuple[str, int], list[int]] = {}
        ref_seq = ({task: self._per_sequence(cfg.reference, task) for task in ("matching", "retrieval")}
                   if cfg.reference is not None else {})
        entries = [(task, None) for task in TASKS] + [(t, lv) for t in TASKS for lv in stats.LEVELS]
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
                for task in ("matching", "retrieval"):
                    seq, own = ref_seq[task][0], self._per_sequence(method, task)
                    self._check_sequences(own[0], seq, method)
                    stat, p = stats.wilcoxon_paired(own[1], ref_seq[task][1])
                    k = self.tests.add(
                        "hpatches", f"{method} vs {cfg.reference}", f"{task} mAP per sequence",
                        "Wilcoxon signed-rank (two-sided)",
                        f"per-sequence {task} mAP (mean over levels, seeds averaged), split "
                        f"{cfg.hp_split}", len(seq), stat, p,
                        "sequences differ in size and difficulty; the test treats them as "
                        "exchangeable units")
                    cell_tests[(method, TASKS.index(task))] = [k]
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
                      values=values, lower_is_better=False,
                      tidy=pd.DataFrame(tidy, columns=["method", "task", "level", "n_seeds", "map_mean",
                                                       "map_sd", "split", "released"]))
        self._dagger_after_holm(table, cell_tests, "hpatches")
        note = f"Mean ± sd over seeds {cfg.seeds}. E/H/T: Easy/Hard/Tough. "
        if cfg.reference is not None:
            note += (f"{DAGGER}: differs from {cfg.reference} by a Wilcoxon signed-rank test over "
                     f"sequences, Holm-adjusted p < {cfg.alpha}.")
        else:
            note += "No reference method: no significance tests."
        table.notes.append(note)
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
        multi_seed = len(cfg.seeds) >= 2
        if multi_seed:
            columns += ["p seeds (Holm)"]
        rows, cells, tidy, row_tests, seed_tests = [], [], [], [], []
        for variant in cfg.variants:
            for endpoint, result in self._ablation_endpoints(variant).items():
                rows.append(f"{variant}: {endpoint}")
                row_tests.append(result.get("test_index"))
                seed_tests.append(result.get("seed_index"))
                tidy.append(dict(variant=variant, endpoint=endpoint, reference=result["ref"],
                                 value=result["var"], delta=result["delta"], ci_low=result["ci"][0],
                                 ci_high=result["ci"][1], test=result["test"]))
                cells.append([f"{result['ref']:.2f}", f"{result['var']:.2f}",
                              f"{result['delta']:+.2f}",
                              "–" if not np.isfinite(result["ci"][0])
                              else f"[{result['ci'][0]:+.2f}, {result['ci'][1]:+.2f}]",
                              result["test"], "–", "–"] + (["–"] if multi_seed else []))
        self.tests.adjust()
        frame = self.tests.frame()
        for i, (k, ks) in enumerate(zip(row_tests, seed_tests)):
            if k is not None:
                cells[i][5] = _fmt_p(frame.loc[k, "p"])
                cells[i][6] = _fmt_p(frame.loc[k, "p_holm"])
                tidy[i].update(p=frame.loc[k, "p"], p_holm=frame.loc[k, "p_holm"])
            if multi_seed and ks is not None:
                cells[i][7] = _fmt_p(frame.loc[ks, "p_holm"])
                tidy[i].update(p_seeds=frame.loc[ks, "p"], p_seeds_holm=frame.loc[ks, "p_holm"])
        notes = [f"Δ = variant − {ref} in percentage points (FPR95: lower is better; mAP: higher is "
                 "better). CI: paired cluster bootstrap "
                 f"({cfg.n_bootstrap} resamples; UBC 3D points, HPatches sequences within i/v). "
                 "p (Holm): adjusted within this table. HPatches verification has no per-sequence "
                 "scores, so no interval or test."]
        if multi_seed:
            notes.append("p seeds: paired t-test over seeds on the same endpoint, Holm-adjusted "
                         "within that family.")
        if ref is None:
            notes = ["No trained methods are configured, so there is no reference and no ablation."]
        elif not rows:
            notes.append(f"No ablation variants ('{ref}-...') are configured.")
        if cfg.released:
            notes.append(f"Released weights ({RELEASED_TAG}) take no part in the ablations.")
        return Table(title=f"Ablations against {ref or 'no reference'} ({cfg.preset} preset)",
                     row_header="comparison",
                     rows=rows, columns=columns, cells=cells, notes=notes,
                     tidy=pd.DataFrame(tidy, columns=["variant", "endpoint", "reference", "value",
                                                      "delta", "ci_low", "ci_high", "test", "p",
                                                      "p_holm", "p_seeds", "p_seeds_holm"]))

    def _ablation_endpoints(self, variant: str) -> dict[str, dict[str, Any]]:
        cfg, ref = self.cfg, self.cfg.reference
        out: dict[str, dict[str, Any]] = {}
        # UBC: mean FPR95 over the train->test columns; cluster bootstrap per test scene.
        columns = cfg.ubc_columns()
        ref_seed = [np.mean([self.results.ubc_fpr95(ref, tr, te, s) for tr, te in columns])
                    for s in cfg.seeds]
        var_seed = [np.mean([self.results.ubc_fpr95(variant, tr, te, s) for tr, te in columns])
                    for s in cfg.seeds]
        groups = []
        for test in cfg.ubc_sets:
            trains = [tr for tr, te in columns if te == test]
            if not trains:
                continue
            first = self.results.ubc_pairs(ref, trains[0], test, cfg.seeds[0])
            group = stats.UBCGroup(first["point1"].to_numpy(), first["point2"].to_numpy(),
                                   first["is_match"].to_numpy())
            for tr in trains:
                for s in cfg.seeds:
                    a = self.results.ubc_pairs(variant, tr, test, s)
                    b = self.results.ubc_pairs(ref, tr, test, s)
                    _pairs_aligned(a, first, f"{variant} on {test}")
                    _pairs_aligned(b, first, f"{ref} on {test}")
                    group.comparisons.append((a["distance"].to_numpy(), b["distance"].to_numpy()))
            groups.append(group)
        boot = 100 * stats.ubc_bootstrap(groups, cfg.n_bootstrap, self.rng)
        ubc = dict(ref=100 * np.mean(ref_seed), var=100 * np.mean(var_seed),
                   delta=100 * (np.mean(var_seed) - np.mean(ref_seed)),
                   ci=stats.percentile_interval(boot, cfg.alpha), test="cluster bootstrap")
        ubc["test_index"] = self.tests.add(
            "ablations", f"{variant} vs {ref}", "UBC FPR95 (mean over train→test)",
            "paired cluster bootstrap (percentile p-value)",
            f"pairs.csv of {len(columns)} train→test tests x {len(cfg.seeds)} seeds; 3D points "
            f"resampled per test scene, {cfg.n_bootstrap} resamples", len(columns) * len(cfg.seeds),
            ubc["delta"], stats.bootstrap_pvalue(boot),
            "non-matching pairs link two points: weighted by the product of their draw counts; "
            "FPR95 recomputed in the HardNet convention")
        self._seed_test(ubc, variant, "UBC FPR95 (mean over train→test)", var_seed, ref_seed)
        out["UBC FPR95"] = ubc
        # HPatches verification: aggregate only.
        var_eval, ref_eval = self._hp_seeds(variant), self._hp_seeds(ref)
        v_var = [float(e["summary"]["verification"]) for e in var_eval]
        v_ref = [float(e["summary"]["verification"]) for e in ref_eval]
        out["HPatches verification"] = dict(
            ref=100 * np.mean(v_ref), var=100 * np.mean(v_var),
            delta=100 * (np.mean(v_var) - np.mean(v_ref)), ci=(np.nan, np.nan), test="–")
        self._seed_test(out["HPatches verification"], variant, "HPatches verification mAP",
                        v_var, v_ref)
        # HPatches matching and retrieval: stratified sequence bootstrap + Wilcoxon.
        for task in ("matching", "retrieval"):
            t_var = [float(e["summary"][task]) for e in var_eval]
            t_ref = [float(e["summary"][task]) for e in ref_eval]
            result = dict(ref=100 * np.mean(t_ref), var=100 * np.mean(t_var),
                          delta=100 * (np.mean(t_var) - np.mean(t_ref)), test="Wilcoxon")
            boot = 100 * self._hp_bootstrap(variant, task)
            result["ci"] = stats.percentile_interval(boot, cfg.alpha)
            seqs, own = self._per_sequence(variant, task)
            ref_seqs, ref_scores = self._per_sequence(ref, task)
            self._check_sequences(seqs, ref_seqs, variant)
            stat, p = stats.wilcoxon_paired(own, ref_scores)
            result["test_index"] = self.tests.add(
                "ablations", f"{variant} vs {ref}", f"HPatches {task} mAP",
                "Wilcoxon signed-rank (two-sided)",
                f"per-sequence {task} mAP (mean over levels, seeds averaged); interval from "
                f"{cfg.n_bootstrap} stratified sequence resamples", len(seqs), stat, p,
                "sequences treated as exchangeable units")
            self._seed_test(result, variant, f"HPatches {task} mAP", t_var, t_ref)
            out[f"HPatches {task}"] = result
        return out

    def _seed_test(self, result: dict[str, Any], variant: str, endpoint: str, var_seed, ref_seed):
        if len(self.cfg.seeds) < 2:
            return
        stat, p = stats.paired_t(var_seed, ref_seed)
        result["seed_index"] = self.tests.add(
            "ablations-seeds", f"{variant} vs {self.cfg.reference}", endpoint, "paired t-test over seeds",
            f"one value per seed {self.cfg.seeds}", len(var_seed), stat, p,
            "few seeds: low power; assumes normally distributed seed differences")

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
    log.info("UBC table")
    ubc = builder.ubc_table()
    log.info("HPatches table")
    hp = builder.hpatches_table()
    log.info("ablation table (%d variants, %d bootstrap resamples)", len(cfg.variants), cfg.n_bootstrap)
    ablations = builder.ablation_table()
    builder.tests.adjust()
    for table, name in ((ubc, "ubc_fpr95"), (hp, "hpatches"), (ablations, "ablations")):
        written += write_table(table, out_dir / "tables", name)
    tests_path = out_dir / layout.TESTS_CSV
    write_csv(tests_path, builder.tests.frame())
    written.append(tests_path)
    log.info("figures")
    written += figures.write_all(builder, out_dir / "figures")
    return written
