rule shard:
    input:
        docs="results/dedup/{source}/part-{part}.jsonl",
        tokenizer="results/tokenizers/{tok}/spm.model",
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
        stats=part_paths("results/shards/{tok}/stats/{source}/part-{part}.json", tok="{tok}"),
        tokenizer="results/tokenizers/{tok}/spm.model",
    output:
        "results/shards/{tok}/manifest.json",
    params:
        code=code("shards_manifest"),
        parts=PARTS,
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
