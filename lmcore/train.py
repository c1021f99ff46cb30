"""The training loop: AdamW, warm-up + cosine, gradient accumulation and clipping, periodic
validation on fixed batches, best-validation weights, and checkpoints that resume exactly.

A run killed and rerun resumes from its newest checkpoint whose configuration, tokenizer and
training code match, and on CPU ends with the weights of a run never interrupted: the
checkpoint holds model, optimizer, every RNG state, the data position and the `TrainState`.
Where it runs (device, precision, DDP, peak FLOP/s) is lmcore.runtime; the folder it writes,
lmcore.model_folder.
"""
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from lmcore.checkpoint import (
    DamagedCheckpoint,
    list_checkpoints,
    load_checkpoint,
    remove_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from lmcore.closure import digest
from lmcore.init_from import starting_files
from lmcore.io import sha256_file
from lmcore.model import GPT, ModelConfig, count_parameters, flops_per_token
from lmcore.model_folder import read_config, read_weights, save_model
from lmcore.optim import lr_at, make_optimizer
from lmcore.runtime import (
    autocast,
    autocast_dtype,
    distributed,
    peak_flops,
    pick_device,
    record_peak,
    use_compile,
    use_tf32,
)
from lmcore.shards import TokenDataset
from lmcore.tokenizer import Tokenizer


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
    precision: str = "auto"
    compile: bool | str = "auto"  # auto: on GPUs only (on a CPU it bought 1.006x for a minute of compiling)
    device: str = "auto"
    gpus: int = 0
    init_from: dict | None = None  # {hf: folder} or {model: name}: the weights to start from
    data: dict = field(default_factory=dict)  # {sources: {name: weight} or None}: what to train on


ENTRY_ONLY = ("tokenizer", "preset")  # keys of a model entry that the pipeline reads, not the loop


def read_entry(entry):
    """(ModelConfig keywords but vocab_size, TrainConfig) of a resolved `models.<name>` entry.
    A key that neither knows is an error, not a setting silently ignored."""
    model_keys = {f.name for f in fields(ModelConfig)} - {"vocab_size"}
    train_keys = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(entry) - model_keys - train_keys - set(ENTRY_ONLY))
    if unknown:
        raise ValueError(f"unknown model or training settings {unknown}; known: {sorted(model_keys | train_keys)}")
    return {k: v for k, v in entry.items() if k in model_keys}, TrainConfig(**{k: v for k, v in entry.items() if k in train_keys})


@dataclass
class TrainState:
    """What the loop carries from step to step; a checkpoint saves and restores it by these names."""
    step: int = 0
    tokens: int = 0
    elapsed_s: float = 0.0  # time spent in training steps, evaluation and logging excluded
    data_s: float = 0.0  # the part of elapsed_s spent drawing batches and copying them to the device (on a GPU, while it computes)
    job_s: float = 0.0  # whole wall time of this run's attempts so far (set-up, steps, validation, checkpoints), set at each checkpoint
    best_val: float = math.inf
    best_model: dict | None = None  # weights at best_val, on the CPU
    metrics: list = field(default_factory=list)  # the rows of metrics.jsonl


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
        with (no_sync() if no_sync and not last else contextlib.nullcontext()):
            with amp():
                loss = forward(x, y)[1] / len(micro_batches)
            loss.backward()
        total = total + loss.detach().float()
    return total


@torch.no_grad()
def estimate_loss(model, batches, amp):
    model.eval()
    losses = []
    for x, y in batches:
        with amp():
            losses.append(model(x, y)[1].item())
    model.train()
    return sum(losses) / len(losses)


class Diverged(FloatingPointError):
    pass


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


class Stop:
    """Set by SIGTERM (a cluster's time limit, a user's kill): the loop checkpoints and exits."""

    def __init__(self):
        self.requested = False
        with contextlib.suppress(ValueError):  # only the main thread may install handlers
            signal.signal(signal.SIGTERM, self._handler)

    def _handler(self, signum, frame):
        self.requested = True


def duration(seconds):
    """4m05s, 1h02m, 12s."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def progress_line(row, max_steps, elapsed_s):
    """step 300/600 (50%) | loss 4.91 | val 4.95 | lr 1.2e-03 | 2.4k tok/s | 4m10s elapsed, ETA 4m05s"""
    step = row["step"]
    val = f" | val {row['val_loss']:.3f}" if row["val_loss"] is not None else ""
    eta = elapsed_s / step * (max_steps - step)
    return (f"step {step}/{max_steps} ({step / max_steps:.0%}) | loss {row['loss']:.3f}{val} | lr {row['lr']:.1e} | "
            f"{row['tokens_per_s'] / 1000:.1f}k tok/s | {duration(elapsed_s)} elapsed, ETA {duration(eta)}")


def code_fingerprint():
    """The digest of the code training runs (lmcore.closure, from this module's imports): a checkpoint of
    other code is not resumed (an edited model.py trains afresh; an edited export does not)."""
    return digest(os.path.abspath(__file__))


def run_key(entry, fingerprint, models_dir):
    """What a checkpoint must match to be resumed: the model's configuration, the tokenizer, the code,
    and the files of the weights it started from."""
    init = entry.get("init_from")
    start = {os.path.basename(path): sha256_file(path) for path in starting_files(init, models_dir)} if init else None
    return json.dumps({"config": entry, "tokenizer": fingerprint, "code": code_fingerprint(), "start": start}, sort_keys=True)


def resume(ckpt_dir, key, model, optimizer, data_rng, rank, log):
    """The TrainState of the newest intact checkpoint of this run, with model, optimizer and RNGs
    restored from it; a fresh TrainState (and other runs' checkpoints removed) when there is none.
    A damaged checkpoint is named, renamed to `<name>.damaged` (kept for a look, out of the way of
    the next save) and passed over for the one before it."""
    for path in reversed(list_checkpoints(ckpt_dir)):  # each loaded once, newest first
        try:
            ck = load_checkpoint(path)
        except DamagedCheckpoint as e:
            if rank == 0:
                os.replace(path, path + ".damaged")
                log(f"{e}; moved to {os.path.basename(path)}.damaged, trying the checkpoint before it")
            continue
        if ck["run_key"] == key:
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            set_rng_state(ck["rng"])
            data_rng.bit_generator.state = json.loads(ck["data_rng"])
            state = TrainState(**{f.name: ck[f.name] for f in fields(TrainState)})
            unchecked = "" if os.path.exists(path + ".sha256") else f" ({path} has no checksum: written by an older lmcore)"
            log(f"Resumed from step {state.step}{unchecked}")
            return state
    if list_checkpoints(ckpt_dir) and rank == 0:
        log(f"{ckpt_dir}: checkpoints of another configuration, tokenizer or training code; starting afresh")
        for path in list_checkpoints(ckpt_dir):
            remove_checkpoint(path)
    return TrainState()


def starting_weights(init_from, model, models_dir, tokenizer):
    """The weights `init_from` names (a Hugging Face folder, or another model's folder in `models_dir`),
    checked against `model` and its tokenizer tensor by tensor before any step."""
    if "hf" in init_from:
        from lmcore.hf import load_hf

        where = init_from["hf"]
        options, weights = load_hf(where)
    else:
        where = os.path.join(models_dir, init_from["model"])
        saved = read_config(where)
        if saved["tokenizer_fingerprint"] != tokenizer.fingerprint:
            raise ValueError(f"init_from {where}: trained with tokenizer {saved['tokenizer_fingerprint'][:12]}, "
                             f"this model with {tokenizer.fingerprint[:12]}; a model continues another of the same tokenizer")
        options, weights = saved["model"], read_weights(where, saved)
    for key in ("norm", "position", "mlp", "bias", "tie_embeddings"):
        if options[key] != getattr(model.cfg, key):
            raise ValueError(f"init_from {where}: {key} is {options[key]} there, {getattr(model.cfg, key)} in this model entry")
    ours = model.state_dict()
    for name, tensor in weights.items():
        if name not in ours or ours[name].shape != tensor.shape:
            raise ValueError(f"init_from {where}: tensor {name} has shape {tuple(tensor.shape)} there, "
                             f"{tuple(ours[name].shape) if name in ours else 'none'} in this model entry")
    return where, weights


def memory_needed_mb(parameters, micro_batch_tokens, cfg, world=1):
    """Host memory a CPU run needs, in MB, about: the torch runtime (400 MB), 20 bytes a parameter
    (weights, gradients, AdamW's two moments, the best weights kept), and per token of a micro-batch
    the logits with their softmax and gradient (12 bytes x vocab_size) and 50 bytes x n_layers x
    d_model of the blocks' activations (attention is SDPA's, with no context_length^2 matrix). Measured
    within 5% on 2-core AMD EPYC for shapes of 0.9-5 M parameters, 4k-16k tokens (2026-11-29)."""
    per_process = 400e6 + 20 * parameters + micro_batch_tokens * (12 * cfg.vocab_size + 50 * cfg.n_layers * cfg.d_model)
    return world * per_process / 1e6


def check_fits(need_mb, mem_mb, tc, cfg, log):
    """Stop before the first step when the estimate exceeds the job's memory (`resources.train.mem_mb`)."""
    if mem_mb and need_mb > mem_mb:
        raise MemoryError(
            f"training needs about {need_mb:,.0f} MB (batch_size {tc.batch_size} x context_length {cfg.context_length:,} "
            f"tokens a micro-batch, vocab_size {cfg.vocab_size:,}), more than the job's mem_mb of {mem_mb:,}: lower batch_size "
            f"(and raise grad_accum to keep the tokens a step) or context_length, or raise resources.train.mem_mb")
    log(f"memory: about {need_mb:,.0f} MB" + (f" of the job's {mem_mb:,}" if mem_mb else ""))


def to_device(arrays, device):
    """Host arrays to the device; to a GPU from pinned memory, without waiting for the copy."""
    if device.type == "cuda":
        return tuple(torch.from_numpy(a).pin_memory().to(device, non_blocking=True) for a in arrays)
    return tuple(torch.from_numpy(a).to(device) for a in arrays)


def train(entry, tokenizer_path, manifest_path, out_dir, ckpt_dir, threads=1, log=print, mem_mb=None):
    """Train one model from its resolved config entry; write its folder (lmcore.model_folder) and return its summary.
    `mem_mb`: the job's memory; a CPU run that would need more stops before its first step."""
    job_start = time.perf_counter()
    torch.set_num_threads(threads)
    model_keys, tc = read_entry(entry)
    tokenizer = Tokenizer(tokenizer_path)
    model_cfg = ModelConfig(vocab_size=tokenizer.vocab_size, **model_keys)
    sources = tc.data.get("sources")  # {name: weight}, or None for every source by its tokens
    train_data, val_data = (TokenDataset(manifest_path, s, tokenizer.fingerprint, sources) for s in ("train", "validation"))
    test_data = TokenDataset(manifest_path, "test", tokenizer.fingerprint)
    for data in (train_data, val_data, test_data):  # evaluate reads test: fail now, not after training
        data.check_window(model_cfg.context_length)

    rank, world, device = distributed(pick_device(tc.device))
    amp_dtype = autocast_dtype(tc.precision, device)
    use_tf32(device)

    def amp():
        return autocast(device, amp_dtype)

    random.seed(tc.seed)
    np.random.seed(tc.seed)
    torch.manual_seed(tc.seed)
    model = GPT(model_cfg)
    models_dir = os.path.dirname(os.path.abspath(out_dir))  # results/models/: where init_from's {model: name} is
    if tc.init_from:
        where, weights = starting_weights(tc.init_from, model, models_dir, tokenizer)
        model.load_state_dict(weights, strict=not model_cfg.tie_embeddings)
        log(f"starting from the weights of {where}")
    counts = count_parameters(model)
    fpt = flops_per_token(model_cfg, counts["non_embedding_parameters"])
    model = model.to(device)
    optimizer = make_optimizer(model, tc.lr, (tc.beta1, tc.beta2), tc.weight_decay, tc.optimizer_impl)
    forward = torch.compile(model) if use_compile(tc.compile, device) else model
    if world > 1:
        forward = DDP(forward, device_ids=[device.index] if device.type == "cuda" else None)

    B, T, accum = tc.batch_size, model_cfg.context_length, tc.grad_accum
    tokens_per_step = B * T * accum * world
    max_tokens = tc.max_flops / fpt if tc.max_flops else tc.max_tokens
    max_steps = math.ceil(max_tokens / tokens_per_step) if max_tokens else tc.max_steps
    entry = {**entry, "max_steps": max_steps}  # what the checkpoint and config.json record
    decay_steps = tc.decay_steps or max_steps
    val_rng, data_rng = np.random.default_rng(tc.seed + 1), np.random.default_rng(tc.seed)
    val_batches = [to_device(val_data.sample_batch(val_rng, B, T), device) for _ in range(tc.eval_batches)]

    if rank == 0:
        os.makedirs(ckpt_dir, exist_ok=True)
    # Validation runs the plain model: a compiled one would compile a second graph for eval mode and no_grad.
    initial_val_loss = estimate_loss(model, val_batches, amp) if tc.init_from else None  # what the starting weights bring
    if initial_val_loss is not None:
        log(f"validation loss of the starting weights: {initial_val_loss:.4f}")
    key = run_key(entry, tokenizer.fingerprint, models_dir)  # hashes the code (and starting weights): once
    state = resume(ckpt_dir, key, model, optimizer, data_rng, rank, log)
    earlier_jobs_s = state.job_s  # what earlier attempts of this run took, to their last checkpoint

    # A loss far above ln(vocab_size), the loss of a uniform guess, after warm-up: the run diverged.
    loss_limit = tc.divergence_threshold * math.log(tokenizer.vocab_size) if tc.divergence_threshold else math.inf
    peak, peak_source = peak_flops(device, amp_dtype)
    log(f"{counts['parameters']:,} parameters on {device} ({amp_dtype or torch.float32}); peak {peak / 1e9:,.1f} GFLOP/s, {peak_source}")
    if device.type == "cpu" and rank == 0:  # a GPU's memory is its own; the job's mem_mb is the host's
        check_fits(memory_needed_mb(counts["parameters"], B * T, model_cfg, world), mem_mb, tc, model_cfg, log)
    step_s = fpt * B * T * accum / peak  # each process computes its own B x T x accum tokens
    if rank == 0:
        log(f"one step: {tokens_per_step:,} tokens, {fpt * tokens_per_step:.3g} FLOPs, "
            f"{f'{step_s:.3g} s' if step_s < 60 else duration(step_s)} at the peak (a step takes "
            f"2-3 times that); {max_steps - state.step:,} steps to go: at least {duration(step_s * (max_steps - state.step))}")

    def mfu(tokens_per_s):
        """Model FLOPs utilisation; a rate above the kept peak becomes the peak (here and for later jobs), never an MFU above 1."""
        nonlocal peak, peak_source
        if fpt * tokens_per_s > peak:
            peak, peak_source = fpt * tokens_per_s, "the rate this run reached, above the peak measured before"
            record_peak(device, amp_dtype, peak)
        return fpt * tokens_per_s / peak

    def checkpoint():
        state.job_s = earlier_jobs_s + time.perf_counter() - job_start
        saved = {"run_key": key, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "rng": rng_state(), "data_rng": json.dumps(data_at_step), **vars(state)}
        save_checkpoint(ckpt_dir, state.step, saved, tc.keep_checkpoints)

    def draw_batches():
        """One step's micro-batches, on the device. Every rank draws the same global batch and trains
        on its own slice of it, so that N processes take the step one process would take on the whole batch."""
        start = time.perf_counter()
        micro_batches = []
        for _ in range(accum):
            x, y = train_data.sample_batch(data_rng, B * world, T)
            micro_batches.append(to_device((x[rank * B : (rank + 1) * B], y[rank * B : (rank + 1) * B]), device))
        state.data_s += time.perf_counter() - start
        return micro_batches

    stop = Stop()
    model.train()
    window_tokens, window_start = 0, time.perf_counter()  # tokens/s over the steps since the last log line
    data_at_step = data_rng.bit_generator.state  # where the data stream stands for the next step: what a checkpoint keeps
    micro_batches = draw_batches() if state.step < max_steps else None
    first_step = state.step + 1
    while state.step < max_steps:
        t0 = time.perf_counter()
        lr = lr_at(state.step, tc.lr, tc.min_lr, tc.warmup_steps, decay_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        mean_loss = train_step(forward, micro_batches, amp, forward.no_sync if world > 1 else None)
        # On a GPU the step is only queued so far: the next step's batches are drawn and copied meanwhile.
        data_at_step = data_rng.bit_generator.state
        micro_batches = draw_batches() if state.step + 1 < max_steps else None
        if world > 1:
            dist.all_reduce(mean_loss)
            mean_loss /= world
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip or math.inf)  # the norm before clipping
        loss, grad_norm = torch.stack([mean_loss, grad_norm.float()]).tolist()  # one wait for the GPU per step
        check_divergence(loss, state.step, lr, loss_limit if state.step >= tc.warmup_steps else math.inf, ckpt_dir)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.tokens += tokens_per_step
        window_tokens += tokens_per_step
        state.elapsed_s += time.perf_counter() - t0
        if state.step == first_step and rank == 0 and tc.log_interval > 1:  # a person sees the run is under way
            log(f"step {state.step} took {time.perf_counter() - t0:.3g} s; a progress line every {tc.log_interval} steps")

        val_loss = None
        if state.step % tc.eval_interval == 0 or state.step == max_steps:
            val_loss = estimate_loss(model, val_batches, amp)
            if val_loss < state.best_val:
                state.best_val, state.best_model = val_loss, {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
        if state.step % tc.log_interval == 0 or val_loss is not None:
            tokens_per_s = window_tokens / (time.perf_counter() - window_start)
            row = {"step": state.step, "tokens": state.tokens, "loss": loss, "val_loss": val_loss, "lr": lr, "grad_norm": grad_norm,
                   "tokens_per_s": tokens_per_s, "mfu": mfu(tokens_per_s), "elapsed_s": state.elapsed_s}
            state.metrics.append(row)
            if rank == 0:
                log(progress_line(row, max_steps, state.elapsed_s))
            window_tokens, window_start = 0, time.perf_counter()
        if (state.step % tc.checkpoint_interval == 0 or stop.requested) and rank == 0:
            checkpoint()
        if stop.requested:
            log(f"SIGTERM: checkpoint written at step {state.step}; rerun to resume")
            raise SystemExit(143)

    model.load_state_dict(state.best_model)
    if world > 1:
        dist.destroy_process_group()
        if rank != 0:
            return None
    elapsed = state.elapsed_s
    summary = {
        **counts,
        "tokens_seen": state.tokens,
        "tokens_per_parameter": state.tokens / counts["parameters"],
        "flops_per_token": fpt,
        "total_flops": fpt * state.tokens,
        "step_time_s": elapsed,  # the optimizer steps alone: what tokens/s and MFU count
        "data_time_s": state.data_s,  # of which drawing batches (on a GPU, while the step before computes; on a CPU, added to it)
        "job_time_s": earlier_jobs_s + time.perf_counter() - job_start,  # what the run cost: set-up, validation, checkpoints too
        "tokens_per_s": state.tokens / elapsed if elapsed else None,
        "mfu": mfu(state.tokens / elapsed) if elapsed else None,
        "peak_flops": peak,
        "peak_source": peak_source,
        "best_val_loss": state.best_val,
        "initial_val_loss": initial_val_loss,
        "device": str(device),
        "precision": str(amp_dtype or torch.float32),
        "steps": state.step,
    }
    if elapsed:
        log(f"{state.step} steps in {duration(elapsed)}; drawing batches took {state.data_s / elapsed:.1%} of it")
    save_model(out_dir, model, entry, tokenizer_path, state.metrics, summary)
    return summary


def launch(entry, tokenizer_path, manifest_path, out_dir, ckpt_dir, threads=1, nproc=1, log=print, mem_mb=None):
    """Train in this process, or, for nproc > 1, in nproc processes under torchrun (DDP)."""
    if nproc <= 1:
        return train(entry, tokenizer_path, manifest_path, out_dir, ckpt_dir, threads, log, mem_mb)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "lmcore", "train", "--config-json", json.dumps(entry), "--tokenizer", tokenizer_path, "--manifest", manifest_path,
           "--out", out_dir, "--checkpoints", ckpt_dir, "--threads", str(max(1, threads // nproc))]
    cmd += ["--mem-mb", str(mem_mb)] if mem_mb else []
    log("running: " + " ".join(cmd[:6]) + " ...")
    subprocess.run(cmd, check=True, stdout=sys.stdout, stderr=sys.stderr)  # into the job's log
    with open(os.path.join(out_dir, "summary.json"), encoding="utf-8") as f:
        return json.load(f)
