rule report:
    input:
        ingest=expand("results/docs/{source}/stats.json", source=SOURCES),
        clean=part_paths("results/clean/{source}/part-{part}.stats.json"),
        dedup="results/dedup/clusters.json",
        tokenizers=expand("results/tokenizers/{tok}/stats.json", tok=TOKENIZERS),
        summaries=expand("results/models/{model}/summary.json", model=MODELS),
        metrics=expand("results/models/{model}/metrics.jsonl", model=MODELS),
        evals=expand("results/eval/{model}.json", model=MODELS),
        samples=expand("results/samples/{model}.json", model=MODELS),
        exports=expand("results/hf/{model}/config.json", model=EXPORTABLE),
        scores=expand("results/evals/{model}.json", model=SCORED),
        ggufs=expand("results/gguf/{model}.gguf", model=GGUF),
    output:
        report("results/report.html", caption="../report/report.rst", category="Report"),
    params:
        code=code("report"),
        config=config,
        tokenizers=TOKENIZERS,
        models=MODELS,
    threads: resource("report", "threads")
    resources:
        mem_mb=resource("report", "mem_mb"),
        runtime=resource("report", "runtime"),
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/report.tsv"
    script:
        "../workflow_scripts/report.py"
