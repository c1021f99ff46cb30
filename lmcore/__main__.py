"""`python -m lmcore generate results/models/NAME --prompt "ROMEO:"`: play with a trained model.
`python -m lmcore chat results/models/NAME [--system S] [--message M]`: a conversation with it.
`python -m lmcore plan CONFIG`: the runs of a config's scaling studies, before any training.

`python -m lmcore train ...` is what the train rule runs, in one process or under torchrun.
"""

import argparse
import json
import math
import os
import sys

import torch

from lmcore.model.converse import one_shot, terminal
from lmcore.model.folder import DamagedModel, load_model
from lmcore.model.generate import decode, stream_text
from lmcore.schema import SCHEMA_PATH
from lmcore.tokens.chat import chat_ids
from lmcore.train.config import TrainJob, world_size
from lmcore.train.loop import Stopped, train
from lmcore.train.runtime import pick_device
from lmcore.workflow.joblog import Timestamped


def number(kind, low, high=math.inf, low_open=False, text=""):
    """An argparse type: a finite `kind` in [low, high] (or (low, high] with low_open), else a usage
    error naming the range."""

    def parse(value):
        try:
            x = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{value!r} is not {'an integer' if kind is int else 'a number'}"
            ) from None
        if not math.isfinite(x) or x < low or (low_open and x == low) or x > high:
            raise argparse.ArgumentTypeError(f"must be {text}, got {value}")
        return x

    return parse


def model_folder(path):
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise argparse.ArgumentTypeError(
            f"{path!r} is not a trained model's folder (no config.json in it), e.g. results/models/<name>"
        )
    return path


def print_plan(path):
    """One line per run of every scaling study: what `snakemake` would train, with its size and length."""
    import yaml

    from lmcore.config import prepare_config
    from lmcore.evaluation.scaling import plan

    with open(path, encoding="utf-8") as f:
        config = prepare_config(yaml.safe_load(f), SCHEMA_PATH)
    rows = sorted(plan(config), key=lambda r: (r["study"], r["budget"], r["N"]))
    if not rows:
        print(f"{path}: no scaling study (see `scaling:` in the schema)")
        return
    print(f"{'model':<28} {'N':>11} {'D (tokens)':>12} {'D / N':>8} {'steps':>7}")
    for r in rows:
        m = config["models"][r["model"]]
        steps = math.ceil(r["D"] / (m["batch_size"] * m["context_length"] * m["grad_accum"] * world_size(m)))
        print(f"{r['model']:<28} {r['N']:>11,} {r['D']:>12,.0f} {r['D'] / r['N']:>8.1f} {steps:>7,}")
    print(f"{len(rows)} runs, {sum(r['budget'] for r in rows):.3g} training FLOPs in all")


def sampling_arguments(parser, max_new_tokens):
    """The model folder and how to sample from it: what generate and chat share."""
    parser.add_argument("model_dir", type=model_folder, help="a results/models/<name> folder")
    parser.add_argument("--max-new-tokens", type=number(int, 1, text="1 or more"), default=max_new_tokens)
    parser.add_argument(
        "--temperature", type=number(float, 0, text="0 (greedy) or more"), default=0.8, help="0 is greedy"
    )
    parser.add_argument(
        "--top-k", type=number(int, 1, text="1 or more"), default=None, help="keep the k most likely tokens"
    )
    top_p = number(float, 0, 1, low_open=True, text="in (0, 1]")
    parser.add_argument("--top-p", type=top_p, default=0.9, help="nucleus mass; 1 keeps all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--beams", type=number(int, 1, text="1 or more"), default=1, help="beam search's width; 1 samples (or greedy)"
    )
    parser.add_argument("--length-penalty", type=number(float, -math.inf, text="a number"), default=1.0)
    parser.add_argument(
        "--early-stopping", choices=["false", "true", "never"], default="false", help="when beam search stops"
    )
    parser.add_argument("--device", default="auto")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lmcore")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="continue a prompt with a trained model, streaming tokens as they come")
    sampling_arguments(g, max_new_tokens=200)
    g.add_argument("--prompt", default="\n")
    g.add_argument("--num-samples", type=number(int, 1, text="1 or more"), default=1)
    c = sub.add_parser("chat", help="a conversation with a trained model at the terminal (Ctrl-D leaves), or one reply")
    sampling_arguments(c, max_new_tokens=256)
    c.add_argument("--system", default=None, help="the system message that opens the conversation")
    c.add_argument("--message", default=None, help="one message: print the reply as JSON and leave (for scripts)")
    t = sub.add_parser("train", help="train one model (what the train rule runs, also under torchrun)")
    t.add_argument("--config-json", required=True, help="the model's resolved configuration, as JSON")
    t.add_argument("--tokenizer", required=True)
    t.add_argument("--manifest", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--checkpoints", required=True)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument(
        "--mem-mb",
        type=int,
        default=None,
        help="the job's memory: a CPU run that needs more stops before its first step",
    )
    p = sub.add_parser(
        "plan", help="list the runs of a config's scaling studies: N, tokens and steps of each, before any training"
    )
    p.add_argument("config", help="a config file, e.g. configs/scaling.yaml")
    args = parser.parse_args(argv)
    if args.command == "plan":
        return print_plan(args.config)
    if args.command == "train":  # under torchrun, into the job's log: timestamped like the rest of it
        sys.stdout = sys.stderr = Timestamped(sys.stdout)
        try:
            entry = json.loads(args.config_json)
            train(TrainJob(entry, args.tokenizer, args.manifest, args.out, args.checkpoints, args.threads, args.mem_mb))
        except Stopped as stopped:
            print(stopped)
            raise SystemExit(143) from None
        # Everything is written and the process group destroyed: leave without running destructors (the run
        # is still referenced, lmcore.train.loop.KEPT: freeing DDP's reducer now can hang).
        sys.stdout.flush()
        os._exit(0)

    with torch.no_grad():
        try:
            model, tokenizer = load_model(args.model_dir, pick_device(args.device))
        except DamagedModel as e:
            parser.error(str(e))
        if args.command == "generate":
            return sample(model, tokenizer, args)
        sampling = decoding(args)
        try:
            chat_ids(tokenizer)
        except ValueError as e:
            parser.error(str(e))
        if args.message is not None:
            return one_shot(model, tokenizer, args.message, args.system, sampling)
        return terminal(model, tokenizer, args.system, sampling)


SAMPLING = ("max_new_tokens", "temperature", "top_k", "top_p", "seed", "beams", "length_penalty")
EARLY_STOPPING = {"false": False, "true": True, "never": "never"}


def decoding(args):
    """The decoding settings of generate's and chat's options, as lmcore.model.generate.decode takes them."""
    return {**{k: getattr(args, k) for k in SAMPLING}, "early_stopping": EARLY_STOPPING[args.early_stopping]}


def sample(model, tokenizer, args):
    """Stream `num_samples` continuations of the prompt to stdout (beam search's when it ends)."""
    prompt_ids = tokenizer.encode(args.prompt)
    sampling = decoding(args)
    for n in range(args.num_samples):
        if args.num_samples > 1:
            print(f"--- sample {n + 1} ---")
        sys.stdout.write(args.prompt)
        tokens = decode(model, prompt_ids, stop={tokenizer.eot_id}, **{**sampling, "seed": args.seed + n})
        for piece in stream_text(tokenizer, tokens):
            sys.stdout.write(piece)
            sys.stdout.flush()
        print()


if __name__ == "__main__":
    main()
