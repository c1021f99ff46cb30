"""Training at scale on one GPU: a 124M GPT-2 shape and a ~350M Llama shape at context 1024, in
fp32 (TF32 matrix products), bf16 autocast, and bf16 + torch.compile: tokens/s, MFU against the
data sheet's dense bf16 peak, and the most GPU memory allocated. lmcore's model and training
step (lmcore.train.loop.train_step, clipping, AdamW as lmcore makes it), random tokens.

MFU is printed twice: with lmcore's FLOPs per token (6 N + 12 L d T, N without embeddings: what
summary.json reports) and with the output layer counted too (6 N' + 12 L d T, N' with the
token embedding, which the tied or untied head costs: nanoGPT's and PaLM's convention).
Beside each mode, evaluation's tokens/s (lmcore.evaluation.perplexity.evaluate_model, the evaluate job's own
code, in the mode's precision, uncompiled as the job runs it) and its ratio to training's: the
issue asks for 3x or more.

    python bench/gpu_scale.py [--steps 20] [--batch 16] [--shapes gpt2-124M llama-350M]

Without a GPU it says that the GPU figures are missing and runs its CPU path: the 124M shape,
fp32, batch 1, 2 steps, so that the code path is exercised and a CPU figure printed.
"""

import argparse
import os
import time

import numpy as np
import torch
from train_step import SHAPES as SHAPES_OF_STEP
from train_step import time_steps

from lmcore.evaluation.perplexity import evaluate_model
from lmcore.model.config import ModelConfig
from lmcore.model.gpt import GPT, count_parameters, flops_per_token
from lmcore.train.config import TrainConfig
from lmcore.train.optim import make_optimizer
from lmcore.train.runtime import autocast, data_sheet_peak, machine_key, use_tf32

SHAPES = {name: SHAPES_OF_STEP[name] for name in ("gpt2-124M", "llama-350M")}  # bench/train_step.py's
MODES = {"fp32 (TF32)": (None, False), "bf16": (torch.bfloat16, False), "bf16 + compile": (torch.bfloat16, True)}


class RandomTokens:
    """What evaluate_model reads from a TokenDataset: (source, inputs, targets) windows."""

    def __init__(self, n, vocab_size):
        self.tokens = np.random.default_rng(0).integers(0, vocab_size, n + 1)

    def windows(self, T):
        for s in range(0, len(self.tokens) - T, T):
            yield "random", self.tokens[s : s + T], self.tokens[s + 1 : s + T + 1]


def eval_tokens_per_s(model, dtype, batch, batches, device):
    T = model.cfg.context_length
    data = RandomTokens(batch * batches * T, model.cfg.vocab_size)
    token_bytes = np.ones(model.cfg.vocab_size, dtype=np.int64)
    evaluate_model(model, RandomTokens(batch * T, model.cfg.vocab_size), token_bytes, batch, device, dtype)  # warm-up
    start = time.perf_counter()
    tokens = evaluate_model(model, data, token_bytes, batch, device, dtype)[
        "tokens"
    ]  # reads its losses: waits for the GPU
    return tokens / (time.perf_counter() - start)


def measure(shape, dtype, compile_, batch, steps, device):
    torch.manual_seed(0)
    cfg = ModelConfig(**SHAPES[shape])
    model = GPT(cfg).to(device)
    counts = count_parameters(model)
    fpt = flops_per_token(cfg, counts["non_embedding_parameters"])
    fpt_head = fpt + 6 * cfg.vocab_size * cfg.d_model  # the output layer's matrix product, forward and backward
    forward = torch.compile(model) if compile_ else model
    opt = make_optimizer(model, TrainConfig(lr=3e-4))

    def amp():
        return autocast(device, dtype)

    T = cfg.context_length
    x, y = (torch.randint(0, cfg.vocab_size, (batch, T), device=device) for _ in range(2))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = time_steps(forward, model, opt, x, y, amp, steps, compile_, device)
    tokens_per_s = steps * batch * T / seconds
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    eval_rate = eval_tokens_per_s(model, dtype, batch, steps, device)
    return counts["parameters"], tokens_per_s, fpt * tokens_per_s, fpt_head * tokens_per_s, memory, eval_rate


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16, help="sequences of 1024 tokens per step")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        torch.set_num_threads(os.cpu_count())
        cpu = torch.device("cpu")
        print("GPU figures missing: no CUDA device here. CPU path: gpt2-124M, fp32, batch 1, 2 steps.")
        params, rate, flops, flops_head, _, eval_rate = measure("gpt2-124M", None, False, 1, 2, cpu)
        print(
            f"{machine_key(cpu, None)}: {params / 1e6:.0f}M parameters, {rate:,.0f} tokens/s, "
            f"{flops / 1e9:.0f} GFLOP/s ({flops_head / 1e9:.0f} with the output layer); evaluation {eval_rate:,.0f} "
            "tokens/s, "
            f"{eval_rate / rate:.1f}x"
        )
        return
    device = torch.device("cuda")
    use_tf32(device)  # as lmcore's training loop
    name = torch.cuda.get_device_name(device)
    known = data_sheet_peak(name)
    peak = known[0] if known else None
    print(
        f"{name} (peak {peak / 1e12:.0f} TFLOP/s dense bf16)"
        if peak
        else f"{name}: no data-sheet peak known, MFU left out"
    )
    print(f"batch {args.batch} x 1024 tokens, {args.steps} timed steps")
    print(
        f"{'shape':>11} {'params':>7} {'mode':>15} {'tokens/s':>10} {'MFU':>6} {'MFU+head':>8} {'GPU GiB':>8} "
        f"{'eval tok/s':>11} {'eval/train':>10}"
    )
    for shape in args.shapes:
        for mode, (dtype, compile_) in MODES.items():
            try:
                params, rate, flops, flops_head, memory, eval_rate = measure(
                    shape, dtype, compile_, args.batch, args.steps, device
                )
            except torch.OutOfMemoryError:
                print(f"{shape:>11} {'':>7} {mode:>15} out of memory at batch {args.batch}")
                torch.cuda.empty_cache()
                continue
            mfu = f"{flops / peak:6.1%} {flops_head / peak:8.1%}" if peak else f"{'':>6} {'':>8}"
            print(
                f"{shape:>11} {params / 1e6:6.0f}M {mode:>15} {rate:10,.0f} {mfu} {memory:8.1f} {eval_rate:11,.0f} "
                f"{eval_rate / rate:9.1f}x",
                flush=True,
            )
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
