rule ingest:
    input:
        raw="results/raw/{source}",
        code=code("data/ingest.py"),
    output:
        directory("results/docs/{source}"),
    params:
        source=source_config,
    log:
        "logs/ingest/{source}.log",
    benchmark:
        "benchmarks/ingest/{source}.tsv"
    script:
        "../workflow_scripts/ingest.py"
