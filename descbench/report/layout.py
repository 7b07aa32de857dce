"""Where the workflow puts every result under the results directory.

One place for the layout, shared by the Snakefile (which builds its rules' paths from these templates)
and by ``descbench report`` (which finds the score files the workflow wrote), so the two never disagree.
Templates are relative to the results directory and use the Snakemake wildcard names.
"""

from __future__ import annotations

from pathlib import Path

MODEL_DIR = "models/{train_set}/{method}/seed{seed}"
UBC_LEARNED_DIR = "scores/ubc/{train_set}/{method}/seed{seed}/{test_set}"
UBC_HANDCRAFTED_DIR = "scores/ubc/handcrafted/{method}/{test_set}"
HPATCHES_LEARNED_DIR = "scores/hpatches/{split}/{train_set}/{method}/seed{seed}"
HPATCHES_HANDCRAFTED_DIR = "scores/hpatches/{split}/handcrafted/{method}"
UBC_RELEASED_DIR = "scores/ubc/released/{release}/{test_set}"
HPATCHES_RELEASED_DIR = "scores/hpatches/{split}/released/{release}"

# train-set names reserved for handcrafted and released-weights scores in the paths above
HANDCRAFTED = "handcrafted"
RELEASED = "released"

MODEL_FILES = ("model.pt", "metrics.csv", "diagnostics.npz")
UBC_SCORE_FILES = ("summary.json", "pairs.csv")
HPATCHES_SCORE_FILES = ("summary.json", "verification.csv", "matching.csv", "retrieval.csv")

TABLE_NAMES = ("ubc_fpr95", "ubc_revisited_map", "hpatches", "ablations")
TABLE_FORMATS = ("tex", "md", "csv")
FIGURE_NAMES = ("hpatches_summary", "training_curves", "difficulty")
FIGURE_FORMATS = ("pdf", "png")
TESTS_CSV = "stats/tests.csv"
# the report rule's inputs: one manifest per stage, each listing that stage's files (descbench manifest)
MANIFEST = "manifests/{stage}.tsv"
MANIFEST_STAGES = ("training", "ubc_scores", "hpatches_scores", "released_scores", "sequences_scores")
# what each downstream evaluation (config `downstream`) adds to the report: tables, figures, test files
DOWNSTREAM_OUTPUTS = {"hpatches_sequences": (("hpatches_sequences",), ("hpatches_sequences_mma",),
                                             ("stats/hpatches_sequences_tests.csv",))}


def model_dir(results: str | Path, train_set: str, method: str, seed: int) -> Path:
    return Path(results) / MODEL_DIR.format(train_set=train_set, method=method, seed=seed)


def ubc_dir(results: str | Path, method: str, test_set: str, train_set: str | None = None,
            seed: int | None = None) -> Path:
    """Scores of ``method`` on ``test_set``; handcrafted methods (no train set) have one per test set."""
    if train_set is None:
        return Path(results) / UBC_HANDCRAFTED_DIR.format(method=method, test_set=test_set)
    return Path(results) / UBC_LEARNED_DIR.format(train_set=train_set, method=method, seed=seed,
                                                  test_set=test_set)


def hpatches_dir(results: str | Path, method: str, split: str, train_set: str | None = None,
                 seed: int | None = None) -> Path:
    if train_set is None:
        return Path(results) / HPATCHES_HANDCRAFTED_DIR.format(split=split, method=method)
    return Path(results) / HPATCHES_LEARNED_DIR.format(split=split, train_set=train_set,
                                                       method=method, seed=seed)


def ubc_released_dir(results: str | Path, release: str, test_set: str) -> Path:
    """Scores of the released weights ``release`` (descbench.weights) on UBC ``test_set``."""
    return Path(results) / UBC_RELEASED_DIR.format(release=release, test_set=test_set)


def hpatches_released_dir(results: str | Path, release: str, split: str) -> Path:
    return Path(results) / HPATCHES_RELEASED_DIR.format(release=release, split=split)


def manifest_file(results: str | Path, stage: str) -> Path:
    return Path(results) / MANIFEST.format(stage=stage)


def table_files(results: str | Path, downstream: tuple[str, ...] = ()) -> list[Path]:
    names = TABLE_NAMES + tuple(n for d in downstream for n in DOWNSTREAM_OUTPUTS[d][0])
    return [Path(results) / "tables" / f"{name}.{fmt}" for name in names for fmt in TABLE_FORMATS]


def figure_files(results: str | Path, downstream: tuple[str, ...] = ()) -> list[Path]:
    names = FIGURE_NAMES + tuple(n for d in downstream for n in DOWNSTREAM_OUTPUTS[d][1])
    return [Path(results) / "figures" / f"{name}.{fmt}" for name in names for fmt in FIGURE_FORMATS]


def stats_files(results: str | Path, downstream: tuple[str, ...] = ()) -> list[Path]:
    return [Path(results) / name for name in (TESTS_CSV,) + tuple(n for d in downstream
                                                                  for n in DOWNSTREAM_OUTPUTS[d][2])]


def report_files(results: str | Path, downstream: tuple[str, ...] = ()) -> list[Path]:
    """Every file ``descbench report`` writes (the outputs of the workflow's last rule), with those of the
    configured ``downstream`` evaluations."""
    return (table_files(results, downstream) + figure_files(results, downstream)
            + stats_files(results, downstream))
