"""A Llama-shaped model's own speed (rmsnorm, rope, swiglu; config.yaml's `small` before the
defaults sweep, 4 x 192 at context 128, where the README's figure was measured): training
tokens/s with lmcore's RMSNorm (torch's fused `F.rms_norm`) and RoPE (pairs rotated as complex
numbers) against the formulations they replaced (RMSNorm written out in Python ops; RoPE
stacking the rotated halves), written below as the reference and patched in. Interleaved
rounds, same process, same batches.

    python bench/default_model_speed.py [--rounds 5] [--steps 20] [--threads 2]
"""

import argparse
import time

import torch

from lmcore.model import gpt as lm
from lmcore.model.config import ModelConfig
from lmcore.model.gpt import GPT


def reference_rms_norm(self, x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def reference_rope(x, cos, sin):
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2).type_as(x)


def tokens_per_s(model, opt, batches):
    start = time.perf_counter()
    for x, y in batches:
        model(x, y)[1].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return sum(x.numel() for x, _ in batches) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # config.yaml's `small` and model_defaults' batch and context before the defaults sweep
    cfg = ModelConfig(
        vocab_size=4096,
        d_model=192,
        n_layers=4,
        n_heads=6,
        context_length=128,
        norm="rmsnorm",
        position="rope",
        mlp="swiglu",
        bias=False,
        tie_embeddings=True,
    )
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    batches = [(torch.randint(0, 4096, (16, 128)), torch.randint(0, 4096, (16, 128))) for _ in range(args.steps)]
    ours = (lm.RMSNorm.forward, lm.apply_rope)
    tokens_per_s(model, opt, batches[:3])  # warm-up
    rates = {"reference": [], "lmcore": []}
    for _ in range(args.rounds):
        for name, (norm, rope) in (("reference", (reference_rms_norm, reference_rope)), ("lmcore", ours)):
            lm.RMSNorm.forward, lm.apply_rope = norm, rope
            rates[name].append(tokens_per_s(model, opt, batches))
    lm.RMSNorm.forward, lm.apply_rope = ours
    best = {name: max(r) for name, r in rates.items()}
    print(
        f"small (4 x 192, rmsnorm, rope, swiglu), batch 16 x 128, fp32, {args.threads} threads, best of {args.rounds} "
        "rounds:"
    )
    for name, rate in best.items():
        print(f"  {name:<10} {rate:>9,.0f} tokens/s")
    print(f"  lmcore / reference: {best['lmcore'] / best['reference']:.3f}x")


if __name__ == "__main__":
    main()
