"""Where a training run executes: the device, its precision, the processes of a DDP run, and the
peak FLOP/s that MFU is measured against."""

import contextlib
import os
import platform
import time

import torch
import torch.distributed as dist

from lmcore.io import cache_path, read_json, write_json

# Dense bf16 peaks from the vendors' data sheets, in TFLOP/s. A device name is matched against
# the longest key it contains, so that "NVIDIA L40S" gets L40S, not L4, and "H100 PCIe" its own
# figure, not the SXM one.
PEAK_TFLOPS = {
    "H200": 989,
    "H100": 989,  # SXM; the NVL card has a lower clock
    "H100 NVL": 835,
    "H100 PCIe": 756,
    "A100": 312,
    "L40S": 362,
    "L40": 181,
    "L4": 121,
    "A10": 125,
}


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
    return any("amx_bf16" in line for line in open_lines("/proc/cpuinfo"))


def autocast_dtype(precision, device):
    """bf16 autocast where asked, or with `auto` where it pays: GPUs that support it, CPUs with AMX."""
    if precision == "auto":
        fast = torch.cuda.is_bf16_supported() if device.type == "cuda" else device.type == "cpu" and cpu_has_amx()
        precision = "bf16" if fast else "fp32"
    return torch.bfloat16 if precision == "bf16" else None


def autocast(device, dtype):
    """The autocast context for `dtype` (from autocast_dtype) on `device`; none for fp32."""
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def use_tf32(device):
    """fp32 matrix products on tensor cores (TF32) on CUDA, as every GPU training loop does."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True


def use_compile(setting, device):
    """torch.compile where asked, or with `auto` on GPUs: on a 2-core CPU it bought 1.006x for 58 s of compiling."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


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


def data_sheet_peak(name):
    """(FLOP/s, matched key) for a GPU name from PEAK_TFLOPS, the longest key it contains; None if none does."""
    matches = [key for key in PEAK_TFLOPS if key in name]
    if not matches:
        return None
    key = max(matches, key=len)
    return PEAK_TFLOPS[key] * 1e12, key


def peak_cache_path():
    return cache_path("peak_flops.json")


def machine_key(device, dtype):
    """What a measured peak holds for: the processor, the dtype, the threads and the torch build."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = next(
            (line.split(":", 1)[1].strip() for line in open_lines("/proc/cpuinfo") if line.startswith("model name")),
            platform.processor() or platform.machine(),
        )
    threads = torch.get_num_threads()
    return f"{name} | {device.type} | {dtype or torch.float32} | {threads} threads | torch {torch.__version__}"


def open_lines(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except OSError:
        return []


def matmul_rate(device, dtype, n=2048, rounds=5, seconds=0.4):
    """FLOP/s of n x n matmuls: the best of `rounds` timings (another job on the same cores only slows a round down)."""
    # Its own generator: a draw from the global one would change the run's dropout masks whenever a
    # peak is measured (on a machine's first run), so that a rerun would not repeat the run.
    generator = torch.Generator(device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype or torch.float32, generator=generator)
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
    return best


def record_peak(device, dtype, rate):
    """Keep `rate` as this machine's peak if it beats the one kept: a peak only rises, so an MFU is never above 1."""
    path, key = peak_cache_path(), machine_key(device, dtype)
    peaks = read_json(path) if os.path.exists(path) else {}
    if rate > peaks.get(key, 0.0):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(path, {**peaks, key: rate})


def peak_flops(device, dtype):
    """(FLOP/s, where it comes from): the device's peak that MFU is measured against.

    Known GPUs: the data sheet. Elsewhere matmuls measured once per machine, kept in
    ~/.cache/lmcore/peak_flops.json (a one-off 1 s timing per job read 31.8 to 68.0 GFLOP/s on
    one VM: bench/peak.py); a training run that goes faster raises it (`record_peak`)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        known = data_sheet_peak(name)
        if known:
            return known[0], f"data sheet ({name}, dense bf16)"
    path, key = peak_cache_path(), machine_key(device, dtype)
    kept = (read_json(path) if os.path.exists(path) else {}).get(key)
    if kept is None:
        record_peak(device, dtype, matmul_rate(device, dtype))
        kept = read_json(path)[key]
    return kept, f"best measured on this machine ({key}), kept in {path}"


def memory_needed_mb(parameters, micro_batch_tokens, cfg, processes=1, shards=1, checkpointed=False, trainable=None):
    """Host memory of a CPU run's `processes` on one node, in MB, about: per process the torch runtime
    (400 MB), 20 bytes a parameter (weights, gradients, AdamW's two moments: 16, divided over `shards`
    processes under fsdp; the best weights kept: 4; with LoRA gradients and moments only for the
    `trainable` ones), and per token of a micro-batch the logits with
    their softmax and gradient (12 bytes x vocab_size) and 50 bytes x n_layers x d_model of the
    blocks' activations (attention is SDPA's, with no context_length^2 matrix); with activation
    checkpointing 4 bytes x n_layers x d_model (each block's input) and one block's 50 x d_model
    (measured against it: docs/benchmarks.md)."""
    trainable = parameters if trainable is None else trainable  # LoRA: gradients and moments of the adapters alone
    state = (4 * parameters + 12 * trainable) / shards + 4 * parameters
    layers = (4 * cfg.n_layers + 50) if checkpointed else 50 * cfg.n_layers
    per_process = 400e6 + state + micro_batch_tokens * (12 * cfg.vocab_size + layers * cfg.d_model)
    return processes * per_process / 1e6


def check_memory(need_mb, mem_mb, batch_size, cfg, log):
    """Stop before the first step when the estimate exceeds the job's memory (`resources.train.mem_mb`)."""
    if mem_mb and need_mb > mem_mb:
        raise MemoryError(
            f"training needs about {need_mb:,.0f} MB (batch_size {batch_size} x context_length {cfg.context_length:,} "
            f"tokens a micro-batch, vocab_size {cfg.vocab_size:,}), more than the job's mem_mb of {mem_mb:,}: lower "
            "batch_size "
            f"(and raise grad_accum to keep the tokens a step) or context_length, or raise resources.train.mem_mb"
        )
    log(f"memory: about {need_mb:,.0f} MB" + (f" of the job's {mem_mb:,}" if mem_mb else ""))
