"""How a model is spread over the processes of a run (how they are started: lmcore.train.launch).

DDP: every process holds the whole model, optimizer state included, and gradients are averaged
after each backward pass. FSDP2 (`fully_shard`, Zhao et al. 2023): each block's parameters,
gradients and AdamW moments are split into `world` shards, one per process; a block's full
weights exist only while it computes, gathered just before and freed after. Per process that is
16 bytes x parameters / world for weights, gradients and moments in fp32, against DDP's 16 x
parameters (lmcore.train.runtime.memory_needed_mb).
"""

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
