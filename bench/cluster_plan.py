"""On paper, from the formulas the code uses: a 1 B model on 10 B tokens and a 7 B model on 140 B
tokens (20 per parameter), which parallelism, how many GPUs, memory per GPU and days of training.

Parameters are counted on a model built on the meta device (no memory); memory per process is
lmcore.train.runtime.memory_needed_mb (weights, gradients and AdamW moments: 16 bytes a parameter, divided
over the processes by fsdp; activations per token of a micro-batch, fewer with activation
checkpointing), in fp32 as the formula is: bf16 activations take less. FLOPs per token are
lmcore.model.gpt.flops_per_token, times 4/3 with activation checkpointing (the forward pass runs twice).
MFU is an assumption until bench/gpu_check.sh has measured it on the GPU: --mfu.

    python bench/cluster_plan.py [--mfu 0.4] [--gpu-tflops 989] [--gpu-gb 80]
"""

import argparse

import torch

from lmcore.model.config import ModelConfig
from lmcore.model.gpt import GPT, count_parameters, flops_per_token
from lmcore.train.runtime import memory_needed_mb

LLAMA = {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "bias": False, "tie_embeddings": False}
PLANS = [
    # name, shape, tokens, parallelism, activation checkpointing, micro-batch sequences, GPUs
    ("1B on 10B tokens", dict(d_model=2048, n_layers=18, n_heads=16, context_length=2048), 10e9, "ddp", False, 8, 8),
    ("7B on 140B tokens", dict(d_model=4096, n_layers=32, n_heads=32, context_length=4096), 140e9, "fsdp", True, 4, 64),
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mfu", type=float, default=0.4, help="assumed model FLOPs utilisation")
    parser.add_argument("--gpu-tflops", type=float, default=989, help="dense bf16 peak (H100/H200 SXM: 989)")
    parser.add_argument("--gpu-gb", type=float, default=80)
    args = parser.parse_args()
    for name, shape, tokens, parallelism, checkpointed, micro_batch, gpus in PLANS:
        with torch.device("meta"):
            model = GPT(ModelConfig(vocab_size=32000, **shape, **LLAMA))
        counts = count_parameters(model)
        cfg = model.cfg
        shards = gpus if parallelism == "fsdp" else 1
        need = (
            memory_needed_mb(counts["parameters"], micro_batch * cfg.context_length, cfg, 1, shards, checkpointed)
            - 400
            - 4 * counts["parameters"] / 1e6
        )  # a GPU holds neither the host runtime nor the best weights kept
        flops = flops_per_token(cfg, counts["non_embedding_parameters"]) * (4 / 3 if checkpointed else 1)
        hours = flops * tokens / (gpus * args.gpu_tflops * 1e12 * args.mfu) / 3600
        nodes = f"{gpus // 8} node{'s' if gpus > 8 else ''} of 8"
        method = parallelism + (" + activation checkpointing" if checkpointed else "")
        print(
            f"{name}: {counts['parameters'] / 1e9:.2f} B parameters; {method} on {gpus} GPUs ({nodes}), "
            f"micro-batch {micro_batch} x {cfg.context_length}: {need / 1e3:.0f} GB per GPU of {args.gpu_gb:.0f} "
            f"(DDP would need {16 * counts['parameters'] / 1e9:.0f} GB for the training state alone); "
            f"{flops * tokens:.2g} FLOPs, {hours:.0f} h at {args.mfu:.0%} MFU"
        )


if __name__ == "__main__":
    main()
