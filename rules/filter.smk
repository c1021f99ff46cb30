# Model-based filters after dedup (lmcore.data.quality): a quality classifier, a perplexity filter, a sample.
rule quality_classifier:
    input:
        positive=classifier_docs("positive"),
        negative=classifier_docs("negative"),
    output:
        model="results/filter/{source}/classifier.bin",
        stats="results/filter/{source}/classifier.json",
    params:
        code=code("quality_classifier"),
        quality=per_source(classifier_params),
        splits=config["splits"],
    threads: resource("quality_classifier", "threads")
    resources:
        mem_mb=resource("quality_classifier", "mem_mb"),
        runtime=resource("quality_classifier", "runtime"),
    log:
        "logs/quality_classifier/{source}.log",
    benchmark:
        "benchmarks/quality_classifier/{source}.tsv"
    script:
        "../workflow_scripts/quality_classifier.py"


rule filter_scores:
    input:
        unpack(scorer_inputs),
        docs=rules.dedup_apply.output.docs,
    output:
        "results/filter/{source}/scores/part-{part}.npy",
    params:
        code=code("filter_scores"),
        source=per_source(scoring_params),
    threads: resource("filter_scores", "threads")
    resources:
        mem_mb=resource("filter_scores", "mem_mb"),
        runtime=resource("filter_scores", "runtime"),
    log:
        "logs/filter_scores/{source}/part-{part}.log",
    benchmark:
        "benchmarks/filter_scores/{source}/part-{part}.tsv"
    script:
        "../workflow_scripts/filter_scores.py"


rule filter_thresholds:
    input:
        source_parts(rules.filter_scores.output[0]),
    output:
        "results/filter/{source}/thresholds.json",
    params:
        code=code("filter_thresholds"),
        source=lookup(dpath="sources/{source}", within=config),
    threads: resource("filter_thresholds", "threads")
    resources:
        mem_mb=resource("filter_thresholds", "mem_mb"),
        runtime=resource("filter_thresholds", "runtime"),
    log:
        "logs/filter_thresholds/{source}.log",
    benchmark:
        "benchmarks/filter_thresholds/{source}.tsv"
    script:
        "../workflow_scripts/filter_thresholds.py"


rule filter_apply:
    input:
        docs=rules.dedup_apply.output.docs,
        scores=rules.filter_scores.output[0],
        thresholds=rules.filter_thresholds.output[0],
    output:
        docs="results/filter/{source}/part-{part}.jsonl",
        stats="results/filter/{source}/part-{part}.stats.json",
    params:
        code=code("filter_apply"),
    threads: resource("filter_apply", "threads")
    resources:
        mem_mb=resource("filter_apply", "mem_mb"),
        runtime=resource("filter_apply", "runtime"),
    log:
        "logs/filter_apply/{source}/part-{part}.log",
    benchmark:
        "benchmarks/filter_apply/{source}/part-{part}.tsv"
    script:
        "../workflow_scripts/filter_apply.py"
