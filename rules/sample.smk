rule sample:
    input:
        unpack(trained_model),
        code=code("generate.py", "train.py", "model.py", "tokenizer.py"),
    output:
        "results/samples/{model}.json",
    params:
        sampling=config["sampling"],
    log:
        "logs/sample/{model}.log",
    benchmark:
        "benchmarks/sample/{model}.tsv"
    script:
        "../workflow_scripts/sample.py"
