rule clean:
    input:
        readers=readers_of,
        stats=rules.ingest_stats.output[0],
    output:
        docs="results/clean/{source}/part-{part}.jsonl",
        stats="results/clean/{source}/part-{part}.stats.json",
    params:
        code=code("clean"),
        clean=config["clean"],
        corpus_ids=per_source(has_corpus_ids),
    threads: resource("clean", "threads")
    resources:
        mem_mb=resource("clean", "mem_mb"),
        runtime=resource("clean", "runtime"),
    log:
        "logs/clean/{source}/part-{part}.log",
    benchmark:
        "benchmarks/clean/{source}/part-{part}.tsv"
    script:
        "../workflow_scripts/clean.py"


rule corpus_stats:
    input:
        clean=source_parts(rules.clean.output.stats),
    output:
        "results/stats/{source}.json",
    params:
        code=code("corpus_stats"),
    threads: resource("corpus_stats", "threads")
    resources:
        mem_mb=resource("corpus_stats", "mem_mb"),
        runtime=resource("corpus_stats", "runtime"),
    log:
        "logs/corpus_stats/{source}.log",
    benchmark:
        "benchmarks/corpus_stats/{source}.tsv"
    script:
        "../workflow_scripts/corpus_stats.py"
