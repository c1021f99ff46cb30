# A Hugging Face folder per model (transformers, vLLM and llama.cpp's converter read it), or
# only unsupported.json where the model's options have no Hugging Face architecture.
rule export_hf:
    input:
        unpack(trained_model),
        code=code("hf.py", "model_folder.py", "checkpoint.py", "model.py", "tokenizer.py"),
    output:
        directory("results/hf/{model}"),
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
