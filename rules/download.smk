rule download:
    input:
        files=local_source_files,
        code=code("data/download.py"),
    output:
        directory("results/raw/{source}"),
    params:
        source=source_config,
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
