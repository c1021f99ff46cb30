"""One training configuration, timed in a fresh process: tokens/s, MFU and the peak memory of lmcore's
own step (lmcore.train.parallel.parallelize, lmcore.train.loop.train_step, clipping, AdamW) on random tokens.
Under torchrun it runs on every process (gloo on CPUs, nccl on GPUs) and rank 0 prints one JSON line;
memory is the most any process used (GPU: max allocated; CPU: VmHWM).

    python bench/train_step.py --shape llama-1.3B --parallelism fsdp --checkpointing --precision bf16
    torchrun --nproc_per_node 8 bench/train_step.py --shape llama-1.3B --parallelism fsdp --checkpointing

bench/gpu_check.py runs it for each figure it writes; `--checkpointing` on and off at the same batch is
the memory activation checkpointing saves.
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import own_peak_mb  # noqa: E402
from lmcore.model.config import ModelConfig
from lmcore.model.gpt import GPT, count_parameters, flops_per_token  # noqa: E402
from lmcore.train.config import TrainConfig  # noqa: E402
from lmcore.train.launch import free_port
from lmcore.train.loop import train_step  # noqa: E402
from lmcore.train.optim import make_optimizer  # noqa: E402
from lmcore.train.parallel import parallelize  # noqa: E402
from lmcore.train.runtime import autocast, autocast_dtype, data_sheet_peak, pick_device, use_tf32  # noqa: E402

LLAMA = {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "bias": False, "tie_embeddings": False}
SHAPES = {
    "gpt2-124M": {"vocab_size": 50304, "d_model": 768, "n_layers": 12, "n_heads": 12, "context_length": 1024},
    "llama-350M": {
        "vocab_size": 32000,
        "d_model": 1024,
        "n_layers": 24,
        "n_heads": 16,
        "context_length": 1024,
        **LLAMA,
    },
    "llama-1.3B": {
        "vocab_size": 32000,
        "d_model": 2048,
        "n_layers": 24,
        "n_heads": 16,
        "context_length": 2048,
        **LLAMA,
    },
    # CI-sized stand-ins for the CPU path
    "cpu-small": {"vocab_size": 4096, "d_model": 256, "n_layers": 8, "n_heads": 4, "context_length": 256, **LLAMA},
    "cpu-tiny": {"vocab_size": 512, "d_model": 64, "n_layers": 2, "n_heads": 2, "context_length": 64, **LLAMA},
}


def time_steps(forward, model, optimizer, x, y, amp, steps, compile_, device):
    """Seconds of `steps` training steps on one batch (lmcore's train_step, clipping, the optimizer), after
    untimed ones that compile or warm up."""
    warmup = 3 if compile_ else 1
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        loss = train_step(forward, [(x, y)], amp)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()  # waits for the GPU
    return time.perf_counter() - start


def measure(shape, parallelism, checkpointing, precision, compile_, batch, steps):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device("auto")
    if world > 1 or parallelism == "fsdp":  # fsdp on one process too: its code path, its memory
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        if world > 1:
            dist.init_process_group(backend)
        else:  # not under torchrun
            dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_port()}", world_size=1, rank=0)
    use_tf32(device)
    dtype = autocast_dtype(precision, device)
    torch.manual_seed(0)
    cfg = ModelConfig(**SHAPES[shape])
    model = GPT(cfg).to(device)
    counts = count_parameters(model)
    fpt = flops_per_token(cfg, counts["non_embedding_parameters"])
    model.checkpoint_activations(checkpointing)
    forward = parallelize(model, parallelism, world, device, dtype, compile_)
    optimizer = make_optimizer(model, TrainConfig(lr=3e-4))
    T = cfg.context_length
    x, y = (torch.randint(0, cfg.vocab_size, (batch, T), device=device) for _ in range(2))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = time_steps(forward, model, optimizer, x, y, lambda: autocast(device, dtype), steps, compile_, device)
    tokens_per_s = world * steps * batch * T / seconds
    memory = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else own_peak_mb()
    if world > 1:
        most = torch.tensor([memory], device=device)
        dist.all_reduce(most, op=dist.ReduceOp.MAX)
        memory = most.item()
    peak = data_sheet_peak(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    return {
        "shape": shape,
        "parameters": counts["parameters"],
        "parallelism": parallelism,
        "processes": world,
        "activation_checkpointing": checkpointing,
        "precision": str(dtype or torch.float32),
        "compile": compile_,
        "batch_per_process": batch,
        "context_length": T,
        "tokens_per_s": tokens_per_s,
        "mfu": fpt * tokens_per_s / (world * peak[0]) if peak else None,
        "peak_memory_mb_per_process": memory,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=list(SHAPES), default="cpu-tiny")
    parser.add_argument("--parallelism", choices=["ddp", "fsdp"], default="ddp")
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--batch", type=int, default=4, help="sequences per process")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    row = measure(
        args.shape, args.parallelism, args.checkpointing, args.precision, args.compile, args.batch, args.steps
    )
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(row), flush=True)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
