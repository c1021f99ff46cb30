rule report:
    input:
        ingest=expand(rules.ingest_stats.output[0], source=SOURCES),
        clean=part_paths(rules.clean.output.stats),
        corpus=expand(rules.corpus_stats.output[0], source=SOURCES),
        manifests=expand(rules.shards_manifest.output[0], tok=TOKENIZERS),
        dedup=rules.dedup_clusters.output[0],
        dedup_parts=part_paths(rules.dedup_apply.output.stats),
        filter_parts=[rules.filter_apply.output.stats.format(source=s, part=k) for s, k in PARTS if s in FILTERED],
        filter_thresholds=expand(rules.filter_thresholds.output[0], source=FILTERED),
        filter_classifiers=expand(rules.quality_classifier.output.stats, source=TRAINED_CLASSIFIERS),
        tokenizers=expand(rules.eval_tokenizer.output[0], tok=TOKENIZERS),
        summaries=expand(rules.train.output.summary, model=MODELS),
        metrics=expand(rules.train.output.metrics, model=MODELS),
        evals=expand(rules.evaluate.output[0], model=MODELS),
        samples=expand(rules.sample.output[0], model=MODELS),
        exports=expand("results/hf/{model}/config.json", model=EXPORTABLE),
        scores=expand(rules.lm_eval.output[0], model=SCORED),
        ggufs=expand(rules.export_gguf.output[0], model=GGUF),
        adapters=expand(rules.export_lora.output.config, model=ADAPTERS),
        next_line=[rules.next_line_task.output.stats] if SCORED and "next_line" in config["evals"]["tasks"] else [],
        contamination=part_paths(rules.decontaminate.output.stats) if DECONTAMINATE else [],
        contamination_tasks=[rules.eval_ngrams.output.tasks] if DECONTAMINATE else [],
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
