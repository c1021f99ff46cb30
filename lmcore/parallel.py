"""How a model is spread over the processes of a run, and how those processes are started.

DDP: every process holds the whole model, optimizer state included, and gradients are averaged
after each backward pass. FSDP2 (`fully_shard`, Zhao et al. 2023): each block's parameters,
gradients and AdamW moments are split into `world` shards, one per process; a block's full
weights exist only while it computes, gathered just before and freed after. Per process that is
16 bytes x parameters / world for weights, gradients and moments in fp32, against DDP's 16 x
parameters (lmcore.runtime.memory_needed_mb).

Processes start under torchrun: on one node `--standalone`; across nodes of a SLURM job, `srun`
starts one torchrun per node and they meet at a c10d rendezvous on the job's first node (the
layout of torchtitan's multinode_trainer.slurm).
"""

import os
import socket

import torch
import torch.distributed as dist
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel as DDP


def parallelize(model, parallelism, world, device, amp_dtype, compile_):
    """The module a training step calls. fsdp shards `model` in place, block by block, then the rest
    (embeddings, final norm, head) as one unit; with bf16 the gathered weights are cast to bf16 for
    compute while gradients are reduced and kept in fp32, as torchtitan does. torch.compile takes each
    block before sharding under fsdp (torchtitan's order), the whole model otherwise."""
    if parallelism == "fsdp" and dist.is_initialized():  # a training run starts a process group when world > 1
        mp = MixedPrecisionPolicy(param_dtype=amp_dtype, reduce_dtype=torch.float32) if amp_dtype else None
        options = {"mp_policy": mp} if mp else {}
        for block in model.blocks:
            if compile_:
                block.compile()
            fully_shard(block, **options)
        fully_shard(model, **options)
        return model
    forward = torch.compile(model) if compile_ else model
    if world > 1:
        return DDP(forward, device_ids=[device.index] if device.type == "cuda" else None)
    return forward


def is_sharded(model):
    return hasattr(model, "unshard")  # what fully_shard adds to a module's class


def free_port():
    """A TCP port nobody listens on now, on this host: the rendezvous's, when this host is the job's first node."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def torchrun_command(nnodes, nproc_per_node, endpoint=None, run_id="lmcore"):
    """torchrun's arguments: `--standalone` on one node; across nodes a c10d rendezvous at `endpoint`
    (host:port of one node, the same for every launcher)."""
    cmd = ["-m", "torch.distributed.run", f"--nproc_per_node={nproc_per_node}"]
    if nnodes == 1 and endpoint is None:
        return cmd + ["--standalone"]
    return cmd + [
        f"--nnodes={nnodes}",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint={endpoint}",
        f"--rdzv_id={run_id}",
    ]


def srun_command(nodes, threads, gpus_per_node):
    """One task per node of this SLURM job, each with the node's CPUs and GPUs for its torchrun; a task
    that fails ends the others (`--kill-on-bad-exit`), so no rank waits forever at a collective."""
    cmd = ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", f"--cpus-per-task={threads}"]
    cmd += [f"--gpus-per-node={gpus_per_node}"] if gpus_per_node else []
    return cmd + ["--kill-on-bad-exit=1"]


def in_slurm_job():
    return "SLURM_JOB_ID" in os.environ
