# Validation, name lists, wildcard constraints and input functions shared by every rule.
import os

from lmcore.workflow.closure import digest
from lmcore.config import prepare_config
from lmcore.data.download import source_listing
from lmcore.evaluation.harness import TASK_FILE
from lmcore.train.config import NOT_THE_MATHS
from lmcore.export.architectures import HF_FILES, architecture
from lmcore.train.init import starting_files
from lmcore.data.splits import SPLITS

# Fails before any job runs, naming the key and the value.
config.update(prepare_config(config, os.path.join(workflow.basedir, "schemas", "config.schema.yaml")))

SOURCES = sorted(config["sources"])
TOKENIZERS = sorted(config["tokenizers"])
MODELS = sorted(config["models"])
EXPORTABLE = [m for m in MODELS if architecture(config["models"][m])[0]]  # those with a Hugging Face architecture
SCORED = EXPORTABLE if config["evals"]["tasks"] else []  # lm-eval reads the Hugging Face folders
GGUF = EXPORTABLE if config["gguf"]["enabled"] else []  # llama.cpp has a graph for each HF architecture
PARTS = [(source, part) for source in SOURCES for part in range(config["sources"][source]["parts"])]
PAIRS = [  # the candidate-pair jobs of dedup: band groups x key ranges
    f"results/dedup/pairs/group-{g}-range-{r}.npy"
    for g in range(config["dedup"]["band_groups"])
    for r in range(config["dedup"]["key_ranges"])
]


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


def source_config(wildcards):
    return config["sources"][wildcards.source]


def fetch_config(wildcards):
    """The keys of a source that say which bytes arrive: changing how documents are read (documents, where,
    parts) reruns ingest and what follows, and never fetches a corpus again."""
    return {k: v for k, v in config["sources"][wildcards.source].items() if k not in ("documents", "where", "parts")}


def readers_of(wildcards):
    """A source's ingest jobs' folders: one per part, each reading its share of the files."""
    return [f"results/docs/{wildcards.source}/reader-{k}" for k in range(config["sources"][wildcards.source]["parts"])]


def corpus_ids(wildcards):
    """Whether a source's ids are the corpus's own (which may repeat), not made from paths and positions."""
    documents = config["sources"][wildcards.source]["documents"]
    return isinstance(documents, dict) and "id" in documents


def local_source_listing(wildcards):
    """A path: source's files, as a digest of names, sizes and times: adding, editing or removing one reruns its download and what follows."""
    source = config["sources"][wildcards.source]
    return source_listing(wildcards.source, source) if source.get("path") else None


def model_config(wildcards):
    """The model's entry as a param, so that a change reruns its training; but for the keys of how the run is
    watched or fits in memory (NOT_THE_MATHS), which the train job reads from the config itself."""
    return {k: v for k, v in config["models"][wildcards.model].items() if k not in NOT_THE_MATHS}


def tokenizer_config(wildcards):
    return config["tokenizers"][wildcards.tok]


def model_gpus(wildcards):
    return config["models"][wildcards.model]["gpus"]


def eval_gpus(wildcards):
    """A model trained on GPUs is evaluated on one."""
    return min(1, model_gpus(wildcards))


# A training job's SLURM geometry, read by snakemake-executor-plugin-slurm. On one node: `gpu` GPUs
# (sbatch --gpus) and one task, which the plugin's jobstep starts with `srun -n1`, and torchrun runs
# the processes. Across nodes: --nodes, --gres=gpu:<gpus> (per node, where --gpus counts the job's
# GPUs) and one task per node; `mpi` tells the jobstep that the job starts its own tasks with srun
# (lmcore.train.launch.launch_command); `tasks_per_gpu: 0` keeps the plugin from reading `tasks` as
# --ntasks-per-gpu for a GPU job (its issue #316). A resource that is None is not set.
def multinode(wildcards):
    return config["models"][wildcards.model]["nodes"] > 1


def train_nodes(wildcards):
    return config["models"][wildcards.model]["nodes"]


def train_gpu(wildcards):
    return None if multinode(wildcards) else model_gpus(wildcards)


def train_gres(wildcards):
    return f"gpu:{model_gpus(wildcards)}" if multinode(wildcards) and model_gpus(wildcards) else None


def train_tasks(wildcards):
    return train_nodes(wildcards) if multinode(wildcards) else None


def train_mpi(wildcards):
    return "srun" if multinode(wildcards) else None


def train_tasks_per_gpu(wildcards):
    return 0 if multinode(wildcards) else None


def tokenizer_of(wildcards):
    return config["models"][wildcards.model]["tokenizer"]


def model_inputs(wildcards):
    """The shards and tokenizer a model trains on, and the files of the weights it starts from:
    a Hugging Face folder's, or another model's, which makes that model train first."""
    inputs = {"tokenizer": f"results/tokenizers/{tokenizer_of(wildcards)}/spm.model", "manifest": shards_manifest_of(wildcards)}
    init_from = config["models"][wildcards.model]["init_from"]
    if init_from:
        inputs["init_from"] = starting_files(init_from, "results/models")
    return inputs


def tokenizer_model_file(wildcards):
    """A tokenizer given as a SentencePiece file: an input, so that a new file reruns what follows."""
    path = config["tokenizers"][wildcards.tok]["model_file"]
    return [path] if path else []


def shards_manifest_of(wildcards):
    return f"results/shards/{tokenizer_of(wildcards)}/manifest.json"


def hf_folder_files(wildcards):
    return hf_files(f"results/hf/{wildcards.model}")


def eval_task_files(wildcards):
    """The files of the configured lm-eval tasks that the workflow can see: next_line's, which the
    next_line_task rule writes, and the user's task YAML files (an edit reruns the scores)."""
    tasks = config["evals"]["tasks"]
    files = [t for t in tasks if t.endswith(TASK_FILE)]
    if "next_line" in tasks:
        files += ["results/evals/tasks/next_line/next_line.yaml", "results/evals/tasks/next_line/test.jsonl"]
    return files


def trained_model(wildcards):
    """A trained model's folder, as the files a rule reads from it."""
    files = {"weights": "model.safetensors", "config": "config.json", "tokenizer": "tokenizer.model"}
    return {key: f"results/models/{wildcards.model}/{name}" for key, name in files.items()}
