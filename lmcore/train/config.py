"""How one model is trained: the training keys of a `models.<name>` entry, and the entry read into
the model's and the loop's settings. No torch import: the workflow reads it while it plans."""

from dataclasses import dataclass, field, fields

from lmcore.model.config import ModelConfig


@dataclass(frozen=True)
class TrainConfig:
    """How one model is trained: the training keys of a `models.<name>` entry. Each default is
    the schema's (schemas/config.schema.yaml describes every key; a test keeps the two equal)."""

    batch_size: int = 16  # sequences per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 200
    max_tokens: int | None = None  # when set, max_steps = ceil(max_tokens / tokens per step)
    max_flops: float | None = None  # when set, max_tokens = max_flops / flops_per_token (a scaling study's budget)
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 20
    decay_steps: int | None = None  # the cosine reaches min_lr here; None: at max_steps
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0: no clipping
    divergence_threshold: float | None = 1.5  # x ln(vocab_size), after warm-up
    eval_interval: int = 50
    eval_batches: int = 8
    log_interval: int = 10
    checkpoint_interval: int = 100
    keep_checkpoints: int = 2
    seed: int = 1337
    optimizer_impl: str = "torch"
    optimizer: str = "adamw"  # or muon: Muon on the blocks' matrices, AdamW on the rest
    muon_lr: float = 0.02
    muon_momentum: float = 0.95
    schedule: str = "cosine"  # or wsd
    cooldown: float = 0.2  # wsd: the fraction of decay_steps spent decaying
    max_minutes: float | None = None  # a budget of training-step time: stop at the first step past it
    precision: str = "auto"
    compile: bool | str = "auto"  # auto: on GPUs only (on a CPU it bought 1.006x for a minute of compiling)
    device: str = "auto"
    gpus: int = 0  # per node
    nodes: int = 1
    processes_per_node: int | None = None  # None: gpus, or 1 without GPUs
    parallelism: str = "ddp"  # or fsdp
    activation_checkpointing: bool = False
    loggers: list = field(default_factory=list)  # tensorboard, wandb: lmcore.train.loggers
    wandb_project: str = "lmcore"
    init_from: dict | None = None  # {hf: folder} or {model: name}: the weights to start from
    data: dict = field(default_factory=dict)  # {sources: {name: weight} or None}: what to train on


# Keys that change how a run is watched or fits in memory, not its maths: changing one neither retrains a
# model (the train rule's params leave them out) nor starts a run afresh (lmcore.train.resume.run_key).
NOT_THE_MATHS = ("activation_checkpointing", "loggers", "wandb_project")

ENTRY_ONLY = ("tokenizer", "preset")  # keys of a model entry that the pipeline reads, not the loop


@dataclass(frozen=True)
class TrainJob:
    """One model's training job: its resolved `models.<name>` entry and the files it reads and writes."""

    entry: dict
    tokenizer: str  # results/tokenizer/<name>/tokenizer.model
    manifest: str  # results/shards/<name>/manifest.json
    out_dir: str  # results/models/<model>/: the model folder (lmcore.model.folder)
    checkpoints: str  # results/checkpoints/<model>/
    threads: int = 1  # the job's CPUs on each node
    mem_mb: int | None = None  # the job's memory: a CPU run that would need more stops before its first step


def read_entry(entry):
    """(ModelConfig keywords but vocab_size, TrainConfig) of a resolved `models.<name>` entry.
    A key that neither knows is an error, not a setting silently ignored."""
    model_keys = {f.name for f in fields(ModelConfig)} - {"vocab_size"}
    train_keys = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(entry) - model_keys - train_keys - set(ENTRY_ONLY))
    if unknown:
        raise ValueError(f"unknown model or training settings {unknown}; known: {sorted(model_keys | train_keys)}")
    return {k: v for k, v in entry.items() if k in model_keys}, TrainConfig(
        **{k: v for k, v in entry.items() if k in train_keys}
    )


def processes_per_node(entry):
    """Training processes on each node of a model entry: `processes_per_node`, else `gpus`, else 1."""
    return entry.get("processes_per_node") or max(1, entry.get("gpus", 0))


def world_size(entry):
    """Training processes of a model entry: nodes x processes per node."""
    return entry.get("nodes", 1) * processes_per_node(entry)
