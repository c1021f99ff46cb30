"""Training throughput: tokens/s, MFU and peak memory for two model sizes, fp32 against bf16,
torch.compile off and on; and the fp32 and bf16 loss curves side by side. On CUDA, fp32 runs its
matrix products on TF32 tensor cores, as lmcore's training loop does.

    python bench/train_throughput.py [--steps 10] [--loss-steps 200] [--device cpu] [--batch 8]

The baseline is a plain fp32 PyTorch loop of the same model (lmcore's loop with fp32, no
compile). MFU is measured against this device's matmul rate (a data-sheet peak on known
GPUs), printed beside it; peak MB is the process's resident memory, GPU MB the most CUDA
memory allocated. Data are the default run's train shards when results/shards/bpe1k
exists, random tokens otherwise.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import run_child  # noqa: E402

SIZES = {"4x256": {"n_layers": 4, "d_model": 256, "n_heads": 4}, "6x384": {"n_layers": 6, "d_model": 384, "n_heads": 6}}
MANIFEST = "results/shards/bpe1k/manifest.json"


def batches(vocab, batch, context, seed):
    import numpy as np
    import torch

    from lmcore.tokens.shards import TokenDataset

    rng = np.random.default_rng(seed)
    if os.path.exists(MANIFEST):
        data = TokenDataset(MANIFEST, "train")
        while True:
            yield tuple(torch.from_numpy(a) for a in data.sample_batch(rng, batch, context))
    while True:
        x = torch.from_numpy(rng.integers(0, vocab, (batch, context + 1)))
        yield x[:, :-1], x[:, 1:]


def worker(size, precision, compile_, steps, threads, device, batch):
    import torch

    from lmcore.model.config import ModelConfig
    from lmcore.model.gpt import GPT, count_parameters, flops_per_token
    from lmcore.train.loop import train_step
    from lmcore.train.runtime import autocast, peak_flops, use_tf32

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=4096, context_length=256, **SIZES[size])
    device = torch.device(device)
    use_tf32(device)  # as lmcore's loop: fp32 matrix products on TF32 tensor cores
    model = GPT(cfg).to(device)
    forward = torch.compile(model) if compile_ else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    dtype = torch.bfloat16 if precision == "bf16" else None

    def amp():
        return autocast(device, dtype)

    data = batches(cfg.vocab_size, batch, cfg.context_length, seed=1)
    losses, start = [], None
    warmup = 3
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        x, y = next(data)
        losses.append(train_step(forward, [(x.to(device), y.to(device))], amp).item())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens_per_s = steps * batch * cfg.context_length / seconds
    peak = peak_flops(device, dtype)[0]
    fpt = flops_per_token(cfg, count_parameters(model)["non_embedding_parameters"])
    gpu_mb = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    print(
        json.dumps(
            {
                "tokens_per_s": tokens_per_s,
                "mfu": fpt * tokens_per_s / peak,
                "peak_flops": peak,
                "gpu_mb": gpu_mb,
                "losses": losses,
            }
        )
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--loss-steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8, help="sequences of 256 tokens per step")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--worker", nargs=4, metavar=("SIZE", "PRECISION", "COMPILE", "STEPS"))
    args = parser.parse_args()
    if args.worker:
        size, precision, compile_, steps = args.worker
        return worker(size, precision, compile_ == "1", int(steps), args.threads, args.device, args.batch)

    def child(size, precision, compile_, steps):
        return run_child(
            [
                __file__,
                "--worker",
                size,
                precision,
                str(int(compile_)),
                str(steps),
                "--threads",
                str(args.threads),
                "--device",
                args.device,
                "--batch",
                str(args.batch),
            ]
        )

    print(f"device {args.device}, {args.threads} threads, batch {args.batch} x 256 tokens")
    print(
        f"{'model':>6} {'precision':>9} {'compile':>7} {'tokens/s':>9} {'vs fp32':>7} {'MFU':>6} {'peak GFLOP/s':>12} "
        f"{'peak MB':>8} {'GPU MB':>7}"
    )
    for size in SIZES:
        base = None
        for compile_ in (False,) if args.no_compile else (False, True):
            for precision in ("fp32", "bf16"):
                result, mem = child(size, precision, compile_, args.steps)
                base = base or result["tokens_per_s"]
                print(
                    f"{size:>6} {precision:>9} {str(compile_):>7} {result['tokens_per_s']:9.0f} "
                    f"{result['tokens_per_s'] / base:6.2f}x "
                    f"{result['mfu']:6.1%} {result['peak_flops'] / 1e9:12.0f} {mem:8.0f} {result['gpu_mb'] or 0:7.0f}",
                    flush=True,
                )
    if args.loss_steps:
        curves = {p: child("6x384", p, False, args.loss_steps)[0]["losses"] for p in ("fp32", "bf16")}
        diffs = [abs(a - b) for a, b in zip(curves["fp32"], curves["bf16"])]
        tail = max(1, len(diffs) // 5)
        print(
            f"loss over {len(diffs)} steps, 6x384: fp32 last-{tail} mean {sum(curves['fp32'][-tail:]) / tail:.3f}, "
            f"bf16 {sum(curves['bf16'][-tail:]) / tail:.3f}, largest step difference {max(diffs):.3f}"
        )


if __name__ == "__main__":
    main()
