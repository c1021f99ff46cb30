rule clean:
    input:
        docs="results/docs/{source}",
    output:
        docs="results/clean/{source}/part-{part}.jsonl",
        stats="results/clean/{source}/part-{part}.stats.json",
    params:
        code=code("clean"),
        clean=config["clean"],
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
