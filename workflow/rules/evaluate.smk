# Evaluation: every learned model on every UBC set it was not trained on, the models of the configured
# HPatches train set on HPatches; handcrafted descriptors once per UBC test set and once on HPatches.
# Every value interpolated into a shell command is quoted ({x:q}; see data.smk).

UBC_LEARNED = f"{RESULTS}/{layout.UBC_LEARNED_DIR}"
UBC_HANDCRAFTED = f"{RESULTS}/{layout.UBC_HANDCRAFTED_DIR}"
HP_LEARNED = f"{RESULTS}/{layout.HPATCHES_LEARNED_DIR}"
HP_HANDCRAFTED = f"{RESULTS}/{layout.HPATCHES_HANDCRAFTED_DIR}"
UBC_CONVENTION = config["ubc"]["convention"]
HP_CONVENTION = config["hpatches"]["convention"]


rule evaluate_ubc_model:
    input:
        model=f"{MODEL}/model.pt",
        data=ubc_prepared("{test_set}"),
    output:
        [f"{UBC_LEARNED}/{name}" for name in layout.UBC_SCORE_FILES],
    log:
        f"{RESULTS}/logs/evaluate/ubc/{{train_set}}/{{method}}/seed{{seed}}/{{test_set}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/ubc/{{train_set}}/{{method}}/seed{{seed}}/{{test_set}}.tsv"
    params:
        out=lambda wildcards: UBC_LEARNED.format(**wildcards),
    threads: config["threads"]["evaluate"]
    shell:
        "descbench --log {log:q} evaluate ubc --model {input.model:q} --test-set {wildcards.test_set:q}"
        " --data {DATA:q} --convention {UBC_CONVENTION:q} --out {params.out:q}"


rule evaluate_ubc_handcrafted:
    input:
        data=ubc_prepared("{test_set}"),
    output:
        [f"{UBC_HANDCRAFTED}/{name}" for name in layout.UBC_SCORE_FILES],
    log:
        f"{RESULTS}/logs/evaluate/ubc/handcrafted/{{method}}/{{test_set}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/ubc/handcrafted/{{method}}/{{test_set}}.tsv"
    params:
        out=lambda wildcards: UBC_HANDCRAFTED.format(**wildcards),
    threads: config["threads"]["evaluate"]
    shell:
        "descbench --log {log:q} evaluate ubc --descriptor {wildcards.method:q}"
        " --test-set {wildcards.test_set:q} --data {DATA:q} --convention {UBC_CONVENTION:q} --out {params.out:q}"


rule evaluate_hpatches_model:
    input:
        model=f"{MODEL}/model.pt",
        data=HPATCHES_PREPARED,
    output:
        [f"{HP_LEARNED}/{name}" for name in layout.HPATCHES_SCORE_FILES],
    log:
        f"{RESULTS}/logs/evaluate/hpatches/{{split}}/{{train_set}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/hpatches/{{split}}/{{train_set}}/{{method}}/seed{{seed}}.tsv"
    params:
        out=lambda wildcards: HP_LEARNED.format(**wildcards),
    threads: config["threads"]["evaluate"]
    shell:
        "descbench --log {log:q} evaluate hpatches --model {input.model:q} --split {wildcards.split:q}"
        " --data {DATA:q} --convention {HP_CONVENTION:q} --out {params.out:q}"


rule evaluate_hpatches_handcrafted:
    input:
        data=HPATCHES_PREPARED,
    output:
        [f"{HP_HANDCRAFTED}/{name}" for name in layout.HPATCHES_SCORE_FILES],
    log:
        f"{RESULTS}/logs/evaluate/hpatches/{{split}}/handcrafted/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/hpatches/{{split}}/handcrafted/{{method}}.tsv"
    params:
        out=lambda wildcards: HP_HANDCRAFTED.format(**wildcards),
    threads: config["threads"]["evaluate"]
    shell:
        "descbench --log {log:q} evaluate hpatches --descriptor {wildcards.method:q}"
        " --split {wildcards.split:q} --data {DATA:q} --convention {HP_CONVENTION:q} --out {params.out:q}"


# Released weights: each on the UBC sets it was not trained on and on HPatches (never on its training data;
# the command refuses that itself). Scores sit beside our own trainings, under scores/*/released/.
UBC_RELEASED = f"{RESULTS}/{layout.UBC_RELEASED_DIR}"
HP_RELEASED = f"{RESULTS}/{layout.HPATCHES_RELEASED_DIR}"


rule evaluate_ubc_released:
    input:
        weights=f"{WEIGHTS}/{{release}}",
        data=ubc_prepared("{test_set}"),
    output:
        [f"{UBC_RELEASED}/{name}" for name in layout.UBC_SCORE_FILES],
    log:
        f"{RESULTS}/logs/evaluate/ubc/released/{{release}}/{{test_set}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/ubc/released/{{release}}/{{test_set}}.tsv"
    params:
        out=lambda wildcards: UBC_RELEASED.format(**wildcards),
    threads: config["threads"]["evaluate"]
    shell:
        "descbench --log {log:q} evaluate ubc --descriptor {wildcards.release:q} --weights {WEIGHTS:q}"
        " --test-set {wildcards.test_set:q} --data {DATA:q} --convention {UBC_CONVENTION:q}"
        " --out {params.out:q}"


rule evaluate_hpatches_released:
    input:
        weights=f"{WEIGHTS}/{{release}}",
        data=HPATCHES_PREPARED,
    output:
        [f"{HP_RELEASED}/{name}" for name in layout.HPATCHES_SCORE_FILES],
    log:
        f"{RESULTS}/logs/evaluate/hpatches/{{split}}/released/{{release}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/hpatches/{{split}}/released/{{release}}.tsv"
    params:
        out=lambda wildcards: HP_RELEASED.format(**wildcards),
    threads: config["threads"]["evaluate"]
    shell:
        "descbench --log {log:q} evaluate hpatches --descriptor {wildcards.release:q} --weights {WEIGHTS:q}"
        " --split {wildcards.split:q} --data {DATA:q} --convention {HP_CONVENTION:q}"
        " --out {params.out:q}"
