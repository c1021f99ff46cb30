"""The training loop: AdamW or Muon, warm-up + cosine or WSD, gradient accumulation and clipping,
periodic validation on fixed batches, best-validation weights, and checkpoints that resume exactly.

In the shape of torchtitan's Trainer: `setup` builds a `Run` once (model, optimizer and the components
that each decide one thing: lmcore.train.budget how long, lmcore.train.batches what it reads,
lmcore.train.meter what it reports, lmcore.train.checkpoint.Checkpointer when it checkpoints), `fit` is
the loop and nothing else. A run killed and rerun resumes from its newest checkpoint whose configuration,
tokenizer and training code match (lmcore.train.resume), and on a CPU thread ends with the weights of a
run never interrupted. Where it runs (device, precision, DDP, peak FLOP/s) is lmcore.train.runtime; how
its processes start, lmcore.train.launch; the folder it writes, lmcore.model.folder.
"""

import contextlib
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.tensor import DTensor

from lmcore.model.config import ModelConfig
from lmcore.model.folder import save_model
from lmcore.model.gpt import GPT, count_parameters, flops_per_token
from lmcore.tokens.chat import chat_ids
from lmcore.tokens.shards import TokenDataset
from lmcore.tokens.tokenizer import Tokenizer
from lmcore.train.batches import Batches, to_device
from lmcore.train.budget import Budget
from lmcore.train.checkpoint import Checkpointer, list_checkpoints
from lmcore.train.config import TrainConfig, processes_per_node, read_entry
from lmcore.train.distill import Distillation, load_teacher
from lmcore.train.dpo import DPO, PreferencePairs, score_reference
from lmcore.train.init import starting_weights
from lmcore.train.loggers import Loggers
from lmcore.train.lora import add_lora, merge_lora
from lmcore.train.meter import Meter
from lmcore.train.optim import lr_at, make_optimizer
from lmcore.train.parallel import is_sharded, parallelize
from lmcore.train.resume import newest_checkpoint, run_key
from lmcore.train.runtime import (
    autocast,
    autocast_dtype,
    check_memory,
    distributed,
    memory_needed_mb,
    peak_flops,
    pick_device,
    use_compile,
    use_tf32,
)
from lmcore.workflow.joblog import duration


@dataclass
class TrainState:
    """What the loop carries from step to step; a checkpoint saves and restores it by these names."""

    step: int = 0
    tokens: int = 0
    elapsed_s: float = 0.0  # time spent in training steps, evaluation and logging excluded
    best_val: float = math.inf
    best_model: dict | None = None  # weights at best_val, on the CPU
    planned_steps: int | None = None  # with max_minutes: the steps the budget allows, planned once
    wandb_id: str | None = None  # the W&B run a resumed job continues
    metrics: list = field(default_factory=list)  # the rows of metrics.jsonl


@dataclass
class Run:
    """One model's training, set up once by `setup`: the model and its optimizer, and the components that
    each decide one thing (how long: budget; what it reads: batches; what it reports: meter; when it
    checkpoints: checkpointer)."""

    entry: dict  # the model's config entry with max_steps resolved: what checkpoints and config.json record
    train_cfg: TrainConfig
    model: GPT  # sharded in place under fsdp
    forward: torch.nn.Module  # the model as a step calls it: compiled, under DDP, or itself
    validator: torch.nn.Module  # what the validation loss is of: the model (its cross-entropy), or DPO's objective
    optimizer: torch.optim.Optimizer
    val_batches: list  # fixed validation batches, on the device
    device: torch.device
    amp_dtype: torch.dtype | None
    rank: int
    world: int
    counts: dict  # parameters, with and without embeddings
    tokens_per_step: int
    loss_limit: float  # a loss above it after warm-up is a divergence
    budget: Budget
    batches: Batches
    meter: Meter
    checkpointer: Checkpointer
    initial_val_loss: float | None = None  # of the starting weights, for a model continued from others
    job_start: float = field(default_factory=time.perf_counter)
    earlier_jobs_s: float = 0.0  # wall time of the run's earlier attempts, to their last checkpoint

    def amp(self):
        return autocast(self.device, self.amp_dtype)

    def job_s(self):
        """Wall time of the run's attempts so far: set-up, steps, validation and checkpoints."""
        return self.earlier_jobs_s + time.perf_counter() - self.job_start


# The runs of more than one process, referenced until the process exits (lmcore.__main__ leaves with os._exit):
# freeing DDP's reducer after the process group is destroyed destroys the gloo group, which joins its worker thread
# while this thread holds the GIL that the worker waits for to free its last tensors. A torchrun worker hung so.
KEPT = []


class Stopped(Exception):
    """SIGTERM (a cluster's time limit, a user's kill) came: a checkpoint was written. Scripts exit 143."""


class Diverged(FloatingPointError):
    pass


def setup(job, log):
    """Read the data, build the model (from `init_from`'s weights where set), its optimizer and the loop's
    components, and say where it runs; fails on data too small for a window before any step."""
    torch.set_num_threads(job.threads)
    model_keys, train_cfg = read_entry(job.entry)
    tokenizer = Tokenizer(os.fspath(job.tokenizer))
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, **model_keys)
    sources = train_cfg.data.get("sources")  # {name: weight}, or None for every source by its tokens
    manifest = os.fspath(job.manifest)
    answers = chat_ids(tokenizer) if train_cfg.loss == "assistant" or train_cfg.dpo else None  # conversations
    Data = PreferencePairs if train_cfg.dpo else TokenDataset  # DPO: pairs of answers, with the reference's scores
    train_data, val_data = (Data(manifest, s, tokenizer.fingerprint, sources, answers) for s in ("train", "validation"))
    for data in (train_data, val_data, TokenDataset(manifest, "test", tokenizer.fingerprint)):
        data.check_window(cfg.context_length)  # evaluate reads test: fail now, not after training
    for stream in (*train_data.streams, *val_data.streams) if answers else ():
        (train_data if stream in train_data.streams else val_data).conversation_starts(stream)  # none: fail now

    rank, world, device = distributed(pick_device(train_cfg.device))
    say = log if rank == 0 else lambda message: None  # what one process says for all
    amp_dtype = autocast_dtype(train_cfg.precision, device)
    use_tf32(device)
    random.seed(train_cfg.seed)
    np.random.seed(train_cfg.seed)
    torch.manual_seed(train_cfg.seed)
    model = GPT(cfg)
    models_dir = os.path.dirname(os.path.abspath(job.out_dir))  # results/models/: where init_from's {model: name} is
    if train_cfg.init_from:
        where, weights = starting_weights(train_cfg.init_from, model, models_dir, tokenizer)
        model.load_state_dict(weights, strict=not cfg.tie_embeddings)
        log(f"starting from the weights of {where}")
    counts = count_parameters(model)
    token_flops = flops_per_token(cfg, counts["non_embedding_parameters"])
    model = model.to(device)
    counts["trainable_parameters"] = add_lora(model, train_cfg.lora) if train_cfg.lora else counts["parameters"]
    model.checkpoint_activations(train_cfg.activation_checkpointing)
    objective = model  # what a step calls for its loss: the model's own cross-entropy, distillation's or DPO's
    if train_cfg.dpo:
        score_reference(
            train_cfg.dpo, models_dir, (train_data, val_data), tokenizer, cfg.context_length, device, amp_dtype, say
        )
        objective = DPO(model, train_cfg.dpo["beta"])
    if train_cfg.distill:
        teacher = load_teacher(train_cfg.distill, models_dir, tokenizer, cfg.context_length, device)
        objective = Distillation(model, teacher, train_cfg.distill["temperature"], train_cfg.distill["alpha"])
        teacher_size = count_parameters(teacher)["parameters"]
        log(f"distilling {train_cfg.distill['teacher']['model']} ({teacher_size:,} parameters)")
    forward = parallelize(
        objective, train_cfg.parallelism, world, device, amp_dtype, use_compile(train_cfg.compile, device)
    )  # before the optimizer: fsdp replaces the parameters by their shards
    optimizer = make_optimizer(model, train_cfg)

    rows = 2 if train_cfg.dpo else 1  # DPO: a pair is two rows, the chosen and the rejected conversation
    tokens_per_step = rows * train_cfg.batch_size * cfg.context_length * train_cfg.grad_accum * world
    max_tokens = train_cfg.max_flops / token_flops if train_cfg.max_flops else train_cfg.max_tokens
    max_steps = math.ceil(max_tokens / tokens_per_step) if max_tokens else train_cfg.max_steps
    entry = {**job.entry, "max_steps": max_steps}
    val_rng = np.random.default_rng(train_cfg.seed + 1)
    val_batches = [
        to_device(val_data.sample_batch(val_rng, train_cfg.batch_size, cfg.context_length), device)
        for _ in range(train_cfg.eval_batches)
    ]
    # A loss far above ln(vocab_size), the loss of a uniform guess, after warm-up: the run diverged.
    loss_limit = (
        train_cfg.divergence_threshold * math.log(cfg.vocab_size) if train_cfg.divergence_threshold else math.inf
    )
    peak, peak_source = peak_flops(device, amp_dtype)
    batches = Batches(
        train_data, train_cfg.seed, train_cfg.batch_size, cfg.context_length, train_cfg.grad_accum, rank, world, device
    )
    key = run_key(entry, tokenizer.fingerprint, models_dir)
    checkpointer = Checkpointer(
        os.fspath(job.checkpoints), key, train_cfg.checkpoint_interval, train_cfg.keep_checkpoints, model, optimizer,
        rank, is_sharded(model),
    )  # fmt: skip
    run = Run(
        entry=entry, train_cfg=train_cfg, model=model, forward=forward, optimizer=optimizer, val_batches=val_batches,
        validator=objective if train_cfg.dpo else model,
        device=device, amp_dtype=amp_dtype, rank=rank, world=world, counts=counts, tokens_per_step=tokens_per_step,
        loss_limit=loss_limit, budget=Budget(max_steps, train_cfg.max_minutes, world, device, say), batches=batches,
        meter=Meter(token_flops, peak, peak_source, train_cfg.log_interval, say), checkpointer=checkpointer,
    )  # fmt: skip
    if train_cfg.init_from:  # what the starting weights bring
        run.initial_val_loss = estimate_loss(run.validator, val_batches, run.amp)
        metrics(run, "val_")
        log(f"validation loss of the starting weights: {run.initial_val_loss:.4f}")
    return run


def restore(run, ck):
    """The TrainState to go on from: a checkpoint's (None: a fresh start), with the model, optimizer, RNGs,
    data position and the run's earlier time restored; the budget takes up the run's plan."""
    state = TrainState()
    if ck is not None:
        run.checkpointer.load(ck)
        run.batches.load_state_dict(ck["data"])
        run.earlier_jobs_s = ck["job_s"]
        state = TrainState(**{f.name: ck[f.name] for f in fields(TrainState)})
    run.budget.start(state)
    return state


def preflight(run, state, mem_mb, log):
    """Say what the run will need before its first step; stop a CPU run that would not fit `mem_mb`."""
    train_cfg, cfg = run.train_cfg, run.model.cfg
    if run.rank == 0:
        log(
            f"{run.counts['parameters']:,} parameters on {run.device} ({run.amp_dtype or torch.float32}) in "
            f"{run.world} process{'es' if run.world > 1 else ''}; peak {run.meter.peak / 1e9:,.1f} GFLOP/s, "
            f"{run.meter.peak_source}"
        )
    if train_cfg.lora and run.rank == 0:
        trainable, total = run.counts["trainable_parameters"], run.counts["parameters"]
        log(
            f"LoRA rank {train_cfg.lora['rank']} on {', '.join(train_cfg.lora['targets'])}: {trainable:,} trainable "
            f"parameters, {trainable / total:.2%} of {total:,}; AdamW's moments {8 * trainable / 1e6:,.2f} MB "
            f"(of every weight: {8 * total / 1e6:,.1f} MB)"
        )
    if run.device.type == "cpu" and run.rank == 0:  # a GPU's memory is its own; the job's mem_mb is the host's
        need = memory_needed_mb(
            run.counts["parameters"],
            train_cfg.batch_size * cfg.context_length,
            cfg,
            processes_per_node(run.entry),
            shards=run.world if is_sharded(run.model) else 1,
            checkpointed=train_cfg.activation_checkpointing,
            trainable=run.counts["trainable_parameters"],
        )
        check_memory(need, mem_mb, train_cfg.batch_size, cfg, log)
    step_flops = run.meter.flops_per_token * run.tokens_per_step
    step_s = step_flops / run.world / run.meter.peak  # each process computes its share
    left = run.budget.max_steps - state.step
    if run.rank == 0:
        log(
            f"one step: {run.tokens_per_step:,} tokens, {step_flops:.3g} FLOPs, "
            f"{f'{step_s:.3g} s' if step_s < 60 else duration(step_s)} at the peak (a step takes 2-3 times that); "
            f"{left:,} steps to go: at least {duration(step_s * left)}"
        )


def train_step(forward, micro_batches, amp, no_sync=None):
    """Forward and backward over the micro-batches of one optimizer step; returns their mean loss
    as a 0-d tensor (left on the device: reading it waits for the GPU).

    Each loss is divided by the number of micro-batches, so the summed gradients are those
    of the mean over all of them, as if they were one batch. Under DDP, `no_sync` skips the
    gradient all-reduce for every micro-batch but the last.
    """
    total = 0.0
    for i, batch in enumerate(micro_batches):  # (x, y), or (x, y, segments) for packed conversations
        last = i == len(micro_batches) - 1
        with no_sync() if no_sync and not last else contextlib.nullcontext():
            with amp():
                loss = forward(*batch)[1] / len(micro_batches)
            loss.backward()
        total = total + loss.detach().float()
    return total


@torch.no_grad()
def estimate_loss(model, batches, amp):
    """The mean loss over fixed batches; the plain model (a compiled one would compile a graph for eval)."""
    model.eval()
    losses = []
    for batch in batches:
        with amp():
            losses.append(model(*batch)[1].item())
    model.train()
    return sum(losses) / len(losses)


def check_divergence(loss, step, lr, limit, ckpt_dir):
    """Stop a run whose loss is not finite or above `limit`, naming the step, loss, lr and the newest
    checkpoint from before that step (a checkpoint of this step holds the weights that gave the loss)."""
    if math.isfinite(loss) and loss <= limit:
        return
    before = [p for p in list_checkpoints(ckpt_dir) if int(os.path.basename(p)[5:13]) < step]
    raise Diverged(
        f"training diverged at step {step}: loss {loss:.4g} (limit {limit:.4g}, divergence_threshold x ln(vocab_size)) "
        f"with lr {lr:.3g}; newest checkpoint before that step: {before[-1] if before else 'none'}. Lower lr, lengthen "
        f"warmup_steps or lower grad_clip, then rerun (other settings train afresh)."
    )


class StopSignal:
    """Set by SIGTERM: the loop checkpoints and stops at the end of the step."""

    def __init__(self):
        self.requested = False
        with contextlib.suppress(ValueError):  # only the main thread may install handlers
            signal.signal(signal.SIGTERM, self._handler)

    def _handler(self, signum, frame):
        self.requested = True


def metrics(run, prefix=""):
    """The objective's own figures since they were last read (DPO's rewards, as TRL names them), else none."""
    return run.validator.metrics(prefix) if hasattr(run.validator, "metrics") else {}


def validate(run, state):
    """The validation loss now; the weights are kept when it is the best so far (under fsdp gathered
    by every process, kept by rank 0)."""
    val_loss = estimate_loss(run.validator, run.val_batches, run.amp)
    if val_loss < state.best_val:
        state.best_val, state.best_model = val_loss, full_weights(run.model)
    return val_loss


def full_weights(model):
    """The model's whole weights on the CPU: gathered from the shards under fsdp (a collective; ranks
    other than 0 get an empty dict), copied otherwise."""
    if is_sharded(model):
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(model, options=options)
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}


def set_lr(run, step):
    """The schedule's lr at `step` (lmcore.train.optim.lr_at); each parameter group takes its own peak
    (Muon's and AdamW's) times the schedule's fraction of lr. Returns the schedule's lr."""
    lr = lr_at(step, run.train_cfg, run.budget.max_steps)
    for group in run.optimizer.param_groups:
        group["lr"] = group["peak_lr"] * lr / run.train_cfg.lr
    return lr


def reduce_and_clip(run, mean_loss, stop):
    """(loss averaged over the ranks, gradient norm before clipping, whether any rank was sent SIGTERM),
    the gradients clipped; one wait for the GPU. The processes stop at the same step, since a sharded
    checkpoint is written by all of them together."""
    if run.world > 1:
        both = torch.stack([mean_loss, torch.tensor(float(stop.requested), device=mean_loss.device)])
        dist.all_reduce(both)
        mean_loss, stopping = both[0] / run.world, both[1]
    else:
        stopping = torch.tensor(float(stop.requested), device=mean_loss.device)
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.train_cfg.grad_clip or math.inf)
    if isinstance(grad_norm, DTensor):  # fsdp: the norm over every shard
        grad_norm = grad_norm.full_tensor()
    loss, grad_norm, stopping = torch.stack([mean_loss, grad_norm.float(), stopping]).tolist()
    return loss, grad_norm, stopping > 0


def fit(run, state):
    """The loop: optimizer steps until the budget says done, with validation, a progress line and a
    checkpoint at their intervals. Raises Diverged on a loss that is not finite or too high, Stopped after
    SIGTERM's checkpoint."""
    cfg, stop = run.train_cfg, StopSignal()
    no_sync = gradient_sync_off(run) if run.world > 1 else None
    run.model.train()
    while not run.budget.done(state):
        t0 = time.perf_counter()
        lr = set_lr(run, state.step)
        mean_loss = train_step(run.forward, run.batches.take(), run.amp, no_sync)
        if state.step + 1 < run.budget.max_steps:  # on a GPU the step is only queued: draw the next meanwhile
            run.batches.prefetch()
        loss, grad_norm, stopping = reduce_and_clip(run, mean_loss, stop)
        limit = run.loss_limit if state.step >= cfg.warmup_steps else math.inf
        check_divergence(loss, state.step, lr, limit, run.checkpointer.folder)
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
        step_s = time.perf_counter() - t0
        state.step += 1
        state.tokens += run.tokens_per_step
        state.elapsed_s += step_s

        run.budget.update(state, step_s)
        run.meter.step(state, run.tokens_per_step, step_s)
        validating = state.step % cfg.eval_interval == 0 or run.budget.done(state)
        extra = metrics(run) if validating or state.step % cfg.log_interval == 0 else {}  # since the last row
        val_loss = validate(run, state) if validating else None
        extra |= metrics(run, "val_") if validating else {}
        run.meter.report(state, run.budget.max_steps, loss, val_loss, lr, grad_norm, extra)
        run.checkpointer.maybe_save(state, run.batches, run.job_s(), stopping)
        if stopping:
            raise Stopped(f"SIGTERM: checkpoint written at step {state.step}; rerun to resume")


def gradient_sync_off(run):
    """A context in which backward passes keep gradients local: every micro-batch but a step's last."""
    if not is_sharded(run.model):
        return run.forward.no_sync

    @contextlib.contextmanager
    def unsynced():
        run.model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            run.model.set_requires_gradient_sync(True)

    return unsynced


def optimizer_state_bytes(optimizer):
    """Bytes of the tensors an optimizer keeps (AdamW's moments, Muon's momentum)."""
    return sum(
        t.numel() * t.element_size()
        for opt in getattr(optimizer, "optimizers", [optimizer])
        for per_param in opt.state.values()
        for t in per_param.values()
        if torch.is_tensor(t)
    )


def summarize(run, state):
    """summary.json: size, tokens, FLOPs, time, throughput and the best validation loss."""
    elapsed, token_flops = state.elapsed_s, run.meter.flops_per_token
    return {
        **run.counts,
        "tokens_seen": state.tokens,
        "tokens_per_parameter": state.tokens / run.counts["parameters"],
        "flops_per_token": token_flops,
        "total_flops": token_flops * state.tokens,
        "step_time_s": elapsed,  # the optimizer steps alone: what tokens/s and MFU count
        "data_time_s": run.batches.seconds,  # of which drawing batches (on a GPU, while the step before computes)
        "job_time_s": run.job_s(),  # set-up, validation, checkpoints too
        "tokens_per_s": state.tokens / elapsed if elapsed else None,
        "mfu": run.meter.mfu(state.tokens / elapsed) if elapsed else None,
        "peak_flops": run.meter.peak,
        "peak_source": run.meter.peak_source,
        "optimizer_state_mb": optimizer_state_bytes(run.optimizer) / 1e6,  # the moments: LoRA's alone with lora
        "best_val_loss": state.best_val,
        "initial_val_loss": run.initial_val_loss,
        "device": str(run.device),
        "precision": str(run.amp_dtype or torch.float32),
        "steps": state.step,
        "planned_steps": state.planned_steps,  # with max_minutes: what the budget was expected to allow
    }


def train(job, log=print):
    """Train one model (a TrainJob: its resolved config entry and files); write its folder
    (lmcore.model.folder) and return its summary."""
    run = setup(job, log)
    if run.rank == 0:
        os.makedirs(run.checkpointer.folder, exist_ok=True)
    state = restore(run, newest_checkpoint(run.checkpointer.folder, run.checkpointer.key, run.rank, log))
    preflight(run, state, job.mem_mb, log)
    loggers = None
    if run.train_cfg.loggers and run.rank == 0:
        loggers = Loggers(run.train_cfg.loggers, job.out_dir, run.entry, state.step, state.wandb_id)
        state.wandb_id, run.meter.loggers = loggers.wandb_id, loggers
    try:
        fit(run, state)
    except BaseException:
        if loggers:
            loggers.close()
        raise
    if is_sharded(run.model):  # rank 0 writes the best weights from a whole copy, as any other run's
        run.model = GPT(run.model.cfg) if run.rank == 0 else None
    if run.world > 1:
        KEPT.append(run)  # see KEPT
        dist.destroy_process_group()
        if run.rank != 0:
            return None
    run.model.load_state_dict(state.best_model)
    if run.train_cfg.lora:  # the folder holds a plain model: the updates folded into their weights
        merge_lora(run.model)
    summary = summarize(run, state)
    run.meter.close(run.device, run.amp_dtype)
    if state.elapsed_s:
        log(
            f"{state.step} steps in {duration(state.elapsed_s)}; drawing batches took "
            f"{run.batches.seconds / state.elapsed_s:.1%} of it"
        )
    save_model(job.out_dir, run.model, run.entry, job.tokenizer, state.metrics, summary)
    if loggers:
        loggers.finish(summary)
    return summary
