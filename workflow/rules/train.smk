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


def train_flags(wildcards, input):
    """--init-from for continuing methods; --resume when a killed run left a checkpoint."""
    flags = []
    parent_model = getattr(input, "init", None)
    if parent_model is not None:
        flags += ["--init-from", parent_model]
    checkpoint_file = Path(MODEL.format(**wildcards)) / "checkpoint.pt"
    if checkpoint_file.is_file():
        flags.append("--resume")
    return " ".join(flags)


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
        flags=train_flags,
        scale=config["scale"],
        device=config["device"],
    threads: config["threads"]["train"]
    resources:
        gpu=config["train_gpus"],
    shell:
        "descbench train --method {wildcards.method} --train-set {wildcards.train_set}"
        " --seed {wildcards.seed} --data {DATA} --out {params.out} --scale {params.scale}"
        " --device {params.device} --no-progress {params.flags} > {log} 2>&1"
