# Report: tables, statistics and figures from every score file, in one `descbench report` run.
# Tables and figures are wrapped in report() so `snakemake --report results/report.html` carries them.


def trained_methods(methods):
    """The configured methods plus every method they continue from (those are trained too)."""
    needed = []
    for method in methods:
        chain = []
        while method is not None and method not in needed and method not in chain:
            chain.append(method)
            method = init_from(method)
        needed += chain
    return needed


def stage_files():
    """{stage: the files of that stage the report reads}; stages without files are left out."""
    training, ubc, hpatches = [], [], []
    for train_set in TRAIN_SETS:
        for seed in SEEDS:
            for method in trained_methods(METHODS):
                model = layout.model_dir(RESULTS, train_set, method, seed)
                training += [str(model / "metrics.csv"), str(model / "diagnostics.npz")]
            for method in METHODS:
                for test_set in ubc_test_sets(train_set):
                    scores = layout.ubc_dir(RESULTS, method, test_set, train_set, seed)
                    ubc += [str(scores / name) for name in layout.UBC_SCORE_FILES]
    for seed in SEEDS:
        for method in METHODS:
            scores = layout.hpatches_dir(RESULTS, method, HP_SPLIT, HP_TRAIN_SET, seed)
            hpatches += [str(scores / name) for name in layout.HPATCHES_SCORE_FILES]
    for method in HANDCRAFTED:
        for test_set in UBC_SETS:
            scores = layout.ubc_dir(RESULTS, method, test_set)
            ubc += [str(scores / name) for name in layout.UBC_SCORE_FILES]
        scores = layout.hpatches_dir(RESULTS, method, HP_SPLIT)
        hpatches += [str(scores / name) for name in layout.HPATCHES_SCORE_FILES]
    # released weights: rows marked "released" in the UBC and HPatches tables (no significance tests)
    released = released_ubc_scores() + released_hpatches_scores()
    stages = dict(zip(layout.MANIFEST_STAGES, (training, ubc, hpatches, released, downstream_scores())))
    return {stage: files for stage, files in stages.items() if files}


STAGE_FILES = stage_files()


rule report_manifest:
    """One small manifest per stage stands for that stage's many files, so the report's inputs (and
    Snakemake's reason line for it) stay a handful of paths."""
    input:
        lambda wildcards: STAGE_FILES[wildcards.stage],
    output:
        f"{RESULTS}/" + layout.MANIFEST,
    wildcard_constraints:
        stage="|".join(STAGE_FILES) or "none",
    log:
        f"{RESULTS}/logs/manifest_{{stage}}.log",
    threads: 1
    shell:
        "descbench --log {log:q} manifest --out {output:q} {input:q}"


CAPTIONS = {
    "ubc_fpr95": "../report/ubc_fpr95.rst",
    "ubc_revisited_map": "../report/ubc_revisited_map.rst",
    "hpatches_sequences": "../report/hpatches_sequences.rst",
    "hpatches_sequences_mma": "../report/hpatches_sequences_mma.rst",
    "hpatches": "../report/hpatches.rst",
    "ablations": "../report/ablations.rst",
    "hpatches_summary": "../report/hpatches_summary.rst",
    "training_curves": "../report/training_curves.rst",
    "difficulty": "../report/difficulty.rst",
}


def reported(path, category):
    name = Path(path).stem
    caption = CAPTIONS.get(name, "../report/statistics.rst")
    return report(path, caption=caption, category=category, subcategory=name)


rule report:
    input:
        [str(layout.manifest_file(RESULTS, stage)) for stage in STAGE_FILES],
    output:
        [reported(str(p), "Tables") for p in layout.table_files(RESULTS, tuple(DOWNSTREAM))],
        [reported(str(p), "Figures") for p in layout.figure_files(RESULTS, tuple(DOWNSTREAM))],
        [reported(str(p), "Significance tests") for p in layout.stats_files(RESULTS, tuple(DOWNSTREAM))],
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    params:
        config_json=json.dumps(config, sort_keys=True),
    threads: 1
    shell:
        "descbench --log {log:q} report --config-json {params.config_json:q} --results {RESULTS:q}"
        " --out {RESULTS:q}"
