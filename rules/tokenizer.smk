rule train_tokenizer:
    input:
        docs=tokenizer_docs,
        model_file=tokenizer_model_file,
    output:
        "results/tokenizers/{tok}/spm.model",
    params:
        code=code("train_tokenizer"),
        tokenizer=lookup(dpath="tokenizers/{tok}", within=config),
        splits=config["splits"],
    threads: resource("train_tokenizer", "threads")
    resources:
        mem_mb=resource("train_tokenizer", "mem_mb"),
        runtime=resource("train_tokenizer", "runtime"),
    log:
        "logs/train_tokenizer/{tok}.log",
    benchmark:
        "benchmarks/train_tokenizer/{tok}.tsv"
    script:
        "../workflow_scripts/train_tokenizer.py"


rule eval_tokenizer:
    input:
        docs=tokenizer_docs,
        tokenizer=rules.train_tokenizer.output[0],
    output:
        "results/tokenizers/{tok}/stats.json",
    params:
        code=code("eval_tokenizer"),
        tokenizer=lookup(dpath="tokenizers/{tok}", within=config),
        splits=config["splits"],
    threads: resource("eval_tokenizer", "threads")
    resources:
        mem_mb=resource("eval_tokenizer", "mem_mb"),
        runtime=resource("eval_tokenizer", "runtime"),
    log:
        "logs/eval_tokenizer/{tok}.log",
    benchmark:
        "benchmarks/eval_tokenizer/{tok}.tsv"
    script:
        "../workflow_scripts/eval_tokenizer.py"
