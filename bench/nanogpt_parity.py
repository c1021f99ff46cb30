"""Same-shape parity with nanoGPT on a CPU: training tokens/s of lmcore's GPT-2-shaped model and
training step against a plain PyTorch loop of nanoGPT's maths, written in bench/nanogpt_ref.py
(LayerNorm with biases, learned positions, exact GELU, tied head, F.scaled_dot_product_attention,
AdamW with nanoGPT's decay groups, gradient clipping). Nothing is fetched. Interleaved rounds in one
process on the same batches; the best round of each counts. lmcore runs twice: with its `gelu`
(exact, as nanoGPT) and with `gelu_tanh` (GPT-2's approximation, what `gelu` meant before).
A second table splits one step into forward, backward, clipping and the optimizer.

    python bench/nanogpt_parity.py [--rounds 3] [--steps 10] [--threads 2] [--vocab 4096]
"""

import argparse
import math
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nanogpt_ref import Reference, lmcore_step, reference_optimizer, reference_step, tokens_per_s  # noqa: E402

from lmcore.model.config import ModelConfig
from lmcore.model.gpt import GPT  # noqa: E402
from lmcore.train.config import TrainConfig  # noqa: E402
from lmcore.train.optim import make_optimizer  # noqa: E402
from lmcore.train.runtime import machine_key  # noqa: E402

SHAPE = {
    "n_layers": 6,
    "d_model": 384,
    "n_heads": 6,
    "context_length": 256,
}  # the shape: nanoGPT's CPU-sized GPT-2


def phases(model, opt, batches):
    """Milliseconds per step in forward, backward, clipping and optimizer (the best of the batches)."""
    best = {"forward": math.inf, "backward": math.inf, "clip": math.inf, "optimizer": math.inf}
    for x, y in batches:
        t0 = time.perf_counter()
        loss = model(x, y)[1]
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        t3 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        for name, ms in zip(best, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            best[name] = min(best[name], 1000 * ms)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=4096)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    T = SHAPE["context_length"]
    batches = [
        (torch.randint(0, args.vocab, (args.batch, T)), torch.randint(0, args.vocab, (args.batch, T)))
        for _ in range(args.steps)
    ]
    runs = {"nanoGPT maths": (Reference(args.vocab, **SHAPE), reference_step)}
    for mlp in ("gelu", "gelu_tanh"):
        model = GPT(
            ModelConfig(vocab_size=args.vocab, **SHAPE, mlp=mlp)
        )  # norm, position, bias, tying: GPT-2's, the defaults
        runs[f"lmcore mlp={mlp}"] = (model, lmcore_step)
    opts = {
        name: reference_optimizer(m) if step is reference_step else make_optimizer(m, TrainConfig(lr=6e-4))
        for name, (m, step) in runs.items()
    }
    rates = {name: [] for name in runs}
    for name, (model, step) in runs.items():
        tokens_per_s(step, model, opts[name], batches[:2])  # warm-up
    for _ in range(args.rounds):
        for name, (model, step) in runs.items():
            rates[name].append(tokens_per_s(step, model, opts[name], batches))
    base = max(rates["nanoGPT maths"])
    print(f"{machine_key(torch.device('cpu'), None)}; {platform.machine()}")
    print(
        f"{SHAPE['n_layers']} x {SHAPE['d_model']}, context {T}, batch {args.batch}, vocab {args.vocab}, fp32, no "
        "compile, "
        f"best of {args.rounds} interleaved rounds of {args.steps} steps"
    )
    print(
        f"{'':<20} {'tokens/s':>9} {'vs nanoGPT':>10}   ms per step: {'forward':>8} {'backward':>8} {'clip':>6} "
        f"{'AdamW':>6}"
    )
    for name, (model, _) in runs.items():
        ms = phases(model, opts[name], batches)
        best = max(rates[name])
        print(
            f"{name:<20} {best:>9,.0f} {best / base:>9.3f}x   {'':>12} {ms['forward']:>8.1f} {ms['backward']:>8.1f} "
            f"{ms['clip']:>6.1f} {ms['optimizer']:>6.1f}"
        )


if __name__ == "__main__":
    main()
