# Data: raw downloads (paper) or the generated offline datasets (mini), then the prepared arrays.
# Raw inputs keep their original formats under DATA/raw; `descbench prepare` writes DATA/ubc, DATA/hpatches.
# Every value interpolated into a shell command is quoted ({x:q}): paths may hold spaces and non-ASCII
# letters, and nothing from the config can reach the shell as syntax (the schema also refuses metacharacters).
# The data, train and evaluate rules run `descbench --log LOG ...`: the command's output goes to the log
# file, and its error, if it fails, also to the console (a failed job says why, not only "check log file(s)").

RAW_HPATCHES = f"{DATA}/raw/hpatches-release"
RAW_TASKS = f"{DATA}/raw/hpatches-tasks"
RAW_SEQUENCES = f"{DATA}/raw/hpatches-sequences-release"  # the downstream image-matching data
UBC_ARRAYS = ("patches.npy", "labels.npy", "pairs_100k.npy", "meta.json")


def ubc_prepared(ubc_set):
    """The prepared arrays of one UBC set (inputs of training and UBC evaluation)."""
    return [f"{DATA}/ubc/{ubc_set}/{name}" for name in UBC_ARRAYS]


HPATCHES_PREPARED = f"{DATA}/hpatches/meta.json"


# data.from_dir: archives and task files the user already has (descbench download --from-dir), instead of
# the network; a relative path is relative to the working directory
DATA_FROM_FLAG = ["--from-dir", config["data"]["from_dir"]] if config["data"].get("from_dir") else []


if config["data"]["source"] == "download":

    rule download_ubc:
        output:
            directory(f"{DATA}/raw/ubc/{{ubc_set}}"),
        log:
            f"{RESULTS}/logs/data/download_ubc_{{ubc_set}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/data/download_ubc_{{ubc_set}}.tsv"
        params:
            from_dir=DATA_FROM_FLAG,
        threads: 1
        resources:
            downloads=1,
        shell:
            "descbench --log {log:q} download ubc {wildcards.ubc_set:q} --data {DATA:q} {params.from_dir:q}"

    rule download_hpatches:
        output:
            directory(RAW_HPATCHES),
        log:
            f"{RESULTS}/logs/data/download_hpatches.log",
        benchmark:
            f"{RESULTS}/benchmarks/data/download_hpatches.tsv"
        params:
            from_dir=DATA_FROM_FLAG,
        threads: 1
        resources:
            downloads=1,
        shell:
            "descbench --log {log:q} download hpatches --data {DATA:q} {params.from_dir:q}"

    rule download_hpatches_tasks:
        output:
            directory(RAW_TASKS),
        log:
            f"{RESULTS}/logs/data/download_hpatches_tasks.log",
        benchmark:
            f"{RESULTS}/benchmarks/data/download_hpatches_tasks.tsv"
        params:
            from_dir=DATA_FROM_FLAG,
        threads: 1
        resources:
            downloads=1,
        shell:
            "descbench --log {log:q} download hpatches-tasks --data {DATA:q} {params.from_dir:q}"

else:

    rule make_mini:
        output:
            [directory(f"{DATA}/raw/ubc/{s}") for s in UBC_SETS],
            directory(RAW_HPATCHES),
            directory(RAW_TASKS),
            directory(RAW_SEQUENCES),
        log:
            f"{RESULTS}/logs/data/make_mini.log",
        benchmark:
            f"{RESULTS}/benchmarks/data/make_mini.tsv"
        params:
            seed=config["data"].get("mini_seed", 0),
        threads: 1
        shell:
            "descbench --log {log:q} make-mini --data {DATA:q} --seed {params.seed:q}"


rule prepare_ubc:
    input:
        f"{DATA}/raw/ubc/{{ubc_set}}",
    output:
        ubc_prepared("{ubc_set}"),
    log:
        f"{RESULTS}/logs/data/prepare_ubc_{{ubc_set}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/prepare_ubc_{{ubc_set}}.tsv"
    threads: 1
    shell:
        "descbench --log {log:q} prepare ubc {wildcards.ubc_set:q} --data {DATA:q}"


rule prepare_hpatches:
    input:
        RAW_HPATCHES,
        RAW_TASKS,
    output:
        HPATCHES_PREPARED,
    log:
        f"{RESULTS}/logs/data/prepare_hpatches.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/prepare_hpatches.tsv"
    threads: 1
    shell:
        "descbench --log {log:q} prepare hpatches --data {DATA:q}"


# Released weights (config `released`): one folder per release under WEIGHTS, verified against the pins of
# descbench.weights; from the network (source download) or from data.weights_from (any source).
WEIGHTS_FROM_FLAG = ["--from-dir", WEIGHTS_FROM] if WEIGHTS_FROM else []


rule download_weights:
    output:
        directory(f"{WEIGHTS}/{{release}}"),
    log:
        f"{RESULTS}/logs/data/download_weights_{{release}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/download_weights_{{release}}.tsv"
    params:
        from_dir=WEIGHTS_FROM_FLAG,
    threads: 1
    resources:
        downloads=1,
    shell:
        "descbench --log {log:q} download weights {wildcards.release:q} --weights-dir {WEIGHTS:q}"
        " {params.from_dir:q}"
