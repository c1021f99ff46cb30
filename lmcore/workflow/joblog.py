"""A job's log: every line timestamped, how fast it read its input, and how a failed job's error
reaches the console. Left out of every rule's code digest (lmcore.workflow.closure): rewording a log
line changes no output, so it reruns nothing."""

import os
import sys
import time
import traceback

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What lmcore raises for bad input (a config value, a damaged file, a diverged run), with a message that names it.
MESSAGE_ONLY = (ValueError, RuntimeError, FloatingPointError, OSError)


class Timestamped:
    """A text stream that starts every line with the local date and time; a progress bar's redraw (after a
    carriage return) is a line too."""

    def __init__(self, stream):
        self.stream, self.line_start = stream, True

    def write(self, text):
        for piece in text.splitlines(keepends=True):
            if self.line_start:
                self.stream.write(time.strftime("%Y-%m-%d %H:%M:%S "))
            self.stream.write(piece)
            self.line_start = piece.endswith(("\n", "\r"))
        return len(text)

    def __getattr__(self, name):  # flush, fileno, encoding, ... of the stream beneath
        return getattr(self.stream, name)


def raised_by_lmcore(error):
    """Whether lmcore's own code raised `error` as an error of the input (not a bug, nor a library's)."""
    tb = error.__traceback__
    while tb and tb.tb_next:
        tb = tb.tb_next
    where = os.path.abspath(tb.tb_frame.f_code.co_filename) if tb else ""
    return isinstance(error, MESSAGE_ONLY) and where.startswith(PACKAGE_DIR + os.sep)


CONSOLE = {}  # the job's own stderr and log path, which Snakemake shows, once redirect_output has run


def warn(message):
    """A line a person should see without opening the job's log: to the log, and to the console (the job's
    stderr) where redirect_output sent the output to a log."""
    print(f"Warning: {message}")
    if CONSOLE:
        CONSOLE["stream"].write(f"Warning in {CONSOLE['log']}: {message}\n")
        CONSOLE["stream"].flush()


def redirect_output(log_path):
    """Send this process's stdout and stderr, line-buffered and timestamped, to a job's log file. An error
    the job does not catch goes to the log with its traceback, and to the console (the job's own stderr,
    which Snakemake shows) as its message alone when lmcore raised it for bad input (the cause is named),
    with its traceback otherwise."""
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    stream = Timestamped(open(log_path, "a", buffering=1, encoding="utf-8"))
    console = sys.stderr
    CONSOLE.update(stream=console, log=log_path)
    sys.stdout = sys.stderr = stream

    def report(kind, error, tb):
        traceback.print_exception(kind, error, tb, file=stream)
        if raised_by_lmcore(error):
            console.write(f"Error in {log_path}: {error}\n")
        else:
            traceback.print_exception(kind, error, tb, file=console)

    sys.excepthook = report
    return stream


def disk_bytes(paths):
    """The size of the files and folders (everything under them) in `paths`."""
    total = 0
    for path in paths:
        if os.path.isdir(path):
            total += sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
        else:
            total += os.path.getsize(path)
    return total


def data_rate(paths, start):
    """'12.3 MB in 2.5 s (4.9 MB/s)': the size of the files (or folders) a job read since `start` (perf_counter)."""
    nbytes = disk_bytes([paths] if isinstance(paths, (str, os.PathLike)) else paths)
    seconds = time.perf_counter() - start
    return f"{nbytes / 1e6:,.1f} MB in {seconds:.1f} s ({nbytes / 1e6 / max(seconds, 1e-9):,.1f} MB/s)"


def duration(seconds):
    """4m05s, 1h02m, 12s."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def progress_line(row, max_steps, elapsed_s):
    """step 300/600 (50%) | loss 4.91 | val 4.95 | lr 1.2e-03 | 2.4k tok/s | 4m10s elapsed, ETA 4m05s"""
    step = row["step"]
    val = f" | val {row['val_loss']:.3f}" if row["val_loss"] is not None else ""
    eta = elapsed_s / step * (max_steps - step)
    return (
        f"step {step}/{max_steps} ({step / max_steps:.0%}) | loss {row['loss']:.3f}{val} | lr {row['lr']:.1e} | "
        f"{row['tokens_per_s'] / 1000:.1f}k tok/s | {duration(elapsed_s)} elapsed, ETA {duration(eta)}"
    )
