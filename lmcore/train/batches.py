"""The training batches of a run: random windows of the training tokens (lmcore.tokens.shards),
drawn by one seeded generator whose state is the data position a checkpoint keeps, so that a
resumed run sees the batches of a run never interrupted.

Every rank draws the same global batch and reads and trains on its own slice of it, so that N
processes take the step one process would take on the whole batch. On a GPU the next step's
batches are drawn and copied while the current step computes (`prefetch`).
"""

import time

import numpy as np
import torch


def to_device(arrays, device):
    """Host arrays to the device; to a GPU from pinned memory, without waiting for the copy."""
    if device.type == "cuda":
        return tuple(torch.from_numpy(a).pin_memory().to(device, non_blocking=True) for a in arrays)
    return tuple(torch.from_numpy(a).to(device) for a in arrays)


class Batches:
    def __init__(self, data, seed, batch_size, context_length, grad_accum, rank, world, device):
        self.data, self.rng = data, np.random.default_rng(seed)
        self.B, self.T, self.grad_accum = batch_size, context_length, grad_accum
        self.rank, self.world, self.device = rank, world, device
        self.position = self.rng.bit_generator.state  # where the stream stands for the next step to take
        self.next = None  # the next step's micro-batches, once prefetched
        self.seconds = 0.0  # spent drawing and copying batches, over every attempt of the run

    def prefetch(self):
        """Draw the next step's micro-batches now (the position stays that of the next step to take)."""
        start = time.perf_counter()
        rows = slice(self.rank * self.B, (self.rank + 1) * self.B)
        self.next = [
            to_device(self.data.sample_batch(self.rng, self.B * self.world, self.T, rows=rows), self.device)
            for _ in range(self.grad_accum)
        ]
        self.seconds += time.perf_counter() - start

    def take(self):
        """One step's micro-batches, on the device: the prefetched ones, or drawn now."""
        if self.next is None:
            self.prefetch()
        batch, self.next = self.next, None
        self.position = self.rng.bit_generator.state
        return batch

    def state_dict(self):
        return {"position": self.position, "seconds": self.seconds}

    def load_state_dict(self, state):
        self.position = self.rng.bit_generator.state = state["position"]
        self.seconds, self.next = state["seconds"], None
