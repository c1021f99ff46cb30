# A Hugging Face folder per model whose options have a Hugging Face architecture (transformers,
# vLLM and llama.cpp's converter read it); the report says why the others have none.
rule export_hf:
    input:
        unpack(trained_model),
    output:
        hf_files("results/hf/{model}"),
    params:
        code=code("export_hf"),
    threads: resource("export_hf", "threads")
    resources:
        mem_mb=resource("export_hf", "mem_mb"),
        runtime=resource("export_hf", "runtime"),
    log:
        "logs/export_hf/{model}.log",
    benchmark:
        "benchmarks/export_hf/{model}.tsv"
    script:
        "../workflow_scripts/export_hf.py"
