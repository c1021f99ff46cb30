"""Every GPU figure the README quotes, in one run of under 8 minutes on one GPU machine, written to one
JSON file (bench/gpu_check.sh is the command to type):

- scale: bench/gpu_scale.py's 124M GPT-2 and ~350M Llama shapes at context 1024 in fp32 (TF32), bf16,
  bf16 + compile: tokens/s, MFU against the data sheet, GPU memory, evaluation against training tokens/s;
- fsdp: a ~1.3 B Llama shape (context 2048) sharded with FSDP2 over every GPU, bf16, with activation
  checkpointing; and activation checkpointing on against off at the same batch (the memory it saves);
- ddp_nccl: DDP over every GPU with nccl, where there are 2 or more;
- precision_auto: `precision: auto` against fp32 and bf16, and what auto chose.

Each figure comes from a fresh process (bench/train_step.py; torchrun for more than one GPU), so that
peak memory is that configuration's. Without a GPU the same sections run CI-sized on the CPU (tiny
shapes, two gloo processes) so that the code paths are exercised, and "missing" says what is not
measured.

    python bench/gpu_check.py --out gpu_check.json
"""

import argparse
import datetime
import json
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cpu_name  # noqa: E402
from lmcore.train.runtime import data_sheet_peak  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def step(processes, *args):
    """bench/train_step.py's JSON row, in `processes` processes (torchrun above 1); an error as a row too."""
    script = [os.path.join(HERE, "train_step.py"), *map(str, args)]
    if processes > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *script]
    else:
        cmd = [sys.executable, *script]
    done = subprocess.run(cmd, capture_output=True, text=True)
    rows = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not rows:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"args": list(map(str, args)), "processes": processes, "error": " | ".join(tail)}
    return json.loads(rows[-1])


def scale_rows(steps, batch):
    """bench/gpu_scale.py's table, as rows."""
    from gpu_scale import MODES, SHAPES, measure

    rows = []
    for shape in SHAPES:
        for mode, (dtype, compile_) in MODES.items():
            try:
                params, rate, flops, flops_head, memory, eval_rate = measure(
                    shape, dtype, compile_, batch, steps, torch.device("cuda")
                )
            except torch.OutOfMemoryError:
                rows.append({"shape": shape, "mode": mode, "error": f"out of memory at batch {batch}"})
                torch.cuda.empty_cache()
                continue
            peak = data_sheet_peak(torch.cuda.get_device_name())
            rows.append(
                {"shape": shape, "mode": mode, "parameters": params, "tokens_per_s": rate,
                 "mfu": flops / peak[0] if peak else None, "mfu_with_head": flops_head / peak[0] if peak else None,
                 "gpu_gib": memory, "eval_tokens_per_s": eval_rate, "eval_over_train": eval_rate / rate}
            )  # fmt: skip
            torch.cuda.empty_cache()
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    gpus = torch.cuda.device_count()
    figures = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": torch.cuda.get_device_name() if gpus else cpu_name(),
        "gpus": gpus,
        "torch": torch.__version__,
        "missing": [],
    }
    if gpus:
        procs, big, small, batch = gpus, "llama-1.3B", "gpt2-124M", 8
        figures["scale"] = scale_rows(args.steps, 16)
    else:
        procs, big, small, batch = 2, "cpu-small", "cpu-tiny", 4
        figures["missing"].append("every GPU figure: no CUDA device here; the sections ran CI-sized on the CPU")
        figures["scale"] = [step(1, "--shape", small, "--precision", p, "--steps", 2) for p in ("fp32", "bf16")]
    common = ["--steps", args.steps if gpus else 2, "--batch", batch]
    sharded = ["--shape", big, "--parallelism", "fsdp", "--precision", "auto", *common]
    figures["fsdp"] = step(procs, *sharded, "--checkpointing")
    # in one process, what activation checkpointing saves, alone
    figures["activation_checkpointing"] = {"off": step(1, *sharded), "on": step(1, *sharded, "--checkpointing")}
    if procs >= 2:
        figures["ddp_nccl" if gpus else "ddp_gloo"] = step(procs, "--shape", small, "--precision", "auto", *common)
    if gpus < 2:
        figures["missing"].append("ddp_nccl: fewer than 2 GPUs")
    figures["precision_auto"] = {
        p: step(1, "--shape", small, "--precision", p, *common) for p in ("auto", "fp32", "bf16")
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(figures, f, indent=2)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
