"""What a run reports as it trains: throughput over the steps since the last report, model FLOPs
utilisation, the rows of metrics.jsonl, the progress line of the job's log and the loggers
(TensorBoard, W&B: lmcore.train.loggers).
"""

import time

from lmcore.train.runtime import record_peak
from lmcore.workflow.joblog import progress_line


class Meter:
    def __init__(self, flops_per_token, peak, peak_source, log_interval, log, loggers=None):
        self.flops_per_token, self.peak, self.peak_source = flops_per_token, peak, peak_source
        self.peak_raised = False  # written to the machine's cache by `close`
        self.log_interval, self.log, self.loggers = log_interval, log, loggers
        self.window_tokens, self.window_start = 0, time.perf_counter()
        self.first_step = None

    def mfu(self, tokens_per_s):
        """Model FLOPs utilisation. A rate above the peak becomes the peak, so that no MFU is above 1."""
        rate = self.flops_per_token * tokens_per_s
        if rate > self.peak:
            self.peak, self.peak_raised = rate, True
            self.peak_source = "the rate this run reached, above the peak measured before"
        return rate / self.peak

    def step(self, state, tokens, step_s):
        """Count a step's tokens; after an attempt's first step a person sees the run is under way (its time
        is not the steps' rate)."""
        self.window_tokens += tokens
        if self.first_step is None:
            self.first_step = state.step
            if self.log_interval > 1:
                self.log(f"step {state.step} took {step_s:.3g} s; progress every {self.log_interval} steps")

    def report(self, state, max_steps, loss, val_loss, lr, grad_norm, extra=None):
        """At each log_interval and each validation: a row of metrics (kept in `state.metrics`), the progress
        line and the loggers; the throughput window starts again."""
        if state.step % self.log_interval != 0 and val_loss is None:
            return
        tokens_per_s = self.window_tokens / (time.perf_counter() - self.window_start)
        row = dict(step=state.step, tokens=state.tokens, loss=loss, val_loss=val_loss, lr=lr, grad_norm=grad_norm,
                   tokens_per_s=tokens_per_s, mfu=self.mfu(tokens_per_s), elapsed_s=state.elapsed_s,
                   **(extra or {}))  # fmt: skip
        state.metrics.append(row)
        self.log(progress_line(row, max_steps, state.elapsed_s))
        if self.loggers:
            self.loggers.log(row)
        self.window_tokens, self.window_start = 0, time.perf_counter()

    def close(self, device, dtype):
        """Keep a peak this run raised as the machine's (lmcore.train.runtime.record_peak)."""
        if self.peak_raised:
            record_peak(device, dtype, self.peak)
