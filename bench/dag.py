"""Time `snakemake -n` (the DAG built, every job planned, nothing run) on configs of growing size:

64 parts and 20 models      target under 5 s on 2 cores
256 parts                   target under 10 s
a sweep of 100 models       target under 10 s
configs/scaling.yaml        the example IsoFLOP study (15 models)

python bench/dag.py [--repeat 3]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, snakemake_command  # noqa: E402


def default_config():
    with open(os.path.join(REPO, "config.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def parts_and_models(parts, models):
    config = default_config()
    config["sources"]["shakespeare"]["parts"] = parts
    if models:
        config["models"] = {
            f"m{i:02d}": {"d_model": 64 * (1 + i % 4), "n_layers": 2 + i % 3, "n_heads": 4} for i in range(models)
        }
    return config


def sweep_of_100():
    config = default_config()
    config["sweeps"] = {
        "grid": {
            "base": {"n_heads": 4},
            "grid": {
                "d_model": [64, 128, 192, 256, 320],
                "n_layers": [1, 2, 3, 4, 6],
                "lr": [0.001, 0.002, 0.003, 0.006],
            },
        }
    }
    return config


def time_dry_run(config, repeat):
    """(best and median seconds of `snakemake -n`, jobs planned)."""
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "config.yaml")
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f)
        cmd = snakemake_command(work, "-n", "--quiet", "rules", "all", configfile=path)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            result = subprocess.run(cmd, capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            if result.returncode:
                raise SystemExit(result.stderr[-2000:])
    jobs = int(re.search(r"^total\s+(\d+)$", result.stdout + result.stderr, re.M).group(1))
    return min(times), sorted(times)[len(times) // 2], jobs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with open(os.path.join(REPO, "configs", "scaling.yaml"), encoding="utf-8") as f:
        scaling = yaml.safe_load(f)
    cases = [
        ("64 parts, 20 models", parts_and_models(64, 20), 5),
        ("256 parts, 2 models", parts_and_models(256, 0), 10),
        ("a sweep of 100 models", sweep_of_100(), 10),
        ("configs/scaling.yaml", scaling, 10),
    ]
    print(f"{'config':<24} {'jobs':>6} {'best (s)':>9} {'median (s)':>11} {'target (s)':>11}")
    for name, config, target in cases:
        best, median, jobs = time_dry_run(config, args.repeat)
        print(
            f"{name:<24} {jobs:>6} {best:>9.2f} {median:>11.2f} "
            f"{'< ' + str(target):>11}{'' if best < target else '  MISSED'}"
        )


if __name__ == "__main__":
    main()
