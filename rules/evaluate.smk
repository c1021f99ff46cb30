rule evaluate:
    input:
        unpack(trained_model),
        manifest=lambda w: model_inputs(w)["manifest"],
        code=code("evaluate.py", "train.py", "model.py", "shards.py", "tokenizer.py"),
    output:
        "results/eval/{model}.json",
    threads: 2
    log:
        "logs/evaluate/{model}.log",
    benchmark:
        "benchmarks/evaluate/{model}.tsv"
    script:
        "../workflow_scripts/evaluate.py"
