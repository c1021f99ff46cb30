# Benchmark scores through lm-evaluation-harness on each exported model (lmcore.evaluation.harness).
rule next_line_task:
    input:
        parts=part_paths(rules.dedup_apply.output[0]),
        tokenizers=scored_tokenizers,
    output:
        task="results/evals/tasks/next_line/next_line.yaml",
        questions="results/evals/tasks/next_line/test.jsonl",
        stats="results/evals/tasks/next_line/stats.json",
    params:
        code=code("next_line_task"),
        contexts=scored_contexts(),
        next_line=config["evals"]["next_line"],
        splits=config["splits"],
    threads: resource("next_line_task", "threads")
    resources:
        mem_mb=resource("next_line_task", "mem_mb"),
        runtime=resource("next_line_task", "runtime"),
    log:
        "logs/next_line_task.log",
    benchmark:
        "benchmarks/next_line_task.tsv"
    script:
        "../workflow_scripts/next_line_task.py"


rule lm_eval:
    input:
        hf=hf_folder_files,
        tasks=eval_task_files,
    output:
        report("results/evals/{model}.json", caption="../report/evals.rst", category="Models", subcategory="{model}"),
    params:
        code=code("evals"),
        evals=config["evals"],
        next_line="results/evals/tasks/next_line",
    threads: resource("lm_eval", "threads")
    resources:
        mem_mb=resource("lm_eval", "mem_mb"),
        runtime=resource("lm_eval", "runtime"),
        gpu=per_model(eval_gpus),
    log:
        "logs/lm_eval/{model}.log",
    benchmark:
        "benchmarks/lm_eval/{model}.tsv"
    script:
        "../workflow_scripts/evals.py"


rule eval_ngrams:
    input:
        parts=part_paths(rules.dedup_apply.output[0]),
        tasks=task_files,
    output:
        ngrams="results/decontamination/ngrams.npz",
        tasks="results/decontamination/tasks.json",
    params:
        code=code("eval_ngrams"),
        tasks=config["evals"]["tasks"],
        ngram=config["evals"]["decontaminate_ngram"],
        splits=config["splits"],
    threads: resource("eval_ngrams", "threads")
    resources:
        mem_mb=resource("eval_ngrams", "mem_mb"),
        runtime=resource("eval_ngrams", "runtime"),
    log:
        "logs/eval_ngrams.log",
    benchmark:
        "benchmarks/eval_ngrams.tsv"
    script:
        "../workflow_scripts/eval_ngrams.py"


rule decontaminate:
    input:
        docs=filtered_docs,
        ngrams=rules.eval_ngrams.output.ngrams,
    output:
        docs="results/decontamination/{source}/part-{part}.jsonl",
        stats="results/decontamination/{source}/part-{part}.json",
    params:
        code=code("decontaminate"),
        action=config["evals"]["decontaminate"],
        ngram=config["evals"]["decontaminate_ngram"],
        splits=config["splits"],
    threads: resource("decontaminate", "threads")
    resources:
        mem_mb=resource("decontaminate", "mem_mb"),
        runtime=resource("decontaminate", "runtime"),
    log:
        "logs/decontaminate/{source}/part-{part}.log",
    benchmark:
        "benchmarks/decontaminate/{source}/part-{part}.tsv"
    script:
        "../workflow_scripts/decontaminate.py"
