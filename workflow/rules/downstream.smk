# Downstream evaluations (config `downstream`). hpatches_sequences: image matching on the HPatches full-image
# sequences with one SIFT detector for every descriptor (descbench evaluate hpatches-sequences), for the same
# models as HPatches (the configured HPatches train set, every seed), every handcrafted descriptor, and the
# released weights that were not trained on HPatches. The D2-Net subset is evaluated (the tables use it).
# Every value interpolated into a shell command is quoted ({x:q}) and every rule runs `descbench --log LOG`
# (see data.smk).

from descbench.report import sequences as sequences_report

DOWNSTREAM = config.get("downstream", [])
SEQ_SUBSET = sequences_report.SUBSET
SEQUENCES_PREPARED = f"{DATA}/hpatches-sequences/meta.json"
SEQ_LEARNED = f"{RESULTS}/" + sequences_report.LEARNED_DIR.replace("{subset}", SEQ_SUBSET)
SEQ_HANDCRAFTED = f"{RESULTS}/" + sequences_report.HANDCRAFTED_DIR.replace("{subset}", SEQ_SUBSET)
SEQ_RELEASED = f"{RESULTS}/" + sequences_report.RELEASED_DIR.replace("{subset}", SEQ_SUBSET)


def downstream_scores():
    """Score files of every configured downstream evaluation (the report's sequences_scores manifest)."""
    if "hpatches_sequences" not in DOWNSTREAM:
        return []
    dirs = [sequences_report.scores_dir(RESULTS, m, SEQ_SUBSET, HP_TRAIN_SET, seed) for m in METHODS for seed in SEEDS]
    dirs += [sequences_report.scores_dir(RESULTS, m, SEQ_SUBSET) for m in HANDCRAFTED]
    dirs += [sequences_report.scores_dir(RESULTS, r, SEQ_SUBSET, release=True) for r in sequences_report.eligible_releases(RELEASED)]
    return [str(d / name) for d in dirs for name in sequences_report.SCORE_FILES]


if "hpatches_sequences" in DOWNSTREAM:

    if config["data"]["source"] == "download":

        rule download_hpatches_sequences:
            output:
                directory(RAW_SEQUENCES),
            log:
                f"{RESULTS}/logs/data/download_hpatches_sequences.log",
            benchmark:
                f"{RESULTS}/benchmarks/data/download_hpatches_sequences.tsv"
            params:
                from_dir=DATA_FROM_FLAG,
            threads: 1
            resources:
                downloads=1,
            shell:
                "descbench --log {log:q} download hpatches-sequences --data {DATA:q} {params.from_dir:q}"

    rule prepare_hpatches_sequences:
        input:
            RAW_SEQUENCES,
        output:
            SEQUENCES_PREPARED,
        log:
            f"{RESULTS}/logs/data/prepare_hpatches_sequences.log",
        benchmark:
            f"{RESULTS}/benchmarks/data/prepare_hpatches_sequences.tsv"
        threads: 1
        shell:
            "descbench --log {log:q} prepare hpatches-sequences --data {DATA:q}"

    rule evaluate_sequences_model:
        input:
            model=f"{MODEL}/model.pt",
            data=SEQUENCES_PREPARED,
        output:
            [f"{SEQ_LEARNED}/{name}" for name in sequences_report.SCORE_FILES],
        log:
            f"{RESULTS}/logs/evaluate/hpatches_sequences/{{train_set}}/{{method}}/seed{{seed}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/evaluate/hpatches_sequences/{{train_set}}/{{method}}/seed{{seed}}.tsv"
        params:
            out=lambda wildcards: SEQ_LEARNED.format(**wildcards),
        threads: config["threads"]["evaluate"]
        shell:
            "descbench --log {log:q} evaluate hpatches-sequences --model {input.model:q} --data {DATA:q}"
            " --subset {SEQ_SUBSET:q} --out {params.out:q}"

    rule evaluate_sequences_handcrafted:
        input:
            data=SEQUENCES_PREPARED,
        output:
            [f"{SEQ_HANDCRAFTED}/{name}" for name in sequences_report.SCORE_FILES],
        log:
            f"{RESULTS}/logs/evaluate/hpatches_sequences/handcrafted/{{method}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/evaluate/hpatches_sequences/handcrafted/{{method}}.tsv"
        params:
            out=lambda wildcards: SEQ_HANDCRAFTED.format(**wildcards),
        threads: config["threads"]["evaluate"]
        shell:
            "descbench --log {log:q} evaluate hpatches-sequences --descriptor {wildcards.method:q} --data {DATA:q}"
            " --subset {SEQ_SUBSET:q} --out {params.out:q}"

    rule evaluate_sequences_released:
        input:
            weights=f"{WEIGHTS}/{{release}}",
            data=SEQUENCES_PREPARED,
        output:
            [f"{SEQ_RELEASED}/{name}" for name in sequences_report.SCORE_FILES],
        log:
            f"{RESULTS}/logs/evaluate/hpatches_sequences/released/{{release}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/evaluate/hpatches_sequences/released/{{release}}.tsv"
        params:
            out=lambda wildcards: SEQ_RELEASED.format(**wildcards),
        threads: config["threads"]["evaluate"]
        shell:
            "descbench --log {log:q} evaluate hpatches-sequences --descriptor {wildcards.release:q} --weights {WEIGHTS:q}"
            " --data {DATA:q} --subset {SEQ_SUBSET:q} --out {params.out:q}"
