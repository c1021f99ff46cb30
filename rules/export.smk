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


# A GGUF file per model that llama.cpp's llama, qwen3 or gpt2 graph computes (llama.cpp, Ollama and
# llama-cpp-python run it); written from lmcore's weights, not through the Hugging Face folder.
rule export_gguf:
    input:
        unpack(trained_model),
    output:
        "results/gguf/{model}.gguf",
    params:
        code=code("export_gguf"),
        dtype=config["gguf"]["dtype"],
    threads: resource("export_gguf", "threads")
    resources:
        mem_mb=resource("export_gguf", "mem_mb"),
        runtime=resource("export_gguf", "runtime"),
    log:
        "logs/export_gguf/{model}.log",
    benchmark:
        "benchmarks/export_gguf/{model}.tsv"
    script:
        "../workflow_scripts/export_gguf.py"


# A PEFT adapter folder per LoRA model that continues another exported model (lmcore.export.peft):
# peft.PeftModel.from_pretrained loads it onto that model's Hugging Face folder.
rule export_lora:
    input:
        unpack(lora_inputs),
    output:
        config="results/lora/{model}/adapter_config.json",
        weights="results/lora/{model}/adapter_model.safetensors",
    params:
        code=code("export_lora"),
    threads: resource("export_lora", "threads")
    resources:
        mem_mb=resource("export_lora", "mem_mb"),
        runtime=resource("export_lora", "runtime"),
    log:
        "logs/export_lora/{model}.log",
    benchmark:
        "benchmarks/export_lora/{model}.tsv"
    script:
        "../workflow_scripts/export_lora.py"
