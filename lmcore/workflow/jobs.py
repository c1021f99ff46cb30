"""What the workflow decides for a job from its config entry (rules/common.smk calls these): the params whose
change reruns a job, and a training job's SLURM geometry. Torch-free: the Snakefile reads it while planning."""

from lmcore.train.config import NOT_THE_MATHS

# How a source's documents are read from its files (ingest's keys): a change reruns ingest and what follows,
# and never fetches the corpus again.
READING_KEYS = ("documents", "where", "parts")
FILTER_KEYS = ("quality", "perplexity", "sample")  # read after dedup (lmcore.data.quality): they rerun nothing before


def fetch_params(source):
    """The keys of a source that say which bytes arrive: the download job's param."""
    return {k: v for k, v in source.items() if k not in READING_KEYS + FILTER_KEYS}


def reading_params(source):
    """The keys of a source that say how its files become documents: the ingest jobs' param."""
    return {k: v for k, v in source.items() if k not in FILTER_KEYS}


def train_params(entry):
    """A model's entry as the train job's param, so that a change reruns its training; but for the keys of
    how the run is watched or fits in memory (NOT_THE_MATHS), which the job reads from the config itself."""
    return {k: v for k, v in entry.items() if k not in NOT_THE_MATHS}


def has_corpus_ids(source):
    """Whether a source's ids are the corpus's own (which may repeat), not made from paths and positions."""
    documents = source["documents"]
    return isinstance(documents, dict) and "id" in documents


def eval_gpus(entry):
    """A model trained on GPUs is evaluated on one."""
    return min(1, entry["gpus"])


def slurm_geometry(entry):
    """A training job's resources for snakemake-executor-plugin-slurm; None leaves one unset.

    On one node: `gpu` GPUs (sbatch --gpus) and one task, which the plugin's jobstep starts with `srun -n1`,
    and torchrun runs the processes. Across nodes: --nodes, --gres=gpu:<gpus> (per node, where --gpus counts
    the job's GPUs) and one task per node; `mpi` tells the jobstep that the job starts its own tasks with
    srun (lmcore.train.launch.launch_command); `tasks_per_gpu: 0` keeps the plugin from reading `tasks` as
    --ntasks-per-gpu for a GPU job (the plugin's issue #316)."""
    nodes, gpus = entry["nodes"], entry["gpus"]
    if nodes == 1:
        return {"nodes": 1, "gpu": gpus, "gres": None, "tasks": None, "mpi": None, "tasks_per_gpu": None}
    gres = f"gpu:{gpus}" if gpus else None
    return {"nodes": nodes, "gpu": None, "gres": gres, "tasks": nodes, "mpi": "srun", "tasks_per_gpu": 0}


def lora_base(entry):
    """The model a LoRA entry's PEFT adapter applies to: the model it continues (`init_from: {model:}`); None
    for an entry without LoRA, or one that starts elsewhere (a Hugging Face folder's adapter is its own)."""
    start = entry.get("init_from") or {}
    return start.get("model") if entry.get("lora") else None


def scoring_params(source):
    """What a filtered source's scores depend on: its filters without `keep`, which only the thresholds read (a new
    share reruns the thresholds and the filter, not the classifier nor the scores)."""
    return {
        k: {**source[k], "keep": None} if isinstance(source[k], dict) else source[k]
        for k in ("quality", "perplexity", "sample")
    }


def classifier_params(source):
    """What a source's quality classifier is trained by: its `quality` entry without `keep`."""
    return scoring_params(source)["quality"]
