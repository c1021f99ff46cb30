# Checkpoints live outside the outputs, in results/checkpoints/<model>/, so that a job
# killed part way and rerun (--rerun-incomplete) resumes instead of starting over.
rule train:
    input:
        unpack(model_inputs),
    output:
        weights="results/models/{model}/model.safetensors",
        config="results/models/{model}/config.json",
        tokenizer="results/models/{model}/tokenizer.model",
        metrics="results/models/{model}/metrics.jsonl",
        summary=report(
            "results/models/{model}/summary.json", caption="../report/summary.rst", category="Models", subcategory="{model}"
        ),
    params:
        code=code("train"),
        model=per_model(train_params),
        checkpoints="results/checkpoints/{model}",
    threads: resource("train", "threads")
    resources:
        mem_mb=resource("train", "mem_mb"),
        runtime=resource("train", "runtime"),
        gpu=slurm("gpu"),
        nodes=slurm("nodes"),
        gres=slurm("gres"),
        tasks=slurm("tasks"),
        tasks_per_gpu=slurm("tasks_per_gpu"),
        mpi=slurm("mpi"),
    log:
        "logs/train/{model}.log",
    benchmark:
        "benchmarks/train/{model}.tsv"
    script:
        "../workflow_scripts/train.py"
