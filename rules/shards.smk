rule shard:
    input:
        docs=training_docs,
        tokenizer=rules.train_tokenizer.output[0],
    output:
        shards=expand("results/shards/{{tok}}/{split}/{{source}}/part-{{part}}.npy", split=SPLITS),
        stats="results/shards/{tok}/stats/{source}/part-{part}.json",
    params:
        code=code("shard"),
        splits=config["splits"],
    threads: resource("shard", "threads")
    resources:
        mem_mb=resource("shard", "mem_mb"),
        runtime=resource("shard", "runtime"),
    log:
        "logs/shard/{tok}/{source}/part-{part}.log",
    benchmark:
        "benchmarks/shard/{tok}/{source}/part-{part}.tsv"
    script:
        "../workflow_scripts/shard.py"


rule shards_manifest:
    input:
        stats=tokenizer_shard_stats,
        tokenizer=rules.train_tokenizer.output[0],
    output:
        "results/shards/{tok}/manifest.json",
    params:
        code=code("shards_manifest"),
        parts=lambda wildcards: tokenizer_parts(wildcards.tok),
    threads: resource("shards_manifest", "threads")
    resources:
        mem_mb=resource("shards_manifest", "mem_mb"),
        runtime=resource("shards_manifest", "runtime"),
    log:
        "logs/shards_manifest/{tok}.log",
    benchmark:
        "benchmarks/shards_manifest/{tok}.tsv"
    script:
        "../workflow_scripts/shards_manifest.py"
