"""The training loop: AdamW, warm-up + cosine, gradient accumulation and clipping, periodic
validation on fixed batches, best-validation weights, and checkpoints that resume exactly.

In the shape of litgpt's pretrain: `setup` builds a `Run` once (data, model, optimizer, where it
runs and for how long), `fit` is the loop and nothing else, `validate`, `save` and `summarize`
are apart. A run killed and rerun resumes from its newest checkpoint whose configuration,
tokenizer and training code match (lmcore.train.resume), and on a CPU thread ends with the weights of a run
never interrupted: the checkpoint holds model, optimizer, every RNG state, the data position
and the `TrainState`. Where it runs (device, precision, DDP, peak FLOP/s) is lmcore.train.runtime;
the folder it writes, lmcore.model.folder.
"""

import contextlib
import json
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
from lmcore.tokens.shards import TokenDataset
from lmcore.tokens.tokenizer import Tokenizer
from lmcore.train.checkpoint import (
    list_checkpoints,
    load_sharded,
    rng_state,
    save_checkpoint,
    save_sharded,
    set_rng_state,
)
from lmcore.train.config import TrainConfig, processes_per_node, read_entry
from lmcore.train.init import starting_weights
from lmcore.train.loggers import Loggers
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
    record_peak,
    use_compile,
    use_tf32,
)
from lmcore.workflow.joblog import duration, progress_line


@dataclass
class TrainState:
    """What the loop carries from step to step; a checkpoint saves and restores it by these names."""

    step: int = 0
    tokens: int = 0
    elapsed_s: float = 0.0  # time spent in training steps, evaluation and logging excluded
    data_s: float = 0.0  # the part of elapsed_s spent drawing batches and copying them to the device
    job_s: float = 0.0  # wall time of this run's attempts so far (set-up, steps, validation, checkpoints)
    best_val: float = math.inf
    best_model: dict | None = None  # weights at best_val, on the CPU
    planned_steps: int | None = None  # with max_minutes: the steps the budget allows, planned once
    wandb_id: str | None = None  # the W&B run a resumed job continues
    metrics: list = field(default_factory=list)  # the rows of metrics.jsonl


@dataclass
class Run:
    """One model's training, set up once by `setup`."""

    entry: dict  # the model's config entry with max_steps resolved: what checkpoints and config.json record
    train_cfg: TrainConfig
    model: GPT  # sharded in place under fsdp
    forward: torch.nn.Module  # the model as a step calls it: compiled, under DDP, or itself
    optimizer: torch.optim.Optimizer
    train_data: TokenDataset
    val_batches: list  # fixed validation batches, on the device
    data_rng: np.random.Generator  # draws the training batches: its state is the data position
    device: torch.device
    amp_dtype: torch.dtype | None
    rank: int
    world: int
    counts: dict  # parameters, with and without embeddings
    flops_per_token: float
    max_steps: int
    key: str  # what a checkpoint must match to be resumed (lmcore.train.resume.run_key)
    ckpt_dir: str
    loss_limit: float  # a loss above it after warm-up is a divergence
    peak: float  # FLOP/s that MFU is measured against
    peak_source: str
    initial_val_loss: float | None  # of the starting weights, for a model continued from others
    job_start: float = field(default_factory=time.perf_counter)
    loggers: Loggers | None = None  # rank 0's TensorBoard and W&B, where the entry asks for them

    @property
    def tokens_per_step(self):
        return self.train_cfg.batch_size * self.model.cfg.context_length * self.train_cfg.grad_accum * self.world

    def amp(self):
        return autocast(self.device, self.amp_dtype)

    def mfu(self, tokens_per_s):
        """Model FLOPs utilisation. A rate above the peak becomes the peak, here and in the machine's cache
        (lmcore.train.runtime.record_peak), so that no MFU is above 1."""
        if self.flops_per_token * tokens_per_s > self.peak:
            self.peak, self.peak_source = (
                self.flops_per_token * tokens_per_s,
                "the rate this run reached, above the peak measured before",
            )
            record_peak(self.device, self.amp_dtype, self.peak)
        return self.flops_per_token * tokens_per_s / self.peak


class Stopped(Exception):
    """SIGTERM (a cluster's time limit, a user's kill) came: a checkpoint was written. Scripts exit 143."""


class Diverged(FloatingPointError):
    pass


def setup(entry, tokenizer_path, manifest_path, out_dir, ckpt_dir, threads, log):
    """Read the data, build the model (from `init_from`'s weights where set) and its optimizer, and say where
    it runs; fails on data too small for a window before any step."""
    torch.set_num_threads(threads)
    model_keys, train_cfg = read_entry(entry)
    tokenizer = Tokenizer(tokenizer_path)
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, **model_keys)
    sources = train_cfg.data.get("sources")  # {name: weight}, or None for every source by its tokens
    train_data, val_data = (
        TokenDataset(manifest_path, s, tokenizer.fingerprint, sources) for s in ("train", "validation")
    )
    for data in (train_data, val_data, TokenDataset(manifest_path, "test", tokenizer.fingerprint)):
        data.check_window(cfg.context_length)  # evaluate reads test: fail now, not after training

    rank, world, device = distributed(pick_device(train_cfg.device))
    amp_dtype = autocast_dtype(train_cfg.precision, device)
    use_tf32(device)
    random.seed(train_cfg.seed)
    np.random.seed(train_cfg.seed)
    torch.manual_seed(train_cfg.seed)
    model = GPT(cfg)
    models_dir = os.path.dirname(os.path.abspath(out_dir))  # results/models/: where init_from's {model: name} is
    if train_cfg.init_from:
        where, weights = starting_weights(train_cfg.init_from, model, models_dir, tokenizer)
        model.load_state_dict(weights, strict=not cfg.tie_embeddings)
        log(f"starting from the weights of {where}")
    counts = count_parameters(model)
    token_flops = flops_per_token(cfg, counts["non_embedding_parameters"])
    model = model.to(device)
    model.checkpoint_activations(train_cfg.activation_checkpointing)
    forward = parallelize(
        model, train_cfg.parallelism, world, device, amp_dtype, use_compile(train_cfg.compile, device)
    )  # before the optimizer: fsdp replaces the parameters by their shards
    optimizer = make_optimizer(
        model, train_cfg.lr, (train_cfg.beta1, train_cfg.beta2), train_cfg.weight_decay, train_cfg.optimizer_impl,
        train_cfg.optimizer, train_cfg.muon_lr, train_cfg.muon_momentum,
    )  # fmt: skip

    tokens_per_step = train_cfg.batch_size * cfg.context_length * train_cfg.grad_accum * world
    max_tokens = train_cfg.max_flops / token_flops if train_cfg.max_flops else train_cfg.max_tokens
    max_steps = math.ceil(max_tokens / tokens_per_step) if max_tokens else train_cfg.max_steps
    entry = {**entry, "max_steps": max_steps}
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
    run = Run(
        entry,
        train_cfg,
        model,
        forward,
        optimizer,
        train_data,
        val_batches,
        np.random.default_rng(train_cfg.seed),
        device,
        amp_dtype,
        rank,
        world,
        counts,
        token_flops,
        max_steps,
        run_key(entry, tokenizer.fingerprint, models_dir),
        os.fspath(ckpt_dir),
        loss_limit,
        peak,
        peak_source,
        None,
    )
    if train_cfg.init_from:  # what the starting weights bring
        run.initial_val_loss = estimate_loss(model, val_batches, run.amp)
        log(f"validation loss of the starting weights: {run.initial_val_loss:.4f}")
    return run


def restore(run, ck):
    """Model, optimizer, RNGs and TrainState from a checkpoint's contents (None: a fresh start)."""
    if ck is None:
        return TrainState()
    if ck.get("sharded"):
        load_sharded(ck["sharded"], run.model, run.optimizer)
    else:
        run.model.load_state_dict(ck["model"])
        run.optimizer.load_state_dict(ck["optimizer"])
    set_rng_state(ck["rng"])
    run.data_rng.bit_generator.state = json.loads(ck["data_rng"])
    state = TrainState(**{f.name: ck[f.name] for f in fields(TrainState)})
    run.max_steps = state.planned_steps or run.max_steps
    return state


def preflight(run, state, mem_mb, log):
    """Say what the run will need before its first step; stop a CPU run that would not fit `mem_mb`."""
    train_cfg, cfg = run.train_cfg, run.model.cfg
    if run.rank == 0:
        log(
            f"{run.counts['parameters']:,} parameters on {run.device} ({run.amp_dtype or torch.float32}) in "
            f"{run.world} process{'es' if run.world > 1 else ''}; peak {run.peak / 1e9:,.1f} GFLOP/s, {run.peak_source}"
        )
    if run.device.type == "cpu" and run.rank == 0:  # a GPU's memory is its own; the job's mem_mb is the host's
        need = memory_needed_mb(
            run.counts["parameters"],
            train_cfg.batch_size * cfg.context_length,
            cfg,
            processes_per_node(run.entry),
            shards=run.world if is_sharded(run.model) else 1,
            checkpointed=train_cfg.activation_checkpointing,
        )
        check_memory(need, mem_mb, train_cfg.batch_size, cfg, log)
    step_s = run.flops_per_token * run.tokens_per_step / run.world / run.peak  # each process computes its share
    left = run.max_steps - state.step
    if run.rank == 0:
        log(
            f"one step: {run.tokens_per_step:,} tokens, {run.flops_per_token * run.tokens_per_step:.3g} FLOPs, "
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
    for i, (x, y) in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        with no_sync() if no_sync and not last else contextlib.nullcontext():
            with amp():
                loss = forward(x, y)[1] / len(micro_batches)
            loss.backward()
        total = total + loss.detach().float()
    return total


@torch.no_grad()
def estimate_loss(model, batches, amp):
    """The mean loss over fixed batches; the plain model (a compiled one would compile a graph for eval)."""
    model.eval()
    losses = []
    for x, y in batches:
        with amp():
            losses.append(model(x, y)[1].item())
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


def to_device(arrays, device):
    """Host arrays to the device; to a GPU from pinned memory, without waiting for the copy."""
    if device.type == "cuda":
        return tuple(torch.from_numpy(a).pin_memory().to(device, non_blocking=True) for a in arrays)
    return tuple(torch.from_numpy(a).to(device) for a in arrays)


def draw_batches(run, state):
    """One step's micro-batches, on the device. Every rank draws the same global batch and reads and trains on
    its own slice of it, so that N processes take the step one process would take on the whole batch."""
    start = time.perf_counter()
    B, T, r = run.train_cfg.batch_size, run.model.cfg.context_length, run.rank
    micro_batches = []
    for _ in range(run.train_cfg.grad_accum):
        x, y = run.train_data.sample_batch(run.data_rng, B * run.world, T, rows=slice(r * B, (r + 1) * B))
        micro_batches.append(to_device((x, y), run.device))
    state.data_s += time.perf_counter() - start
    return micro_batches


def validate(run, state):
    """The validation loss now; the weights are kept when it is the best so far (under fsdp gathered
    by every process, kept by rank 0)."""
    val_loss = estimate_loss(run.model, run.val_batches, run.amp)
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


def save(run, state, data_position, earlier_jobs_s):
    """A checkpoint of the run after `state.step` steps, called by every process; `data_position` is where
    the data stream stands for the next step. Sharded under fsdp (every process writes), else rank 0's."""
    state.job_s = earlier_jobs_s + time.perf_counter() - run.job_start
    loop = {"run_key": run.key, "data_rng": json.dumps(data_position), **vars(state)}
    if is_sharded(run.model):
        save_sharded(run.ckpt_dir, state.step, run.model, run.optimizer, loop, run.train_cfg.keep_checkpoints)
    elif run.rank == 0:
        saved = {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(), "rng": rng_state(), **loop}
        save_checkpoint(run.ckpt_dir, state.step, saved, run.train_cfg.keep_checkpoints)


def set_lr(run, step):
    """Warm-up, cosine or WSD, then min_lr (lmcore.train.optim.lr_at); each parameter group takes its own peak
    (Muon's and AdamW's) times the schedule's fraction of lr. Returns the schedule's lr."""
    cfg = run.train_cfg
    lr = lr_at(step, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.decay_steps or run.max_steps, cfg.schedule, cfg.cooldown)
    for group in run.optimizer.param_groups:
        group["lr"] = group["peak_lr"] * lr / cfg.lr
    return lr


# max_minutes plans the schedule once an attempt has timed this many steps after its first, and this share
# of the budget: a default model's first 10 steps ran 12% slower than its average (2026-11-30, Xeon).
PLAN_AFTER, PLAN_SHARE = 10, 0.05


def agree(run, value, op):
    """`value` reduced over the processes with `op` (a dist.ReduceOp), so that every process takes the same
    decision from its own clock; the value itself in a single process."""
    if run.world == 1:
        return value
    t = torch.tensor(float(value), device=run.device)
    dist.all_reduce(t, op=op)
    return t.item()


def plan_budget(run, state, timed_steps, timed_s, log):
    """With max_minutes, once PLAN_AFTER steps and PLAN_SHARE of the budget are timed (by every process): the
    steps the rest of the budget allows at their rate (the slowest process's), at most max_steps; kept in the
    state, so that a resumed run keeps its schedule."""
    budget = run.train_cfg.max_minutes * 60
    if state.planned_steps is not None:
        return
    if not agree(run, timed_steps >= PLAN_AFTER and timed_s >= PLAN_SHARE * budget, dist.ReduceOp.MIN):
        return
    steps_left = agree(run, max(1, int((budget - state.elapsed_s) * timed_steps / timed_s)), dist.ReduceOp.MIN)
    state.planned_steps = min(run.max_steps, state.step + int(steps_left))
    run.max_steps = state.planned_steps
    if run.rank == 0:
        step_s = timed_s / timed_steps
        log(f"max_minutes {run.train_cfg.max_minutes:g}: {step_s:.3g} s a step, {run.max_steps:,} steps planned")


def over_budget(run, state):
    """Whether the budget of step time is spent: on any process, so that all stop at the same step."""
    if run.train_cfg.max_minutes is None:
        return False
    return bool(agree(run, state.elapsed_s >= run.train_cfg.max_minutes * 60, dist.ReduceOp.MAX))


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


def fit(run, state, log):
    """The loop: optimizer steps to max_steps, with validation, a progress line and a checkpoint at their
    intervals. Raises Diverged on a loss that is not finite or too high, Stopped after SIGTERM's checkpoint."""
    cfg, stop, earlier_jobs_s = run.train_cfg, StopSignal(), state.job_s
    no_sync = gradient_sync_off(run) if run.world > 1 else None
    run.model.train()
    window_tokens, window_start = 0, time.perf_counter()  # tokens/s over the steps since the last progress line
    data_position = run.data_rng.bit_generator.state  # where the data stream stands for the next step
    micro_batches = draw_batches(run, state) if state.step < run.max_steps else None
    first_step = state.step + 1
    timed_steps, timed_s = 0, 0.0  # this attempt's steps after its first, for max_minutes's plan
    spent = over_budget(run, state)  # a run resumed past its budget takes no step
    while state.step < run.max_steps and not spent:
        t0 = time.perf_counter()
        lr = set_lr(run, state.step)
        mean_loss = train_step(run.forward, micro_batches, run.amp, no_sync)
        # On a GPU the step is only queued so far: the next step's batches are drawn and copied meanwhile.
        data_position = run.data_rng.bit_generator.state
        micro_batches = draw_batches(run, state) if state.step + 1 < run.max_steps else None
        loss, grad_norm, stopping = reduce_and_clip(run, mean_loss, stop)
        check_divergence(
            loss, state.step, lr, run.loss_limit if state.step >= cfg.warmup_steps else math.inf, run.ckpt_dir
        )
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.tokens += run.tokens_per_step
        window_tokens += run.tokens_per_step
        step_s = time.perf_counter() - t0
        state.elapsed_s += step_s
        if state.step == first_step:  # a person sees the run is under way; its time is not the steps' rate
            if run.rank == 0 and cfg.log_interval > 1:
                log(f"step {state.step} took {step_s:.3g} s; progress every {cfg.log_interval} steps")
        elif cfg.max_minutes is not None:
            timed_steps, timed_s = timed_steps + 1, timed_s + step_s
            plan_budget(run, state, timed_steps, timed_s, log)

        spent = over_budget(run, state)
        last = state.step == run.max_steps or spent
        val_loss = validate(run, state) if state.step % cfg.eval_interval == 0 or last else None
        if state.step % cfg.log_interval == 0 or val_loss is not None:
            tokens_per_s = window_tokens / (time.perf_counter() - window_start)
            row = dict(step=state.step, tokens=state.tokens, loss=loss, val_loss=val_loss, lr=lr, grad_norm=grad_norm,
                       tokens_per_s=tokens_per_s, mfu=run.mfu(tokens_per_s), elapsed_s=state.elapsed_s)  # fmt: skip
            state.metrics.append(row)
            if run.rank == 0:
                log(progress_line(row, run.max_steps, state.elapsed_s))
            if run.loggers:
                run.loggers.log(row)
            window_tokens, window_start = 0, time.perf_counter()
        if state.step % cfg.checkpoint_interval == 0 or stopping:
            save(run, state, data_position, earlier_jobs_s)
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


def summarize(run, state, earlier_jobs_s):
    """summary.json: size, tokens, FLOPs, time, throughput and the best validation loss."""
    elapsed, token_flops = state.elapsed_s, run.flops_per_token
    return {
        **run.counts,
        "tokens_seen": state.tokens,
        "tokens_per_parameter": state.tokens / run.counts["parameters"],
        "flops_per_token": token_flops,
        "total_flops": token_flops * state.tokens,
        "step_time_s": elapsed,  # the optimizer steps alone: what tokens/s and MFU count
        "data_time_s": state.data_s,  # of which drawing batches (on a GPU, while the step before computes)
        "job_time_s": earlier_jobs_s + time.perf_counter() - run.job_start,  # set-up, validation, checkpoints too
        "tokens_per_s": state.tokens / elapsed if elapsed else None,
        "mfu": run.mfu(state.tokens / elapsed) if elapsed else None,
        "peak_flops": run.peak,
        "peak_source": run.peak_source,
        "best_val_loss": state.best_val,
        "initial_val_loss": run.initial_val_loss,
        "device": str(run.device),
        "precision": str(run.amp_dtype or torch.float32),
        "steps": state.step,
        "planned_steps": state.planned_steps,  # with max_minutes: what the budget was expected to allow
    }


def train(entry, tokenizer_path, manifest_path, out_dir, ckpt_dir, threads=1, log=print, mem_mb=None):
    """Train one model from its resolved config entry; write its folder (lmcore.model.folder) and return its
    summary. `mem_mb`: the job's memory; a CPU run that would need more stops before its first step."""
    run = setup(entry, tokenizer_path, manifest_path, out_dir, ckpt_dir, threads, log)
    if run.rank == 0:
        os.makedirs(run.ckpt_dir, exist_ok=True)
    state = restore(run, newest_checkpoint(run.ckpt_dir, run.key, run.rank, log))
    earlier_jobs_s = state.job_s  # what earlier attempts of this run took, to their last checkpoint
    preflight(run, state, mem_mb, log)
    if run.train_cfg.loggers and run.rank == 0:
        run.loggers = Loggers(run.train_cfg.loggers, out_dir, run.entry, state.step, state.wandb_id)
        state.wandb_id = run.loggers.wandb_id
    try:
        fit(run, state, log)
    except BaseException:
        if run.loggers:
            run.loggers.close()
        raise
    if is_sharded(run.model):  # rank 0 writes the best weights from a whole copy, as any other run's
        run.model = GPT(run.model.cfg) if run.rank == 0 else None
    if run.world > 1:
        dist.destroy_process_group()
        if run.rank != 0:
            return None
    run.model.load_state_dict(state.best_model)
    summary = summarize(run, state, earlier_jobs_s)
    if state.elapsed_s:
        log(
            f"{state.step} steps in {duration(state.elapsed_s)}; drawing batches took "
            f"{state.data_s / state.elapsed_s:.1%} of it"
        )
    save_model(out_dir, run.model, run.entry, tokenizer_path, state.metrics, summary)
    if run.loggers:
        run.loggers.finish(summary)
    return summary
