rule ingest:
    input:
        raw="results/raw/{source}",
    output:
        directory("results/docs/{source}"),
    params:
        code=code("ingest"),
        source=source_config,
    threads: resource("ingest", "threads")
    resources:
        mem_mb=resource("ingest", "mem_mb"),
        runtime=resource("ingest", "runtime"),
    log:
        "logs/ingest/{source}.log",
    benchmark:
        "benchmarks/ingest/{source}.tsv"
    script:
        "../workflow_scripts/ingest.py"
