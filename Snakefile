"""descbench: one-command reproduction of the descriptor comparison.

    snakemake --cores all                                   # paper preset (config/config.yaml)
    snakemake --cores all --configfile config/mini.yaml     # offline mini preset, minutes on a CPU
    snakemake --profile workflow/profiles/slurm             # on a SLURM cluster

Data flows one way: raw archives -> prepared arrays -> trained models -> scores -> report. Every rule runs
one `descbench` command; the result layout is descbench.report.layout (shared with `descbench report`).
Every rule quotes each value it puts into its shell command ({x:q}), and the schema refuses shell
metacharacters in paths and set names, so no config value can become shell syntax; paths may hold spaces
and letters of any script.
"""

import difflib
import json
import re
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from descbench import registry, weights
from descbench.errors import DescbenchError
from descbench.report import layout

min_version("9.0")


# the default preset; `--configfile config/mini.yaml` (or your own file) overrides its keys
configfile: str(Path(workflow.basedir) / "config" / "config.yaml")


report: "workflow/report/workflow.rst"


SCHEMA_PATH = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"


def check_keys(cfg, schema, where="config"):
    """Name a misspelt key and the valid ones before the schema's terser message does."""
    allowed = schema.get("properties", {})
    for key, value in cfg.items():
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise WorkflowError(
                f"unknown key {key!r} in {where}{hint}; valid keys: {', '.join(sorted(allowed))}"
            )
        if isinstance(value, dict) and allowed[key].get("type") == "object":
            check_keys(value, allowed[key], f"{where}.{key}")


def patterned(value, schema, where="config"):
    """(where, value, pattern) of every config string the schema restricts with a pattern."""
    if isinstance(value, str) and "pattern" in schema:
        yield where, value, schema["pattern"]
    elif isinstance(value, dict):
        for key, sub in value.items():
            if key in schema.get("properties", {}):
                yield from patterned(sub, schema["properties"][key], f"{where}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, sub in enumerate(value):
            yield from patterned(sub, schema["items"], f"{where}[{i}]")


def check_safe(cfg, schema):
    """Paths and set names go into file names and rule shells (quoted there): refuse shell
    metacharacters with a message naming the key and the offending characters, before the schema's
    terser "does not match <regex>" (the schema's patterns decide; this only explains)."""
    for where, value, pattern in patterned(cfg, schema):
        if re.search(pattern, value):
            continue
        allowed = re.search(r"\[([^\]]+)\]\+", pattern).group(1)  # the pattern's `[...]+`
        bad = sorted({c for c in value if not re.fullmatch(f"[{allowed}]", c)})
        if bad:
            reason = "it contains " + ", ".join(map(repr, bad))
        elif not value:
            reason = "it is empty"
        elif value in (".", ".."):
            reason = "it may not be '.' or '..'"
        else:
            reason = f"it may not start with {value[0]!r}"
        punct = allowed.replace("\\w", "").replace(" ", "")
        space = "spaces, " if " " in allowed else ""
        raise WorkflowError(
            f"{where} {value!r} is refused: {reason}. Paths and set names go into file names and shell "
            f"commands: use letters, digits, {space}_ and {' '.join(punct)} (no shell metacharacters)"
        )


def check_names(kind, names, valid):
    """Every configured descriptor name must be registered and of the right kind."""
    for name in names:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise WorkflowError(
                f"unknown {kind} {name!r} in the config{hint}; valid choices: {', '.join(valid)} "
                "(`descbench list` shows every registered descriptor; plug-ins add more)"
            )


SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
check_keys(config, SCHEMA)
check_safe(config, SCHEMA)
validate(config, str(SCHEMA_PATH))

try:
    DESCRIPTORS = registry.all_descriptors()
except DescbenchError as exc:  # a broken plug-in: its one-line message, not a traceback
    raise WorkflowError(str(exc)) from None
LEARNED = sorted(n for n, d in DESCRIPTORS.items() if d.learned and d.released is None)  # trainable
HANDCRAFTED_NAMES = sorted(n for n, d in DESCRIPTORS.items() if not d.learned)
check_names("method (learned descriptor)", config["methods"], LEARNED)
check_names("handcrafted descriptor", config["handcrafted"], HANDCRAFTED_NAMES)
RELEASED = config.get("released", [])
check_names("released weights", RELEASED, list(weights.RELEASES))
if not config["methods"] and not RELEASED:
    raise WorkflowError("the config has neither methods to train nor released weights to score; add one")
if config["methods"]:
    check_names("reference method", [config["reference"]], config["methods"])

DATA = config["data"]["root"]
RESULTS = config["results_dir"]
SEEDS = config["seeds"]
UBC_SETS = config["ubc"]["sets"]
TRAIN_SETS = config["ubc"]["train_sets"]
HP_SPLIT = config["hpatches"]["split"]
HP_TRAIN_SET = config["hpatches"]["train_set"]
METHODS = config["methods"]
HANDCRAFTED = config["handcrafted"]

check_names("UBC train set", TRAIN_SETS, UBC_SETS)
check_names("HPatches train set (hpatches.train_set)", [HP_TRAIN_SET], TRAIN_SETS)
for reserved in (layout.HANDCRAFTED, layout.RELEASED):
    if reserved in UBC_SETS:
        raise WorkflowError(f"a UBC set may not be called {reserved!r}: rename it")
WEIGHTS = config["data"].get("weights") or str(weights.weights_dir_for(DATA))
WEIGHTS_FROM = config["data"].get("weights_from")
if config["data"].get("from_dir") and config["data"]["source"] != "download":
    raise WorkflowError("data.from_dir is used by data source download only (the mini source generates its data); "
                        "remove it or set data.source: download")
if RELEASED and config["data"]["source"] == "mini" and not WEIGHTS_FROM:
    raise WorkflowError("`released` with data source mini needs data.weights_from (a folder holding the weight "
                        "files): the offline preset downloads nothing")


def released_ubc_scores():
    """Score files of every released model on every configured UBC set it was not trained on."""
    return [str(layout.ubc_released_dir(RESULTS, name, test) / f)
            for name in RELEASED for test in weights.ubc_test_sets(name, UBC_SETS) for f in layout.UBC_SCORE_FILES]


def released_hpatches_scores():
    """HPatches score files of every released model; a release trained on one split's train sequences is
    scored on that split; one trained on all of HPatches (or said to be) is not scored."""
    out = []
    for name in RELEASED:
        split = weights.hpatches_split_for(name, HP_SPLIT)
        if split is not None:
            out += [str(layout.hpatches_released_dir(RESULTS, name, split) / f) for f in layout.HPATCHES_SCORE_FILES]
    return out


def init_from(method):
    """The method whose model `method` continues from (annealing), or None."""
    parent = DESCRIPTORS[method].init_from
    if parent is not None and parent not in LEARNED:
        raise WorkflowError(f"descriptor {method!r} continues from {parent!r}, which is not registered")
    return parent


def ubc_test_sets(train_set):
    return [s for s in UBC_SETS if s != train_set]


wildcard_constraints:
    train_set=r"[^/]+",
    test_set=r"[^/]+",
    ubc_set=r"[^/]+",
    method=r"[^/]+",
    split=r"[^/]+",
    seed=r"\d+",
    release=r"[^/]+",


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/downstream.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        [str(p) for p in layout.report_files(RESULTS, tuple(DOWNSTREAM))],
        [f"{WEIGHTS}/{name}" for name in RELEASED],
        released_ubc_scores(),
        released_hpatches_scores(),
