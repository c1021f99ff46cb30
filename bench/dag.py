"""Time `snakemake -n` on a config with 64 parts and 20 models (target: under 5 s on 2 cores).

    python bench/dag.py [--parts 64] [--models 20]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", type=int, default=64)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with open(os.path.join(REPO, "config.yaml"), encoding="utf-8") as f:
        config = yaml.safe_load(f)
    config["sources"]["shakespeare"]["parts"] = args.parts
    config["models"] = {f"m{i:02d}": {"d_model": 64 * (1 + i % 4), "n_layers": 2 + i % 3, "n_heads": 4} for i in range(args.models)}
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "config.yaml")
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f)
        cmd = [sys.executable, "-m", "snakemake", "-s", os.path.join(REPO, "Snakefile"), "-d", work, "-n", "--quiet", "all", "--configfile", path]
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            result = subprocess.run(cmd, capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            if result.returncode:
                raise SystemExit(result.stderr[-2000:])
    print(f"snakemake -n, {args.parts} parts, {args.models} models: best {min(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s")


if __name__ == "__main__":
    main()
