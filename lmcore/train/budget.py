"""How long a run trains: `max_steps` (from max_steps, max_tokens or max_flops, lmcore.train.loop.setup),
and with `max_minutes` a budget of training-step time. The budget plans the steps it allows once it has
timed some, so that the schedule decays to min_lr when the time runs out, and stops the run at the first
step past it. Every process takes the same decision (`agree`), from the slowest process's clock.
"""

import torch
import torch.distributed as dist

# The plan waits until this attempt has timed this many steps after its first, and this share of the
# budget: a default model's first 10 steps ran 12% slower than its average (docs/benchmarks.md).
PLAN_AFTER, PLAN_SHARE = 10, 0.05


def agree(value, op, world, device):
    """`value` reduced over the processes with `op` (a dist.ReduceOp), so that every process takes the same
    decision from its own clock; the value itself in a single process."""
    if world == 1:
        return value
    t = torch.tensor(float(value), device=device)
    dist.all_reduce(t, op=op)
    return t.item()


class Budget:
    """The steps a run takes. `max_steps` is written here only: at construction, by `start` from a resumed
    run's plan, and by the plan itself."""

    def __init__(self, max_steps, max_minutes, world, device, log):
        self.max_steps, self.max_minutes = max_steps, max_minutes
        self.world, self.device, self.log = world, device, log
        self.spent = False
        self.timed_steps, self.timed_s = 0, 0.0  # this attempt's steps after its first, for the plan

    def start(self, state):
        """Take up a resumed run's plan, so that it keeps its schedule; a run resumed past its budget takes no step."""
        self.max_steps = state.planned_steps or self.max_steps
        self.first_step = state.step + 1
        self.spent = self.over(state)

    def done(self, state):
        return state.step >= self.max_steps or self.spent

    def over(self, state):
        """Whether the budget of step time is spent: on any process, so that all stop at the same step."""
        if self.max_minutes is None:
            return False
        return bool(agree(state.elapsed_s >= self.max_minutes * 60, dist.ReduceOp.MAX, self.world, self.device))

    def update(self, state, step_s):
        """After a step that took `step_s`: time it (the attempt's first is not its rate), plan once, and
        whether the budget is spent."""
        if self.max_minutes is not None and state.step > self.first_step:
            self.timed_steps, self.timed_s = self.timed_steps + 1, self.timed_s + step_s
            if state.planned_steps is None:
                self.plan(state)
        self.spent = self.over(state)

    def plan(self, state):
        """Once PLAN_AFTER steps and PLAN_SHARE of the budget are timed by every process: the steps the rest
        of the budget allows at their rate (the slowest process's), at most max_steps; kept in the state."""
        budget = self.max_minutes * 60
        ready = self.timed_steps >= PLAN_AFTER and self.timed_s >= PLAN_SHARE * budget
        if not agree(ready, dist.ReduceOp.MIN, self.world, self.device):
            return
        steps_left = max(1, int((budget - state.elapsed_s) * self.timed_steps / self.timed_s))
        steps_left = agree(steps_left, dist.ReduceOp.MIN, self.world, self.device)
        state.planned_steps = self.max_steps = min(self.max_steps, state.step + int(steps_left))
        step_s = self.timed_s / self.timed_steps
        self.log(f"max_minutes {self.max_minutes:g}: {step_s:.3g} s a step, {self.max_steps:,} steps planned")
