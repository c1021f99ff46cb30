rule download:
    output:
        directory("results/raw/{source}"),
    params:
        code=code("download"),
        source=per_source(fetch_params),
        files=local_source_listing,
    threads: resource("download", "threads")
    resources:
        mem_mb=resource("download", "mem_mb"),
        runtime=resource("download", "runtime"),
    log:
        "logs/download/{source}.log",
    benchmark:
        "benchmarks/download/{source}.tsv"
    script:
        "../workflow_scripts/download.py"
