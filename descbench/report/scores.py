"""Reading the workflow's score and training files for the report (layout: descbench.report.layout).

Missing files are errors that name the file and the rule that makes it: the report never silently
drops a configured method or seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from descbench.errors import DescbenchError
from descbench.report import layout


def _need(path: Path, made_by: str) -> Path:
    if not path.is_file():
        raise DescbenchError(f"{path} is missing; it is made by the workflow rule {made_by!r} "
                             "(run snakemake, or check the results directory)")
    return path


def read_json(path: Path, made_by: str) -> dict[str, Any]:
    return json.loads(_need(path, made_by).read_text())


def read_csv(path: Path, made_by: str, columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.read_csv(_need(path, made_by))
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DescbenchError(f"{path} lacks the columns {missing}; expected {list(columns)}")
    return frame


@dataclass(frozen=True)
class ReportConfig:
    """The parts of the workflow config the report uses."""

    preset: str
    methods: list[str]
    handcrafted: list[str]
    reference: str | None
    seeds: list[int]
    ubc_sets: list[str]
    train_sets: list[str]
    hp_split: str
    hp_train_set: str
    n_bootstrap: int
    bootstrap_seed: int
    alpha: float
    released: list[str] = field(default_factory=list)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "ReportConfig":
        try:
            return cls(
                preset=str(cfg.get("preset", "")),
                methods=list(cfg["methods"]), handcrafted=list(cfg.get("handcrafted", [])),
                # no trained method, no reference (released weights and handcrafted only)
                reference=cfg["reference"] if cfg["methods"] else None, seeds=[int(s) for s in cfg["seeds"]],
                ubc_sets=list(cfg["ubc"]["sets"]), train_sets=list(cfg["ubc"]["train_sets"]),
                hp_split=cfg["hpatches"]["split"], hp_train_set=cfg["hpatches"]["train_set"],
                n_bootstrap=int(cfg["report"]["n_bootstrap"]),
                bootstrap_seed=int(cfg["report"]["seed"]), alpha=float(cfg["report"]["alpha"]),
                released=list(cfg.get("released") or []),
            )
        except KeyError as exc:
            raise DescbenchError(f"the report config lacks the key {exc}; pass the workflow config "
                                 "(config/config.yaml or config/mini.yaml)") from exc

    @property
    def variants(self) -> list[str]:
        """The ablations: configured methods named '<reference>-...'."""
        if self.reference is None:
            return []
        return [m for m in self.methods if m.startswith(f"{self.reference}-")]

    def ubc_columns(self) -> list[tuple[str, str]]:
        """(train set, test set) for every model test, in config order."""
        return [(train, test) for train in self.train_sets for test in self.ubc_sets if test != train]


class Results:
    """Lazy access to every score file of one results directory."""

    def __init__(self, root: str | Path, cfg: ReportConfig):
        self.root = Path(root)
        self.cfg = cfg
        self._pairs: dict[tuple, pd.DataFrame] = {}
        self._hp: dict[tuple, dict[str, Any]] = {}

    def is_learned(self, method: str) -> bool:
        return method not in self.cfg.handcrafted

    # -- UBC ---------------------------------------------------------------------------------------
    def _ubc_dir(self, method: str, train_set: str, test_set: str, seed: int | None) -> Path:
        if self.is_learned(method):
            return layout.ubc_dir(self.root, method, test_set, train_set, seed)
        return layout.ubc_dir(self.root, method, test_set)

    def seeds_of(self, method: str) -> list[int | None]:
        return list(self.cfg.seeds) if self.is_learned(method) else [None]

    def ubc_fpr95(self, method: str, train_set: str, test_set: str, seed: int | None) -> float:
        rule = "evaluate_ubc_model" if self.is_learned(method) else "evaluate_ubc_handcrafted"
        summary = read_json(self._ubc_dir(method, train_set, test_set, seed) / "summary.json", rule)
        return float(summary["fpr95"])

    def ubc_revisited_map(self, method: str, train_set: str, test_set: str, seed: int | None) -> float:
        """The revisited mAP of summary.json; NaN where it was not computed (no interest.txt)."""
        rule = "evaluate_ubc_model" if self.is_learned(method) else "evaluate_ubc_handcrafted"
        value = read_json(self._ubc_dir(method, train_set, test_set, seed) / "summary.json", rule).get("revisited_map")
        return float("nan") if value is None else float(value)

    def ubc_pairs(self, method: str, train_set: str, test_set: str, seed: int | None) -> pd.DataFrame:
        key = (method, train_set if self.is_learned(method) else None, test_set, seed)
        if key not in self._pairs:
            rule = "evaluate_ubc_model" if self.is_learned(method) else "evaluate_ubc_handcrafted"
            self._pairs[key] = read_csv(
                self._ubc_dir(method, train_set, test_set, seed) / "pairs.csv", rule,
                ("idx1", "idx2", "point1", "point2", "is_match", "distance"))
        return self._pairs[key]

    # -- HPatches ----------------------------------------------------------------------------------
    def _hp_dir(self, method: str, seed: int | None) -> Path:
        if self.is_learned(method):
            return layout.hpatches_dir(self.root, method, self.cfg.hp_split, self.cfg.hp_train_set, seed)
        return layout.hpatches_dir(self.root, method, self.cfg.hp_split)

    def hpatches(self, method: str, seed: int | None) -> dict[str, Any]:
        """summary.json plus the matching and retrieval tables of one evaluation."""
        key = (method, seed)
        if key not in self._hp:
            folder = self._hp_dir(method, seed)
            rule = "evaluate_hpatches_model" if self.is_learned(method) else "evaluate_hpatches_handcrafted"
            self._hp[key] = {
                "summary": read_json(folder / "summary.json", rule),
                "matching": read_csv(folder / "matching.csv", rule,
                                     ("sequence", "category", "level", "image", "ap")),
                "retrieval": read_csv(folder / "retrieval.csv", rule,
                                      ("query", "sequence", "level", "pool", "ap")),
            }
        return self._hp[key]

    # -- released weights (descbench.weights): one evaluation each, no seed --------------------------
    def released_ubc_fpr95(self, release: str, test_set: str) -> float:
        path = layout.ubc_released_dir(self.root, release, test_set) / "summary.json"
        return float(read_json(path, "evaluate_ubc_released")["fpr95"])

    def released_ubc_revisited_map(self, release: str, test_set: str) -> float:
        path = layout.ubc_released_dir(self.root, release, test_set) / "summary.json"
        value = read_json(path, "evaluate_ubc_released").get("revisited_map")
        return float("nan") if value is None else float(value)

    def released_hpatches(self, release: str, split: str) -> dict[str, Any]:
        """summary.json of the HPatches evaluation of ``release`` on ``split``."""
        path = layout.hpatches_released_dir(self.root, release, split) / "summary.json"
        return read_json(path, "evaluate_hpatches_released")

    # -- training ----------------------------------------------------------------------------------
    def metrics(self, method: str, train_set: str, seed: int) -> pd.DataFrame:
        path = layout.model_dir(self.root, train_set, method, seed) / "metrics.csv"
        return read_csv(path, "train", ("step", "loss"))

    def diagnostics(self, method: str, train_set: str, seed: int) -> dict[str, np.ndarray]:
        path = _need(layout.model_dir(self.root, train_set, method, seed) / "diagnostics.npz", "train")
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
