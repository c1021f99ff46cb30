"""Live training curves beside metrics.jsonl: TensorBoard event files and a Weights & Biases run, as a
model entry's `loggers` asks. Neither package is imported unless asked for. Rank 0 logs; the folders are
the model's own, results/models/<name>/tensorboard/ and results/models/<name>/wandb/:

    tensorboard --logdir results/models

The evaluate job adds the test split's figures to the same run (`log_evaluation`).
"""

import glob
import hashlib
import json
import netrc
import os
import shutil
from urllib.parse import urlparse

from lmcore.io import atomic_open, read_json

TEST_EVENTS = ".test"  # the suffix of the TensorBoard event file that holds the test split's figures


def config_digest(entry):
    """Twelve hex digits of the model entry: runs of the same configuration share it."""
    return hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()[:12]


def wandb_mode():
    """WANDB_MODE where the user set it; else online when an API key is at hand (WANDB_API_KEY, or
    `wandb login`'s entry in ~/.netrc), else offline: a run folder that `wandb sync` uploads later."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return "online" if netrc.netrc(os.environ.get("NETRC")).authenticators(host) else "offline"
    except (FileNotFoundError, netrc.NetrcParseError):
        return "offline"


def wandb_id_path(folder):
    return os.path.join(folder, "wandb", "run-id")


def wandb_run(folder, entry, wandb_id):
    import wandb

    return wandb.init(
        project=entry.get("wandb_project", "lmcore"),
        name=os.path.basename(os.path.normpath(folder)),
        id=wandb_id,
        resume="allow",
        dir=folder,
        config={**entry, "config_digest": config_digest(entry)},
        tags=[config_digest(entry)],
        mode=wandb_mode(),
        settings=wandb.Settings(console="off", silent=True),
    )


def log_evaluation(names, folder, entry, result, log=print):
    """The test split's loss, perplexity and bits per byte (results/eval/<model>.json) as `test/<key>` in the
    runs that training opened in `folder`: TensorBoard scalars at the last step, in an event file of their own
    that an evaluation run again replaces; the W&B run's summary. A logger turned on after training has no run
    to add to, and is named."""
    numbers = {f"test/{k}": result["test"][k] for k in ("loss", "perplexity", "bits_per_byte")}
    numbers["test/unigram_bits_per_byte"] = result["baseline"]["bits_per_byte"]
    logdir = os.path.join(folder, "tensorboard")
    if "tensorboard" in names and os.path.isdir(logdir):
        from torch.utils.tensorboard import SummaryWriter

        for old in glob.glob(os.path.join(logdir, "*" + TEST_EVENTS)):
            os.remove(old)
        with SummaryWriter(logdir, filename_suffix=TEST_EVENTS) as writer:
            step = read_json(os.path.join(folder, "summary.json"))["steps"]
            for key, value in numbers.items():
                writer.add_scalar(key, value, step)
    elif "tensorboard" in names:
        log(f"{logdir}: none (tensorboard turned on after training): the test figures are not added")
    if "wandb" in names and os.path.exists(wandb_id_path(folder)):
        with open(wandb_id_path(folder), encoding="utf-8") as f:
            run = wandb_run(folder, entry, f.read().strip())
        run.summary.update(numbers)
        run.finish()
    elif "wandb" in names:
        log(f"{wandb_id_path(folder)}: none (wandb turned on after training): the test figures are not added")


def flat(values):
    """A dict whose values TensorBoard's hyperparameters take: numbers, text and booleans; others as JSON."""
    return {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v) for k, v in values.items()}


class Loggers:
    """The loggers of one training run, opened after `start_step` steps (0: afresh; else a resumed run, whose
    TensorBoard events after its checkpoint's step are hidden and whose W&B run `wandb_id` continues)."""

    def __init__(self, names, folder, entry, start_step, wandb_id=None):
        self.tensorboard = self.wandb = None
        if "tensorboard" in names:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams

            logdir = os.path.join(folder, "tensorboard")
            if start_step == 0:  # an earlier run's curves are not this one's
                shutil.rmtree(logdir, ignore_errors=True)
            self.tensorboard = SummaryWriter(logdir, purge_step=start_step + 1 if start_step else None)
            if start_step == 0:
                for summary in hparams(flat(entry), {"final/best_val_loss": 0.0, "test/bits_per_byte": 0.0}):
                    self.tensorboard.file_writer.add_summary(summary)
        if "wandb" in names:
            self.wandb = wandb_run(folder, entry, wandb_id)
            with atomic_open(wandb_id_path(folder)) as f:  # for the evaluate job, which adds to this run
                f.write(self.wandb.id)

    @property
    def wandb_id(self):
        return self.wandb.id if self.wandb else None

    def log(self, row):
        """One row of metrics.jsonl (its `step` the x axis); val_loss only where it was measured."""
        values = {k: v for k, v in row.items() if k != "step" and v is not None}
        if self.tensorboard:
            for key, value in values.items():
                self.tensorboard.add_scalar(f"train/{key}", value, row["step"])
        if self.wandb:
            self.wandb.log({f"train/{k}": v for k, v in values.items()}, step=row["step"])

    def finish(self, summary):
        """The run's summary.json figures as the final values, and the files closed."""
        numbers = {f"final/{k}": v for k, v in summary.items() if isinstance(v, (int, float)) and v is not None}
        if self.tensorboard:
            for key, value in numbers.items():
                self.tensorboard.add_scalar(key, value, summary["steps"])
            self.tensorboard.close()
        if self.wandb:
            self.wandb.summary.update(numbers)
            self.wandb.finish()

    def close(self):
        """Closed without a summary: the run stopped (SIGTERM, divergence) and will resume."""
        if self.tensorboard:
            self.tensorboard.close()
        if self.wandb:
            self.wandb.finish(exit_code=1)
