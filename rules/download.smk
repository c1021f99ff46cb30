rule download:
    input:
        code=code("data/download.py"),
    output:
        directory("results/raw/{source}"),
    params:
        source=source_config,
    log:
        "logs/download/{source}.log",
    benchmark:
        "benchmarks/download/{source}.tsv"
    script:
        "../workflow_scripts/download.py"
