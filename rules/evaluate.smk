rule evaluate:
    input:
        unpack(trained_model),
        manifest=lambda w: model_inputs(w)["manifest"],
        code=code("evaluate.py", "train.py", "model.py", "shards.py", "tokenizer.py"),
    output:
        report("results/eval/{model}.json", caption="../report/eval.rst", category="Models", subcategory="{model}"),
    threads: 2
    log:
        "logs/evaluate/{model}.log",
    benchmark:
        "benchmarks/evaluate/{model}.tsv"
    script:
        "../workflow_scripts/evaluate.py"
