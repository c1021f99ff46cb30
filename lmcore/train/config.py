"""How one model is trained: the training keys of a `models.<name>` entry, and the entry read into
the model's and the loop's settings. No torch import: the workflow reads it while it plans."""

from dataclasses import dataclass, fields

from lmcore.model.config import ModelConfig
from lmcore.schema import schema_defaults


@dataclass(frozen=True)
@schema_defaults
class TrainConfig:
    """How one model is trained: the training keys of a `models.<name>` entry. Each field takes the
    schema's default for its key (schemas/config.schema.yaml describes every key; lmcore.schema)."""

    batch_size: int  # sequences per micro-batch
    grad_accum: int  # micro-batches per optimizer step
    max_steps: int
    max_tokens: int | None  # when set, max_steps = ceil(max_tokens / tokens per step)
    max_flops: float | None  # when set, max_tokens = max_flops / flops_per_token (a scaling study's budget)
    lr: float
    min_lr: float
    warmup_steps: int
    decay_steps: int | None  # the cosine reaches min_lr here; None: at max_steps
    weight_decay: float
    beta1: float
    beta2: float
    grad_clip: float  # 0: no clipping
    divergence_threshold: float | None  # x ln(vocab_size), after warm-up
    eval_interval: int
    eval_batches: int
    log_interval: int
    checkpoint_interval: int
    keep_checkpoints: int
    seed: int
    optimizer_impl: str
    optimizer: str  # or muon: Muon on the blocks' matrices, AdamW on the rest
    muon_lr: float
    muon_momentum: float
    schedule: str  # or wsd
    cooldown: float  # wsd: the fraction of decay_steps spent decaying
    max_minutes: float | None  # a budget of training-step time: stop at the first step past it
    precision: str
    compile: bool | str  # auto: on GPUs only (on a CPU it bought 1.006x for a minute of compiling)
    device: str
    gpus: int  # per node
    nodes: int
    processes_per_node: int | None  # None: gpus, or 1 without GPUs
    parallelism: str  # or fsdp
    activation_checkpointing: bool
    loggers: list  # tensorboard, wandb: lmcore.train.loggers
    wandb_project: str
    loss: str  # all, or assistant: SFT on conversations' answers (lmcore.tokens.chat)
    lora: dict | None  # {rank, alpha, dropout, targets}: lmcore.train.lora
    init_from: dict | None  # {hf: folder} or {model: name}: the weights to start from
    distill: dict | None  # {teacher: {model: name}, temperature, alpha}: lmcore.train.distill
    dpo: dict | None  # {beta, reference: {model: name}}: lmcore.train.dpo
    data: dict  # {sources: {name: weight} or None}: what to train on


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
