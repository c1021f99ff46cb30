rule dedup_signatures:
    input:
        docs=rules.clean.output.docs,
    output:
        json="results/dedup/signatures/{source}/part-{part}.json",
        npy="results/dedup/signatures/{source}/part-{part}.npy",
        bands="results/dedup/signatures/{source}/part-{part}.bands.npy",
    params:
        code=code("dedup_signatures"),
        dedup=config["dedup"],
    threads: resource("dedup_signatures", "threads")
    resources:
        mem_mb=resource("dedup_signatures", "mem_mb"),
        runtime=resource("dedup_signatures", "runtime"),
    log:
        "logs/dedup_signatures/{source}/part-{part}.log",
    benchmark:
        "benchmarks/dedup_signatures/{source}/part-{part}.tsv"
    script:
        "../workflow_scripts/dedup_signatures.py"


rule dedup_pairs:
    input:
        bands=part_paths(rules.dedup_signatures.output.bands),
        npy=part_paths(rules.dedup_signatures.output.npy),
    output:
        "results/dedup/pairs/group-{group}-range-{range}.npy",
    params:
        code=code("dedup_pairs"),
        dedup=config["dedup"],
    threads: resource("dedup_pairs", "threads")
    resources:
        mem_mb=resource("dedup_pairs", "mem_mb"),
        runtime=resource("dedup_pairs", "runtime"),
    log:
        "logs/dedup_pairs/group-{group}-range-{range}.log",
    benchmark:
        "benchmarks/dedup_pairs/group-{group}-range-{range}.tsv"
    script:
        "../workflow_scripts/dedup_pairs.py"


rule dedup_clusters:
    input:
        pairs=expand(rules.dedup_pairs.output[0], **PAIR_JOBS),
        json=part_paths(rules.dedup_signatures.output.json),
        npy=part_paths(rules.dedup_signatures.output.npy),
    output:
        "results/dedup/clusters.json",
    params:
        code=code("dedup_clusters"),
        dedup=config["dedup"],
    threads: resource("dedup_clusters", "threads")
    resources:
        mem_mb=resource("dedup_clusters", "mem_mb"),
        runtime=resource("dedup_clusters", "runtime"),
    log:
        "logs/dedup_clusters.log",
    benchmark:
        "benchmarks/dedup_clusters.tsv"
    script:
        "../workflow_scripts/dedup_clusters.py"


rule paragraph_hashes:
    input:
        docs=rules.clean.output.docs,
        clusters=rules.dedup_clusters.output[0],
    output:
        "results/dedup/paragraphs/hashes/{source}/part-{part}.npy",
    params:
        code=code("paragraph_hashes"),
        paragraphs=config["dedup"]["paragraphs"],
    threads: resource("paragraph_hashes", "threads")
    resources:
        mem_mb=resource("paragraph_hashes", "mem_mb"),
        runtime=resource("paragraph_hashes", "runtime"),
    log:
        "logs/paragraph_hashes/{source}/part-{part}.log",
    benchmark:
        "benchmarks/paragraph_hashes/{source}/part-{part}.tsv"
    script:
        "../workflow_scripts/paragraph_hashes.py"


rule paragraph_duplicates:
    input:
        part_paths(rules.paragraph_hashes.output[0]),
    output:
        "results/dedup/paragraphs/repeats/range-{range}.npy",
    params:
        code=code("paragraph_duplicates"),
        key_ranges=config["dedup"]["key_ranges"],
    threads: resource("paragraph_duplicates", "threads")
    resources:
        mem_mb=resource("paragraph_duplicates", "mem_mb"),
        runtime=resource("paragraph_duplicates", "runtime"),
    log:
        "logs/paragraph_duplicates/range-{range}.log",
    benchmark:
        "benchmarks/paragraph_duplicates/range-{range}.tsv"
    script:
        "../workflow_scripts/paragraph_duplicates.py"


rule dedup_apply:
    input:
        docs=rules.clean.output.docs,
        clusters=rules.dedup_clusters.output[0],
        paragraphs=paragraph_repeats,
    output:
        docs="results/dedup/{source}/part-{part}.jsonl",
        stats="results/dedup/{source}/part-{part}.stats.json",
    params:
        code=code("dedup_apply"),
        paragraphs=config["dedup"]["paragraphs"],
        part_number=part_number,
    threads: resource("dedup_apply", "threads")
    resources:
        mem_mb=resource("dedup_apply", "mem_mb"),
        runtime=resource("dedup_apply", "runtime"),
    log:
        "logs/dedup_apply/{source}/part-{part}.log",
    benchmark:
        "benchmarks/dedup_apply/{source}/part-{part}.tsv"
    script:
        "../workflow_scripts/dedup_apply.py"
