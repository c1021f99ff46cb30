rule sample:
    input:
        unpack(trained_model),
        manifest=shards_manifest_of,
    output:
        report("results/samples/{model}.json", caption="../report/samples.rst", category="Models", subcategory="{model}"),
    params:
        code=code("sample"),
        sampling=config["sampling"],
    threads: resource("sample", "threads")
    resources:
        mem_mb=resource("sample", "mem_mb"),
        runtime=resource("sample", "runtime"),
    log:
        "logs/sample/{model}.log",
    benchmark:
        "benchmarks/sample/{model}.tsv"
    script:
        "../workflow_scripts/sample.py"
