"""Helpers shared by the benchmark scripts: a synthetic corpus and a child process's peak memory."""

import json
import os
import platform
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def snakemake_command(work, *args, configfile):
    """`python -m snakemake` on the Snakefile in `work`; the config file last (it takes every word after it)."""
    snakefile = os.path.join(REPO, "Snakefile")
    return [sys.executable, "-m", "snakemake", "-s", snakefile, "-d", work, *args, "--configfile", configfile]


WORDS = np.array(
    (
        "the of and to in a is that for it as was with be by on not he I this are or his from at which "
        "but have an they you were her she there been one all we their has would when if so no will more "
        "king queen love death night day heart blood crown sword sweet fair noble honour grace time world "
        "life eyes heaven earth soul tongue hand speak hear come make thee thou thy lord lady"
    ).split()
)


SEPARATORS = np.array(
    [" "] * 44 + ["\n"] * 5 + ["\n\n"], dtype=object
)  # a line ends after 10% of words, a paragraph after 2%


def write_corpus(path, megabytes, seed=0, words_per_doc=600, duplicates=0.0):
    """JSON Lines documents of random words, lines and paragraphs, about `megabytes` MB in all. A
    share `duplicates` of the documents repeat an earlier one, half exactly, half with 1% of the
    words changed (what near-duplicate detection should catch)."""
    rng = np.random.default_rng(seed)
    written, i, earlier = 0, 0, []
    with open(path, "w", encoding="utf-8") as f:
        while written < megabytes * 1e6:
            if earlier and rng.random() < duplicates:
                words = earlier[rng.integers(len(earlier))].copy()
                if rng.random() < 0.5:
                    changed = rng.integers(0, len(words), len(words) // 100)
                    words[changed] = WORDS[rng.integers(0, len(WORDS), len(changed))]
            else:
                words = WORDS[rng.integers(0, len(WORDS), words_per_doc)]
                if len(earlier) < 1000:
                    earlier.append(words)
            tokens = np.empty(2 * len(words), dtype=object)
            tokens[0::2], tokens[1::2] = words, SEPARATORS[rng.integers(0, len(SEPARATORS), len(words))]
            line = json.dumps({"id": f"bench/{i}", "text": "".join(tokens), "meta": {}}) + "\n"
            f.write(line)
            written += len(line.encode())
            i += 1
    return i


def own_peak_mb():
    """This process's peak resident memory in MB (VmHWM): what a child reports of itself. The rusage a parent
    reads with wait4 keeps the parent's own peak from before the child's exec, a floor under every child."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def run_child(args):
    """Run `python args...`; return (its JSON output, its peak resident memory in MB: the `peak_mb` it
    reports, else what wait4 says)."""
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"child {args} failed with {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    return result, result.get("peak_mb", usage.ru_maxrss / 1024)


def cpu_name():
    """The CPU's model name, as /proc/cpuinfo gives it (the machine a figure was measured on)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()
