"""The training loop: AdamW, warm-up + cosine, gradient accumulation and clipping, periodic
validation on fixed batches, best-validation weights, and checkpoints that resume exactly.

A run killed and rerun resumes from its newest checkpoint whose configuration and
tokenizer match, and on CPU ends with the weights of a run never interrupted: the
checkpoint holds model, optimizer, step, every RNG state and the data position.
"""
import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from lmcore import TRAINING_CODE
from lmcore.checkpoint import list_checkpoints, load_checkpoint, load_safetensors, save_checkpoint, save_safetensors
from lmcore.io import atomic_open, sha256_file, write_json
from lmcore.model import GPT, ModelConfig, count_parameters, flops_per_token
from lmcore.optim import lr_at, make_optimizer
from lmcore.shards import TokenDataset
from lmcore.tokenizer import Tokenizer

# Dense bf16 peaks from the vendors' data sheets; anything else is measured.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def pick_device(name="auto"):
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_amx():
    """Intel AMX tiles multiply bf16 matrices several times faster than fp32 (bench/train_throughput.py)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return "amx_bf16" in f.read()
    except OSError:
        return False


def autocast_dtype(precision, device):
    """bf16 autocast where asked, or with `auto` where it pays: GPUs that support it, CPUs with AMX."""
    if precision == "auto":
        fast = torch.cuda.is_bf16_supported() if device.type == "cuda" else device.type == "cpu" and cpu_has_amx()
        precision = "bf16" if fast else "fp32"
    return torch.bfloat16 if precision == "bf16" else None


def distributed(device):
    """(rank, world size, device) under torchrun, with the process group started (nccl between
    GPUs, gloo between CPU processes) and each rank on its own GPU; (0, 1, device) in a plain process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


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


def peak_flops(device, dtype, n=1024, rounds=5, seconds=0.2):
    """(FLOP/s, where it comes from): the device's peak that MFU is measured against.

    Known GPUs: the data sheet. Elsewhere the best of `rounds` timings of square matmuls
    (another job on the same cores only slows a round down). It still reads low when the
    cores are shared for the whole second: bench/peak.py measures how much."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, flops in PEAK_FLOPS.items():
            if key in name:
                return flops, f"data sheet ({name}, dense bf16)"
    a = torch.randn(n, n, device=device, dtype=dtype or torch.float32)
    a @ a  # warm-up
    best = 0.0
    for _ in range(rounds):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ a
            count += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 * count / (time.perf_counter() - start))
    return best, f"measured: best of {rounds} x {seconds} s of {n}x{n} matmuls, {torch.get_num_threads()} threads"


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


def rng_state():
    """Every global RNG, in types `torch.load(weights_only=True)` accepts (numpy's as plain lists)."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, key.tolist(), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state):
    random.setstate(state["python"])
    if "numpy" in state:  # absent from checkpoints of lmcore before 2026-11-23
        name, key, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, np.array(key, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def to_device(arrays, device):
    return tuple(torch.from_numpy(a).to(device) for a in arrays)


def code_fingerprint():
    """sha256 of the training modules: a checkpoint of other code is not resumed (an edited model.py trains afresh)."""
    h = hashlib.sha256()
    for name in TRAINING_CODE:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def run_key(cfg, fingerprint):
    """What a checkpoint must match to be resumed: the training configuration, the tokenizer and the code."""
    return json.dumps({"config": cfg, "tokenizer": fingerprint, "code": code_fingerprint()}, sort_keys=True)


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
    """Stop a run whose loss is not finite or above `limit`, naming the step, loss, lr and the last good checkpoint."""
    if math.isfinite(loss) and loss <= limit:
        return
    kept = list_checkpoints(ckpt_dir)
    raise Diverged(
        f"training diverged at step {step}: loss {loss:.4g} (limit {limit:.4g}, divergence_threshold x ln(vocab_size)) "
        f"with lr {lr:.3g}; last good checkpoint: {kept[-1] if kept else 'none'}. Lower lr, lengthen warmup_steps "
        f"or lower grad_clip, then rerun."
    )


class Stop:
    """Set by SIGTERM (a cluster's time limit, a user's kill): the loop checkpoints and exits."""

    def __init__(self):
        self.requested = False
        with contextlib.suppress(ValueError):  # only the main thread may install handlers
            signal.signal(signal.SIGTERM, self._handler)

    def _handler(self, signum, frame):
        self.requested = True


def train(cfg, tokenizer_path, manifest_path, out_dir, ckpt_dir, threads=1, log=print):
    """Train one model; write model.safetensors, config.json, tokenizer.model, metrics.jsonl, summary.json."""
    torch.set_num_threads(threads)
    tokenizer = Tokenizer(tokenizer_path)
    train_data = TokenDataset(manifest_path, "train", tokenizer.fingerprint)
    val_data = TokenDataset(manifest_path, "validation", tokenizer.fingerprint)
    for data in (train_data, val_data, TokenDataset(manifest_path, "test", tokenizer.fingerprint)):  # evaluate reads test
        data.check_window(cfg["context_length"])
    rank, world, device = distributed(pick_device(cfg.get("device", "auto")))
    amp_dtype = autocast_dtype(cfg.get("precision", "auto"), device)
    if device.type == "cuda":  # fp32 matrix products on tensor cores (TF32), as every GPU training loop does
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    def amp():
        return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()

    random.seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    mcfg = ModelConfig.from_dict(cfg, vocab_size=tokenizer.vocab_size)
    model = GPT(mcfg).to(device)
    optimizer = make_optimizer(model, cfg)
    forward = torch.compile(model) if cfg.get("compile") else model
    if world > 1:
        forward = DDP(forward, device_ids=[device.index] if device.type == "cuda" else None)
    data_rng = np.random.default_rng(cfg["seed"])
    B, T, accum = cfg["batch_size"], mcfg.context_length, cfg["grad_accum"]
    val_rng = np.random.default_rng(cfg["seed"] + 1)
    val_batches = [to_device(val_data.sample_batch(val_rng, B, T), device) for _ in range(cfg["eval_batches"])]
    if cfg.get("max_tokens"):
        cfg = {**cfg, "max_steps": math.ceil(cfg["max_tokens"] / (B * T * accum * world))}
    decay_steps = cfg.get("decay_steps") or cfg["max_steps"]
    key = run_key(cfg, tokenizer.fingerprint)

    step, tokens, elapsed, best_val, best_state, metrics = 0, 0, 0.0, math.inf, None, []
    if rank == 0:
        os.makedirs(ckpt_dir, exist_ok=True)
    # the newest checkpoint of this run, each loaded once, newest first
    ck = next((c for c in map(load_checkpoint, reversed(list_checkpoints(ckpt_dir))) if c["run_key"] == key), None)
    if ck is not None:
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        set_rng_state(ck["rng"])
        data_rng.bit_generator.state = json.loads(ck["data_rng"])
        step, tokens, elapsed, best_val, best_state, metrics = (ck[k] for k in ("step", "tokens", "elapsed_s", "best_val", "best_model", "metrics"))
        log(f"Resumed from iteration {step}")
    elif list_checkpoints(ckpt_dir) and rank == 0:
        log(f"{ckpt_dir}: checkpoints of another configuration, tokenizer or training code; starting afresh")
        for p in list_checkpoints(ckpt_dir):
            os.remove(p)

    # A loss far above ln(vocab_size), the loss of a uniform guess, after warm-up: the run diverged.
    loss_limit = cfg["divergence_threshold"] * math.log(tokenizer.vocab_size) if cfg.get("divergence_threshold") else math.inf
    counts = count_parameters(model)
    fpt = flops_per_token(mcfg, counts["non_embedding_parameters"])
    peak, peak_source = peak_flops(device, amp_dtype)
    log(f"{counts['parameters']:,} parameters on {device} ({amp_dtype or torch.float32}); peak {peak / 1e9:,.1f} GFLOP/s, {peak_source}")

    def checkpoint():
        state = {
            "run_key": key, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng_state(),
            "data_rng": json.dumps(data_rng.bit_generator.state), "step": step, "tokens": tokens, "elapsed_s": elapsed,
            "best_val": best_val, "best_model": best_state, "metrics": metrics,
        }
        return save_checkpoint(ckpt_dir, step, state, cfg["keep_checkpoints"])

    stop = Stop()
    model.train()
    window_tokens, window_start = 0, time.perf_counter()
    while step < cfg["max_steps"]:
        t0 = time.perf_counter()
        lr = lr_at(step, cfg["lr"], cfg["min_lr"], cfg["warmup_steps"], decay_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # Every rank draws the same global batch and trains on its own slice of it, so that
        # N processes take the step one process would take on the whole batch.
        micro_batches = []
        for _ in range(accum):
            x, y = train_data.sample_batch(data_rng, B * world, T)
            micro_batches.append(to_device((x[rank * B : (rank + 1) * B], y[rank * B : (rank + 1) * B]), device))
        loss = train_step(forward, micro_batches, amp, forward.no_sync if world > 1 else None)
        if world > 1:
            dist.all_reduce(loss)
            loss /= world
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"] or math.inf)
        loss_sum, grad_norm = torch.stack([loss, grad_norm.float()]).tolist()  # one wait for the GPU per step
        check_divergence(loss_sum, step, lr, loss_limit if step >= cfg["warmup_steps"] else math.inf, ckpt_dir)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens += B * T * accum * world
        window_tokens += B * T * accum * world
        elapsed += time.perf_counter() - t0

        val_loss = None
        if step % cfg["eval_interval"] == 0 or step == cfg["max_steps"]:
            val_loss = estimate_loss(forward, val_batches, amp)
            if val_loss < best_val:
                best_val, best_state = val_loss, {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
        if step % cfg["log_interval"] == 0 or val_loss is not None:
            tokens_per_s = window_tokens / (time.perf_counter() - window_start)
            row = {"step": step, "tokens": tokens, "loss": loss_sum, "val_loss": val_loss, "lr": lr, "grad_norm": grad_norm,
                   "tokens_per_s": tokens_per_s, "mfu": fpt * tokens_per_s / peak, "elapsed_s": elapsed}
            metrics.append(row)
            if rank == 0:
                log(progress_line(row, cfg["max_steps"], elapsed))
            window_tokens, window_start = 0, time.perf_counter()
        if (step % cfg["checkpoint_interval"] == 0 or stop.requested) and rank == 0:
            checkpoint()
        if stop.requested:
            log(f"SIGTERM: checkpoint written at iteration {step}; rerun to resume")
            raise SystemExit(143)

    model.load_state_dict(best_state)
    if world > 1:
        dist.destroy_process_group()
        if rank != 0:
            return None
    summary = {
        **counts,
        "tokens_seen": tokens,
        "tokens_per_parameter": tokens / counts["parameters"],
        "flops_per_token": fpt,
        "total_flops": fpt * tokens,
        "wall_time_s": elapsed,
        "tokens_per_s": tokens / elapsed if elapsed else None,
        "mfu": fpt * tokens / elapsed / peak if elapsed else None,
        "peak_flops": peak,
        "peak_source": peak_source,
        "best_val_loss": best_val,
        "device": str(device),
        "precision": str(amp_dtype or torch.float32),
        "steps": step,
    }
    save_model(out_dir, model, cfg, tokenizer_path, metrics, summary)
    return summary


def save_model(out_dir, model, cfg, tokenizer_path, metrics, summary):
    """The folder `load_model` and `python -m lmcore generate` read: weights, configs, tokenizer, metrics."""
    os.makedirs(out_dir, exist_ok=True)
    weights = model.state_dict()
    if model.cfg.tie_embeddings:
        weights.pop("lm_head.weight")  # the same tensor as tok_emb.weight
    save_safetensors(weights, os.path.join(out_dir, "model.safetensors"), {"format": "pt"})
    with atomic_open(os.path.join(out_dir, "tokenizer.model"), "wb") as f, open(tokenizer_path, "rb") as src:
        shutil.copyfileobj(src, f)
    config = {"model": model.cfg.to_dict(), "train": cfg, "tokenizer_fingerprint": sha256_file(tokenizer_path)}
    write_json(os.path.join(out_dir, "config.json"), config)
    with atomic_open(os.path.join(out_dir, "metrics.jsonl")) as f:
        f.writelines(json.dumps(row) + "\n" for row in metrics)
    write_json(os.path.join(out_dir, "summary.json"), summary)


def load_model(model_dir, device="cpu"):
    """A trained model and its tokenizer from a `results/models/<name>/` folder."""
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    model = GPT(ModelConfig.from_dict(config["model"]))
    missing, unexpected = model.load_state_dict(load_safetensors(os.path.join(model_dir, "model.safetensors")), strict=False)
    if unexpected or set(missing) - ({"lm_head.weight"} if model.cfg.tie_embeddings else set()):
        raise ValueError(f"{model_dir}: weights do not match config.json (missing {missing}, unexpected {unexpected})")
    return model.to(device).eval(), Tokenizer(os.path.join(model_dir, "tokenizer.model"))


def launch(cfg, tokenizer_path, manifest_path, out_dir, ckpt_dir, threads=1, nproc=1, log=print):
    """Train in this process, or, for nproc > 1, in nproc processes under torchrun (DDP)."""
    if nproc <= 1:
        return train(cfg, tokenizer_path, manifest_path, out_dir, ckpt_dir, threads, log)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "lmcore", "train", "--config-json", json.dumps(cfg), "--tokenizer", tokenizer_path, "--manifest", manifest_path,
           "--out", out_dir, "--checkpoints", ckpt_dir, "--threads", str(max(1, threads // nproc))]
    log("running: " + " ".join(cmd[:6]) + " ...")
    subprocess.run(cmd, check=True, stdout=sys.stdout, stderr=sys.stderr)  # into the job's log
    with open(os.path.join(out_dir, "summary.json"), encoding="utf-8") as f:
        return json.load(f)
