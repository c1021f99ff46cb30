rule evaluate:
    input:
        unpack(trained_model),
        manifest=shards_manifest_of,
    output:
        report("results/eval/{model}.json", caption="../report/eval.rst", category="Models", subcategory="{model}"),
    params:
        code=code("evaluate"),
    threads: resource("evaluate", "threads")
    resources:
        mem_mb=resource("evaluate", "mem_mb"),
        runtime=resource("evaluate", "runtime"),
        gpu=per_model(eval_gpus),
    log:
        "logs/evaluate/{model}.log",
    benchmark:
        "benchmarks/evaluate/{model}.tsv"
    script:
        "../workflow_scripts/evaluate.py"
