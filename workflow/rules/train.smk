# Training: one job per (train set, method, seed). A method whose descriptor continues from another
# (init_from, the annealing stage) takes that model as input, so stage 1 is trained once per
# (train set, seed) and shared by every method that continues from it.

MODEL = f"{RESULTS}/{layout.MODEL_DIR}"


def train_inputs(wildcards):
    inputs = {"data": ubc_prepared(wildcards.train_set)}
    parent = init_from(wildcards.method)
    if parent is not None:
        inputs["init"] = f"{RESULTS}/" + layout.MODEL_DIR.format(
            train_set=wildcards.train_set, method=parent, seed=wildcards.seed) + "/model.pt"
    return inputs


def init_flag(wildcards, input):
    """--init-from for methods that continue another method's model: argv words, quoted one by one by
    {params.init:q} in the shell command (an empty list adds nothing)."""
    parent_model = getattr(input, "init", None)
    return ["--init-from", parent_model] if parent_model is not None else []


rule train:
    input:
        unpack(train_inputs),
    output:
        [f"{MODEL}/{name}" for name in layout.MODEL_FILES],
    log:
        f"{RESULTS}/logs/train/{{train_set}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{train_set}}/{{method}}/seed{{seed}}.tsv"
    params:
        out=lambda wildcards: MODEL.format(**wildcards),
        init=init_flag,
        scale=config["scale"],
        device=config["device"],
    threads: config["threads"]["train"]
    resources:
        gpu=config["train_gpus"],
    shell:
        # Every interpolated value is quoted ({x:q}), also inside $(...): paths may hold spaces.
        "descbench --log {log:q} train --method {wildcards.method:q} --train-set {wildcards.train_set:q}"
        " --seed {wildcards.seed:q} --data {DATA:q} --out {params.out:q} --scale {params.scale:q}"
        " --device {params.device:q} --threads {threads:q} --no-progress {params.init:q}"
        # A run killed mid-training left OUT/checkpoint.pt: continue from it. Decided when the job
        # starts (not in params, so it never changes what Snakemake recorded); the checkpoint of a
        # finished run is removed, so a job re-run for new inputs starts afresh.
        " $([ -f {params.out:q}/checkpoint.pt ] && echo --resume)"
        " && rm -f {params.out:q}/checkpoint.pt"
