"""How the processes of a run are started: in this process, or under torchrun, on one node
(`--standalone`) or across the nodes of a SLURM job, where `srun` starts one torchrun per node and
they meet at a c10d rendezvous on the job's first node (the layout of torchtitan's
multinode_trainer.slurm). Each process runs `python -m lmcore train` (lmcore.train.loop.train).
"""

import json
import os
import socket
import subprocess
import sys

from lmcore.train.config import processes_per_node, world_size
from lmcore.train.loop import Stopped, train


def free_port():
    """A TCP port nobody listens on now, on this host: the rendezvous's, when this host is the job's first node."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def torchrun_command(nnodes, nproc_per_node, endpoint=None, run_id="lmcore"):
    """torchrun's arguments: `--standalone` on one node; across nodes a c10d rendezvous at `endpoint`
    (host:port of one node, the same for every launcher)."""
    cmd = ["-m", "torch.distributed.run", f"--nproc_per_node={nproc_per_node}"]
    if nnodes == 1 and endpoint is None:
        return cmd + ["--standalone"]
    return cmd + [
        f"--nnodes={nnodes}",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint={endpoint}",
        f"--rdzv_id={run_id}",
    ]


def srun_command(nodes, threads, gpus_per_node):
    """One task per node of this SLURM job, each with the node's CPUs and GPUs for its torchrun; a task
    that fails ends the others (`--kill-on-bad-exit`), so no rank waits forever at a collective."""
    cmd = ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", f"--cpus-per-task={threads}"]
    cmd += [f"--gpus-per-node={gpus_per_node}"] if gpus_per_node else []
    return cmd + ["--kill-on-bad-exit=1"]


def in_slurm_job():
    return "SLURM_JOB_ID" in os.environ


def train_args(job, threads_each):
    """What each process of a torchrun runs: `-m lmcore train` with this job's entry and files."""
    args = ["-m", "lmcore", "train", "--config-json", json.dumps(job.entry), "--tokenizer", os.fspath(job.tokenizer)]
    args += ["--manifest", os.fspath(job.manifest), "--out", os.fspath(job.out_dir)]
    args += ["--checkpoints", os.fspath(job.checkpoints), "--threads", str(threads_each)]
    return args + (["--mem-mb", str(job.mem_mb)] if job.mem_mb else [])


def launch_command(entry, train, threads):
    """The command that starts every process of a run: torchrun on this node, or across `nodes` nodes of
    this SLURM job, `srun` one torchrun per node with the rendezvous on this node (the job's first: the
    batch script runs there) at a port free now. `train`: train_args for `threads // processes per node`."""
    nodes, per_node = entry.get("nodes", 1), processes_per_node(entry)
    if nodes == 1:
        return [sys.executable, *torchrun_command(1, per_node), *train]
    if not in_slurm_job():
        raise ValueError(
            f"nodes: {nodes} needs a SLURM job that holds the nodes: run the workflow with --profile profiles/slurm"
        )
    endpoint = f"{socket.gethostname()}:{free_port()}"
    torchrun = torchrun_command(nodes, per_node, endpoint, run_id=os.environ["SLURM_JOB_ID"])
    return srun_command(nodes, threads, entry.get("gpus", 0)) + [sys.executable, *torchrun, *train]


def launch(job, log=print):
    """Train a TrainJob in this process, or in `world_size(entry)` processes under torchrun (DDP or FSDP), on
    this node or across the nodes of a SLURM job (`job.threads`: the CPUs of the job on each node)."""
    if world_size(job.entry) == 1:
        return train(job, log)
    threads_each = max(1, job.threads // processes_per_node(job.entry))
    cmd = launch_command(job.entry, train_args(job, threads_each), job.threads)
    log("running: " + " ".join(cmd[: cmd.index("lmcore")]) + " lmcore train ...")
    done = subprocess.run(cmd, stdout=sys.stdout, stderr=sys.stderr)  # into the job's log
    if done.returncode == 143:
        raise Stopped("SIGTERM: the training processes wrote a checkpoint; rerun to resume")
    done.check_returncode()
    with open(os.path.join(job.out_dir, "summary.json"), encoding="utf-8") as f:
        return json.load(f)
