"""Beyond one machine: the tiny pipeline through a real SLURM, and parallel data stages that
give the same result with 8 parts as with 1."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from helpers import REPO, planned_jobs, snakemake, tiny_config, write_config, write_corpus_archive


def slurm_answers():
    return shutil.which("sinfo") is not None and subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(
    not slurm_answers() and os.environ.get("CI") != "true",
    reason="no SLURM here: tests/slurm/start.sh starts one (CI runs it)",
)
def test_a_model_trains_and_is_evaluated_through_the_slurm_profile(tmp_path):
    sha = write_corpus_archive(tmp_path / "corpus.tar.gz", n_docs=30)
    config = tiny_config((tmp_path / "corpus.tar.gz").as_uri(), sha)
    config["sources"]["fake"]["parts"] = 1
    # Trained by two processes (gloo) in one job: torchrun inside the task that the plugin's jobstep starts.
    config["models"] = {"a": {**config["models"]["a"], "nodes": 1, "processes_per_node": 2}}
    config["resources"] = {
        rule: {"mem_mb": 500} for rule in ("train", "train_tokenizer", "evaluate", "shard", "dedup_clusters")
    }
    configfile = write_config(tmp_path / "config.yaml", config)
    # The data stages and shards here; through SLURM what it must show: a training job of two processes and
    # a job that reads its outputs.
    local = snakemake(tmp_path, "results/shards/tok/manifest.json", configfile=configfile)
    assert local.returncode == 0, local.stdout[-4000:] + local.stderr[-4000:]
    # This one-node cluster has 2 CPUs and little memory: override the profile's train resources.
    result = snakemake(
        tmp_path,
        "results/eval/a.json",
        "--profile",
        os.path.join(REPO, "profiles", "slurm"),
        "--set-resources",
        "train:mem_mb=2000",
        "train:cpus_per_task=2",
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--seconds-between-status-checks",
        "2",
        configfile=configfile,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "SLURM jobid" in result.stdout + result.stderr
    assert planned_jobs(result) == {"train": 1, "evaluate": 1}
    assert (tmp_path / "results" / "eval" / "a.json").exists()
    log = (tmp_path / "logs" / "train" / "a.log").read_text()
    assert "torch.distributed.run --nproc_per_node=2 --standalone" in log


def test_a_model_on_four_nodes_becomes_the_sbatch_line_of_four_tasks_with_eight_gpus_each(tmp_path):
    """The plugin's own code builds the sbatch line (a stand-in sbatch on PATH records it): --nodes, one
    task per node, --gres per node, and no --ntasks-per-gpu (plugin issue #316)."""
    config = tiny_config("file:///not-fetched.tar.gz", None)
    config["models"] = {"big": {**config["models"]["a"], "nodes": 4, "gpus": 8}}
    configfile = write_config(tmp_path / "config.yaml", config)
    for path in ("results/tokenizers/tok/spm.model", "results/shards/tok/manifest.json"):  # train's inputs
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).touch()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text('#!/bin/sh\necho "$@" > "$SBATCH_RECORD"\nexit 1\n')
    (bin_dir / "sbatch").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SBATCH_RECORD": str(tmp_path / "sbatch.args")}
    snakemake(
        tmp_path, "results/models/big/model.safetensors", "--allowed-rules", "train", "--profile",
        os.path.join(REPO, "profiles", "slurm"), configfile=configfile, env=env, timeout=300,
    )  # fmt: skip
    line = (tmp_path / "sbatch.args").read_text()
    options = line[: line.index("--wrap")].split()
    assert {"--nodes=4", "--ntasks=4", "--gres=gpu:8", "--cpus-per-task=8"} <= set(options)
    assert not [o for o in options if o.startswith(("--ntasks-per-gpu", "--gpus"))]
    assert "--executor slurm-jobstep" in line


def test_one_node_asks_for_its_gpus_and_many_nodes_a_task_and_gres_on_each():
    from lmcore.workflow.jobs import slurm_geometry

    one = slurm_geometry({"nodes": 1, "gpus": 4})
    assert one == {"nodes": 1, "gpu": 4, "gres": None, "tasks": None, "mpi": None, "tasks_per_gpu": None}
    four = slurm_geometry({"nodes": 4, "gpus": 8})
    assert four == {"nodes": 4, "gpu": None, "gres": "gpu:8", "tasks": 4, "mpi": "srun", "tasks_per_gpu": 0}
    assert slurm_geometry({"nodes": 2, "gpus": 0})["gres"] is None  # CPU nodes: no gres line at all


def run_data_stages(folder, corpus, parts):
    config = tiny_config(corpus[0].as_uri(), corpus[1])
    config["sources"]["fake"]["parts"] = parts
    configfile = write_config(folder / "config.yaml", config)
    dry = snakemake(folder, "-n", "results/shards/tok/manifest.json", configfile=configfile)
    result = snakemake(folder, "results/shards/tok/manifest.json", configfile=configfile)
    assert result.returncode == 0, result.stderr[-3000:]
    kept = sorted(
        json.loads(line)["id"] for k in range(parts) for line in open(folder / f"results/dedup/fake/part-{k}.jsonl")
    )
    manifest = json.loads((folder / "results/shards/tok/manifest.json").read_text())
    return planned_jobs(dry), kept, manifest


@pytest.mark.slow
def test_eight_parts_are_eight_jobs_per_data_stage_with_the_result_of_one(tmp_path, corpus):
    (tmp_path / "one").mkdir()
    (tmp_path / "eight").mkdir()
    jobs1, kept1, manifest1 = run_data_stages(tmp_path / "one", corpus, 1)
    jobs8, kept8, manifest8 = run_data_stages(tmp_path / "eight", corpus, 8)
    for rule in ("ingest", "clean", "dedup_signatures", "dedup_apply", "shard"):
        assert (jobs1[rule], jobs8[rule]) == (1, 8)
    assert kept1 == kept8
    assert manifest1["tokenizer_fingerprint"] == manifest8["tokenizer_fingerprint"]
    assert manifest1["tokens"] == manifest8["tokens"]
    tokens = [
        np.concatenate([np.load(folder / "results/shards/tok" / p["shards"]["train"]["path"]) for p in m["parts"]])
        for folder, m in ((tmp_path / "one", manifest1), (tmp_path / "eight", manifest8))
    ]
    assert sorted(tokens[0].tolist()) == sorted(tokens[1].tolist())
