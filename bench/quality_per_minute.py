"""Quality per CPU-minute against nanoGPT's CPU character recipe: test bits per byte on the same
test documents (the pipeline's own split of a config's corpus, the default config.yaml's unless
--config says) after an equal wall-clock of training steps.

nanoGPT's recipe is its README's run for a CPU (4 x 128, context 64, batch 12, no biases, no
dropout, lr 1e-3 warmed up over 100 iterations and cosine-decayed to 1e-4 at the last, AdamW
betas (0.9, 0.99), weight decay 0.1, clipping at 1), on characters: its vocabulary is every
character of the corpus, and an end-of-text symbol (0 bytes) follows each document, as lmcore's
shards put one after each. The model and step are bench/nanogpt_ref.py's; nothing is fetched.
lmcore's side is the pipeline as a user runs it (Snakemake, the config's models and settings).

Both sides get the same seconds of training steps. lmcore's models train with `max_minutes`: each
times its first steps, plans its schedule for the steps the budget allows, and stops at the first
step past it. nanoGPT's recipe plans its cosine for the steps that fit at its tokens/s, measured
first in interleaved rounds on random batches, and stops at the budget too if it runs slow. The
table prints the step time each really took beside its test bits per byte.

    python bench/quality_per_minute.py [--minutes 8] [--threads 2] [--models small] [--work /tmp/bench-quality]
"""

import argparse
import glob
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nanogpt_ref import Reference, reference_optimizer, reference_step, tokens_per_s  # noqa: E402

from common import REPO, snakemake_command  # noqa: E402
from lmcore.config import prepare_config  # noqa: E402
from lmcore.data.splits import SPLITS, documents_in_split  # noqa: E402
from lmcore.evaluation.perplexity import bits_per_byte  # noqa: E402
from lmcore.train.runtime import machine_key  # noqa: E402

PROBE_STEPS = 40  # per round, three rounds: about 10 s of the small models
CHAR_RECIPE = {
    "n_layers": 4,
    "d_model": 128,
    "n_heads": 4,
    "context_length": 64,
    "batch_size": 12,
    "lr": 1e-3,
    "min_lr": 1e-4,
    "warmup": 100,
    "betas": (0.9, 0.99),
    "weight_decay": 0.1,
}


def snakemake(work, config, targets, threads):
    with open(os.path.join(work, "snakemake.log"), "a", encoding="utf-8") as log:
        command = snakemake_command(work, "--cores", str(threads), *targets, configfile=config)
        subprocess.run(command, check=True, stdout=log, stderr=log)


def write_config(path, config):
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f)


def char_streams(parts, fractions):
    """Per split, the documents as character ids, each followed by the end-of-text id; the
    vocabulary (every character of every split, as nanoGPT's prepare.py) and each id's UTF-8 bytes."""
    docs = {s: [doc["text"] for doc in documents_in_split(parts, s, fractions)] for s in SPLITS}
    if any("\0" in text for texts in docs.values() for text in texts):
        raise ValueError("a document holds the character U+0000, which this bench uses as its end-of-text symbol")
    codes = {
        s: np.frombuffer("".join(t + "\0" for t in texts).encode("utf-32-le"), dtype=np.uint32)
        for s, texts in docs.items()
    }
    chars = np.unique(np.concatenate(list(codes.values())))  # "\0" (code 0) sorts first: id 0 is end-of-text
    nbytes = np.select([chars == 0, chars < 0x80, chars < 0x800, chars < 0x10000], [0, 1, 2, 3], 4)
    return {s: np.searchsorted(chars, c).astype(np.int64) for s, c in codes.items()}, nbytes


def nanogpt_lr(it, max_iters, r):
    """nanoGPT's get_lr: linear warm-up, then cosine to min_lr at max_iters."""
    if it < r["warmup"]:
        return r["lr"] * (it + 1) / (r["warmup"] + 1)
    ratio = (it - r["warmup"]) / max(max_iters - r["warmup"], 1)
    return r["min_lr"] + 0.5 * (1 + math.cos(math.pi * min(ratio, 1.0))) * (r["lr"] - r["min_lr"])


def random_windows(stream, rng, batch, T):
    start = rng.integers(0, len(stream) - T - 1, batch)
    rows = torch.from_numpy(np.stack([stream[s : s + T + 1] for s in start]))
    return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()


def train_char_model(model, opt, stream, iters, r, budget):
    """nanoGPT's loop without its evaluations, to `iters` or `budget` seconds; returns (steps, seconds)."""
    rng = np.random.default_rng(1337)
    start = time.perf_counter()
    for it in range(iters):
        if time.perf_counter() - start >= budget:
            return it, time.perf_counter() - start
        for group in opt.param_groups:
            group["lr"] = nanogpt_lr(it, iters, r)
        reference_step(model, opt, *random_windows(stream, rng, r["batch_size"], r["context_length"]))
    return iters, time.perf_counter() - start


@torch.no_grad()
def char_bits_per_byte(model, stream, nbytes, T, batch=64):
    """Every character of the test stream predicted once, in non-overlapping windows (as lmcore's evaluate)."""
    model.eval()
    nats, n_bytes = 0.0, 0
    starts = list(range(0, len(stream) - 1, T))
    for i in range(0, len(starts), batch):
        rows = [stream[s : s + T + 1] for s in starts[i : i + batch]]
        for length in sorted({len(r) for r in rows}):  # the last window is shorter
            group = torch.from_numpy(np.stack([r for r in rows if len(r) == length]))
            x, y = group[:, :-1].contiguous(), group[:, 1:].contiguous()
            nats += F.cross_entropy(model(x, y)[0].flatten(0, 1), y.flatten(), reduction="sum").item()
            n_bytes += int(nbytes[y.numpy()].sum())
    return bits_per_byte(nats, n_bytes), n_bytes


def random_batches(vocab, B, T, n):
    return [(torch.randint(0, vocab, (B, T)), torch.randint(0, vocab, (B, T))) for _ in range(n)]


def probe(runs, rounds=3):
    """Tokens/s of each (step, model, optimizer, batches) over interleaved rounds after a warm-up:
    all of its rounds' tokens over all of their time, as a long run averages the machine's swings
    (on a shared VM, +-10% between windows of a few seconds)."""
    for step, model, opt, batches in runs.values():
        tokens_per_s(step, model, opt, batches[:3])
    seconds = {name: 0.0 for name in runs}
    for _ in range(rounds):
        for name, (step, model, opt, batches) in runs.items():
            seconds[name] += sum(x.numel() for x, _ in batches) / tokens_per_s(step, model, opt, batches)
    return {name: rounds * sum(x.numel() for x, _ in runs[name][3]) / s for name, s in seconds.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=8.0, help="training time each side gets")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--config", default=os.path.join(REPO, "config.yaml"))
    parser.add_argument("--models", nargs="*", help="the config's models to train (default: all)")
    parser.add_argument("--work", default="/tmp/bench-quality")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    with open(args.config, encoding="utf-8") as f:
        user_config = yaml.safe_load(f)
    config = prepare_config(user_config, os.path.join(REPO, "schemas", "config.schema.yaml"))
    names = args.models or sorted(config["models"])
    unknown = sorted(set(names) - set(config["models"]))
    if unknown:
        raise SystemExit(f"{args.config}: no model(s) {unknown}; its models are {sorted(config['models'])}")
    budget = 60 * args.minutes

    # 1. the data stages, as the pipeline runs them
    config_path = os.path.join(work, "config.yaml")
    user_config.setdefault("resources", {})["train"] = {"threads": args.threads}
    write_config(config_path, user_config)
    tokenizers = sorted({config["models"][n]["tokenizer"] for n in names})
    snakemake(work, config_path, [f"results/shards/{t}/manifest.json" for t in tokenizers], args.threads)
    streams, nbytes = char_streams(sorted(glob.glob(f"{work}/results/dedup/*/part-*.jsonl")), config["splits"])

    # 2. nanoGPT's tokens/s on random batches, for the steps its cosine is planned for
    r = CHAR_RECIPE
    shape = {k: r[k] for k in ("n_layers", "d_model", "n_heads", "context_length")}
    torch.manual_seed(1337)
    reference = Reference(len(nbytes), **shape, bias=False)
    runs = {
        "nanoGPT char": (
            reference_step,
            reference,
            reference_optimizer(reference, r["lr"], r["betas"], r["weight_decay"]),
            random_batches(len(nbytes), r["batch_size"], r["context_length"], PROBE_STEPS),
        )
    }
    tokens_per_step = {"nanoGPT char": r["batch_size"] * r["context_length"]}
    rates = probe(runs)
    steps = {name: max(1, round(budget * rates[name] / tokens_per_step[name])) for name in runs}
    del runs

    # 3. nanoGPT's recipe on characters
    torch.manual_seed(1337)
    reference = Reference(len(nbytes), **shape, bias=False)
    opt = reference_optimizer(reference, r["lr"], r["betas"], r["weight_decay"])
    taken, seconds = train_char_model(reference, opt, streams["train"], steps["nanoGPT char"], r, budget)
    bpb, test_bytes = char_bits_per_byte(reference, streams["test"], nbytes, r["context_length"])
    rows = [
        (
            "nanoGPT char",
            sum(p.numel() for p in reference.parameters()),
            taken,
            seconds,
            taken * tokens_per_step["nanoGPT char"] / seconds,
            bpb,
            test_bytes,
        )
    ]

    # 4. lmcore's models through the pipeline, each with the same budget of step time
    for name in names:
        user_config["models"][name] = {**user_config["models"][name], "max_steps": 10**7, "max_minutes": args.minutes}
    write_config(config_path, user_config)
    snakemake(work, config_path, [f"results/eval/{n}.json" for n in names], args.threads)
    for name in names:
        with open(f"{work}/results/models/{name}/summary.json", encoding="utf-8") as f:
            summary = json.load(f)
        with open(f"{work}/results/eval/{name}.json", encoding="utf-8") as f:
            test = json.load(f)["test"]
        rows.append(
            (
                name,
                summary["parameters"],
                summary["steps"],
                summary["step_time_s"],
                summary["tokens_per_s"],
                test["bits_per_byte"],
                test["bytes"],
            )
        )

    print(
        f"{machine_key(torch.device('cpu'), None)}; {args.minutes:g} minutes of training steps each, {args.threads} "
        "threads; "
        f"test split of {args.config}"
    )
    print(
        f"{'':<14} {'parameters':>10} {'steps':>6} {'step s':>7} {'tokens/s':>9} {'test bytes':>10} {'bits/byte':>9} "
        f"{'vs nanoGPT':>10}"
    )
    base = rows[0][5]
    for name, params, n, s, rate, bpb, nb in rows:
        print(
            f"{name:<14} {params:>10,} {n:>6,} {s:>7.0f} {rate:>9,.0f} {nb:>10,} {bpb:>9.3f} "
            f"{100 * (bpb / base - 1):>+9.1f}%"
        )
    print(f"(work folder: {work})")


if __name__ == "__main__":
    main()
