"""The GPU check's CPU path: what CI can run of bench/gpu_check.sh, so that the script a lent GPU machine
runs is known to work before the machine is at hand."""

import json
import os
import subprocess

from helpers import REPO


def test_the_gpu_check_runs_its_cpu_path_and_writes_every_section(tmp_path):
    out = tmp_path / "figures.json"
    done = subprocess.run(
        ["bash", os.path.join(REPO, "bench", "gpu_check.sh"), str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["gpus"] == 0 and any("no CUDA device" in m for m in figures["missing"])
    rows = [*figures["scale"], figures["fsdp"], figures["ddp_gloo"], *figures["activation_checkpointing"].values()]
    rows += figures["precision_auto"].values()
    assert not [row for row in rows if "error" in row]
    assert all(row["tokens_per_s"] > 0 and row["peak_memory_mb_per_process"] > 0 for row in rows)
    assert (figures["fsdp"]["parallelism"], figures["fsdp"]["processes"]) == ("fsdp", 2)
    saving = figures["activation_checkpointing"]
    assert saving["on"]["peak_memory_mb_per_process"] < saving["off"]["peak_memory_mb_per_process"]
