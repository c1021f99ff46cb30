rule ingest:
    input:
        raw=rules.download.output[0],
    output:
        directory("results/docs/{source}/reader-{reader}"),
    params:
        code=code("ingest"),
        source=per_source(reading_params),
    threads: resource("ingest", "threads")
    resources:
        mem_mb=resource("ingest", "mem_mb"),
        runtime=resource("ingest", "runtime"),
    log:
        "logs/ingest/{source}/reader-{reader}.log",
    benchmark:
        "benchmarks/ingest/{source}/reader-{reader}.tsv"
    script:
        "../workflow_scripts/ingest.py"


rule ingest_stats:
    input:
        readers=readers_of,
        raw=rules.download.output[0],
    output:
        "results/docs/{source}/stats.json",
    params:
        code=code("ingest_stats"),
    threads: resource("ingest_stats", "threads")
    resources:
        mem_mb=resource("ingest_stats", "mem_mb"),
        runtime=resource("ingest_stats", "runtime"),
    log:
        "logs/ingest_stats/{source}.log",
    benchmark:
        "benchmarks/ingest_stats/{source}.tsv"
    script:
        "../workflow_scripts/ingest_stats.py"
