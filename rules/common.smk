# Validation, name lists, wildcard constraints and input functions shared by every rule.
import os

from lmcore.workflow.closure import digest
from lmcore.config import prepare_config
from lmcore.data.download import source_listing
from lmcore.data.quality import scorers
from lmcore.evaluation.harness import TASK_FILE
from lmcore.export.architectures import HF_FILES, architecture
from lmcore.train.init import weight_files
from lmcore.data.splits import SPLITS
from lmcore.workflow.jobs import classifier_params, eval_gpus, fetch_params, has_corpus_ids, lora_base, reading_params, scoring_params, slurm_geometry, train_params

# Fails before any job runs, naming the key and the value.
config.update(prepare_config(config, os.path.join(workflow.basedir, "schemas", "config.schema.yaml")))

SOURCES = sorted(config["sources"])
TOKENIZERS = sorted(config["tokenizers"])
MODELS = sorted(config["models"])
EXPORTABLE = [m for m in MODELS if architecture(config["models"][m])[0]]  # those with a Hugging Face architecture
SCORED = EXPORTABLE if config["evals"]["tasks"] else []  # lm-eval reads the Hugging Face folders
GGUF = EXPORTABLE if config["gguf"]["enabled"] else []  # llama.cpp has a graph for each HF architecture
ADAPTERS = [m for m in EXPORTABLE if lora_base(config["models"][m]) in EXPORTABLE]  # PEFT adapters over another export
DECONTAMINATE = config["evals"]["decontaminate"] != "off" and bool(config["evals"]["tasks"])  # lmcore.evaluation.contamination
PARTS = [(source, part) for source in SOURCES for part in range(config["sources"][source]["parts"])]
FILTERED = [s for s in SOURCES if scorers(config["sources"][s])]  # a quality, perplexity or sample filter after dedup
TRAINED_CLASSIFIERS = [s for s in FILTERED if (config["sources"][s]["quality"] or {}).get("positive")]
PAIR_JOBS = {"group": range(config["dedup"]["band_groups"]), "range": range(config["dedup"]["key_ranges"])}  # dedup's candidate-pair jobs


def resource(rule, key):
    """Threads, mem_mb or runtime of one rule, from the config's resources section."""
    return config["resources"][rule][key]


def code(script):
    """A digest of the lmcore code that workflow_scripts/<script>.py runs, its imports followed (lmcore.workflow.closure):
    a param, so that an edit reruns exactly the jobs whose code changed and a moved checkout reruns nothing."""
    return digest(os.path.join(workflow.basedir, "workflow_scripts", f"{script}.py"), os.path.join(workflow.basedir, "lmcore"))


def hf_files(folder):
    """The files of an exported model's folder: outputs, not the folder, which Snakemake would mark
    with a .snakemake_timestamp that an upload to the Hub would carry along."""
    return [os.path.join(folder, name) for name in HF_FILES]


def part_paths(pattern, **wildcards):
    """`pattern` expanded over every (source, part)."""
    return [pattern.format(source=s, part=k, **wildcards) for s, k in PARTS]


def per_source(function):
    """An input, param or resource function: `function` of the source's config entry."""
    return lambda wildcards: function(config["sources"][wildcards.source])


def per_model(function):
    """An input, param or resource function: `function` of the model's config entry."""
    return lambda wildcards: function(config["models"][wildcards.model])


def slurm(key):
    """One resource of a training job's SLURM geometry (lmcore.workflow.jobs.slurm_geometry)."""
    return per_model(lambda entry: slurm_geometry(entry)[key])


def readers_of(wildcards):
    """A source's ingest jobs' folders: one per part, each reading its share of the files."""
    return [rules.ingest.output[0].format(source=wildcards.source, reader=k) for k in range(config["sources"][wildcards.source]["parts"])]


def local_source_listing(wildcards):
    """A path: source's files, as a digest of names, sizes and times: adding, editing or removing one reruns its download and what follows."""
    source = config["sources"][wildcards.source]
    return source_listing(wildcards.source, source) if source.get("path") else None


def tokenizer_of(wildcards):
    return config["models"][wildcards.model]["tokenizer"]


def model_inputs(wildcards):
    """The shards and tokenizer a model trains on, and the files of the weights it reads: those it starts from
    (a Hugging Face folder's, or another model's), its teacher's and its DPO reference's: those models train first."""
    inputs = {"tokenizer": rules.train_tokenizer.output[0].format(tok=tokenizer_of(wildcards)), "manifest": shards_manifest_of(wildcards)}
    for role, files in weight_files(config["models"][wildcards.model], "results/models").items():
        inputs["init_from" if role == "start" else role] = files
    return inputs


def tokenizer_model_file(wildcards):
    """A tokenizer given as a SentencePiece file: an input, so that a new file reruns what follows."""
    path = config["tokenizers"][wildcards.tok]["model_file"]
    return [path] if path else []


def shards_manifest_of(wildcards):
    return rules.shards_manifest.output[0].format(tok=tokenizer_of(wildcards))


def hf_folder_files(wildcards):
    return [path.format(model=wildcards.model) for path in rules.export_hf.output]


def eval_task_files(wildcards):
    """The files of the configured lm-eval tasks that the workflow can see: next_line's, which the
    next_line_task rule writes, and the user's task YAML files (an edit reruns the scores)."""
    tasks = config["evals"]["tasks"]
    files = [t for t in tasks if t.endswith(TASK_FILE)]
    if "next_line" in tasks:
        files += [rules.next_line_task.output.task, rules.next_line_task.output.questions]
    return files


def trained_model(wildcards):
    """A trained model's folder, as the files a rule reads from it."""
    return {key: rules.train.output[key].format(model=wildcards.model) for key in ("weights", "config", "tokenizer")}


def lora_inputs(wildcards):
    """A LoRA model's folder, and its base model's weights and Hugging Face folder, which the adapter applies to."""
    base = lora_base(config["models"][wildcards.model])
    return {
        **trained_model(wildcards),
        "base_weights": rules.train.output.weights.format(model=base),
        "base_config": rules.train.output.config.format(model=base),
        "base_hf": [path.format(model=base) for path in rules.export_hf.output],
    }


def paragraph_repeats(wildcards):
    """Every key range's repeated paragraphs, where dedup.paragraphs is on."""
    if not config["dedup"]["paragraphs"]["enabled"]:
        return []
    return expand(rules.paragraph_duplicates.output[0], range=range(config["dedup"]["key_ranges"]))


def part_number(wildcards):
    """A part's place in PARTS: the number the paragraph files know it by."""
    return PARTS.index((wildcards.source, int(wildcards.part)))


def scored_contexts():
    """{tokenizer file: the shortest context among the scored models that use it}: next_line's lines fit them all."""
    contexts = {}
    for m in SCORED:
        path = rules.train_tokenizer.output[0].format(tok=config["models"][m]["tokenizer"])
        contexts[path] = min(contexts.get(path, config["models"][m]["context_length"]), config["models"][m]["context_length"])
    return contexts


def scored_tokenizers(wildcards):
    return sorted(scored_contexts())


def kept_docs(source, part):
    """A part's documents after dedup and its source's filters (results/filter/), if it has any."""
    docs = rules.filter_apply.output.docs if source in FILTERED else rules.dedup_apply.output.docs
    return docs.format(source=source, part=part)


def filtered_docs(wildcards):
    return kept_docs(wildcards.source, wildcards.part)


def training_docs(wildcards):
    """A part's documents as the shards read them: after decontamination where it runs, else after the filters."""
    if DECONTAMINATE:
        return rules.decontaminate.output.docs.format(source=wildcards.source, part=wildcards.part)
    return filtered_docs(wildcards)


def tokenizer_parts(tok):
    """The (source, part)s a tokenizer trains on and shards: those of its `sources`, else every one."""
    names = config["tokenizers"][tok]["sources"] or SOURCES
    return [(s, k) for s, k in PARTS if s in names]


def tokenizer_docs(wildcards):
    return [kept_docs(s, k) for s, k in tokenizer_parts(wildcards.tok)]


def tokenizer_shard_stats(wildcards):
    return [rules.shard.output.stats.format(tok=wildcards.tok, source=s, part=k) for s, k in tokenizer_parts(wildcards.tok)]


def parts_of(pattern, source):
    """`pattern` over every part of one source."""
    return [pattern.format(source=source, part=k) for k in range(config["sources"][source]["parts"])]


def source_parts(pattern):
    """An input function: `pattern` over every part of the job's source."""
    return lambda wildcards: parts_of(pattern, wildcards.source)


def classifier_docs(role):
    """The deduplicated parts of a quality classifier's positive or negative source (negative: the source itself)."""

    def docs(wildcards):
        return parts_of(rules.dedup_apply.output.docs, config["sources"][wildcards.source]["quality"][role] or wildcards.source)

    return docs


def scorer_inputs(wildcards):
    """What a part's scores need: its source's classifier (trained here, or the user's file) and reference model."""
    source, inputs = config["sources"][wildcards.source], {}
    if source["quality"]:
        inputs["classifier"] = source["quality"]["model_file"] or rules.quality_classifier.output.model.format(source=wildcards.source)
    if source["perplexity"]:
        model = source["perplexity"]["model"]
        inputs.update({f"reference_{k}": rules.train.output[k].format(model=model) for k in ("weights", "config", "tokenizer")})
    return inputs


def task_files(wildcards):
    """The configured task YAML files and the local data files they name: an edit reruns the decontamination."""
    from lmcore.evaluation.contamination import task_data_files

    yamls = [t for t in config["evals"]["tasks"] if t.endswith(TASK_FILE)]
    return yamls + [f for t in yamls for f in task_data_files(t) or [] if os.path.exists(f)]
