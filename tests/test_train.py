"""The training loop: stops on NaN with the step named, and DDP matches one process."""

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import socket
import sys

import pytest
import torch

from helpers import SCHEMA, tiny_entry
from lmcore.model.folder import load_safetensors
from lmcore.train.checkpoint import DamagedCheckpoint, list_checkpoints, load_checkpoint, torch_load
from lmcore.train.config import TrainJob
from lmcore.train.launch import launch
from lmcore.train.loop import Diverged, train


@pytest.fixture
def data(shards):
    return shards


def test_a_loss_that_becomes_nan_stops_the_run_naming_the_step(tmp_path, data):
    cfg = tiny_entry(
        lr=1e6, min_lr=1e6, warmup_steps=3, grad_clip=0, checkpoint_interval=1, max_steps=50, divergence_threshold=None
    )
    with pytest.raises(
        FloatingPointError, match=r"at step \d+: loss nan .*newest checkpoint before that step: .*ckpt-\d+\.pt"
    ) as error:
        train(TrainJob(cfg, *data, tmp_path / "out", tmp_path / "ckpt"), log=lambda *a: None)
    assert list_checkpoints(tmp_path / "ckpt")
    assert not (tmp_path / "out" / "model.safetensors").exists()
    step, named = re.search(r"at step (\d+):.*ckpt-(\d+)\.pt", str(error.value)).groups()
    assert int(named) < int(step)  # the checkpoint of the bad step itself holds the weights that gave the loss


def test_a_loss_far_above_a_uniform_guess_after_warm_up_stops_the_run(tmp_path, data):
    """lr 10 trains to a loss of hundreds and finished with rc 0; now it stops, naming step, loss, lr and checkpoint."""
    cfg = tiny_entry(lr=10, min_lr=10, warmup_steps=5, checkpoint_interval=2, max_steps=200)
    with pytest.raises(
        Diverged, match=r"diverged at step (\d+): loss (\S+) \(limit 8\.98.*with lr 10;.*ckpt-\d+\.pt"
    ) as error:
        train(TrainJob(cfg, *data, tmp_path / "out", tmp_path / "ckpt"), log=lambda *a: None)
    step, loss = re.search(r"step (\d+): loss (\S+)", str(error.value)).groups()
    assert int(step) >= 5 and float(loss) > 1.5 * math.log(400)
    assert not (tmp_path / "out" / "model.safetensors").exists()


RECIPE = {"optimizer": "muon", "qk_norm": True, "mlp": "relu2", "tie_embeddings": False, "zero_init": True,
          "logit_softcap": 15.0, "schedule": "wsd"}  # fmt: skip


LORA = {"lora": {"rank": 4, "alpha": 8, "dropout": 0.0, "targets": ["qkv", "proj", "up", "down"]}}


@pytest.mark.parametrize("options", [{}, RECIPE, LORA], ids=["defaults", "recipe", "lora"])
def test_two_ddp_processes_take_the_steps_of_one_process_on_the_same_global_batch(tmp_path, data, options):
    single = tiny_entry(
        batch_size=4, max_steps=8, eval_interval=4, log_interval=1, dropout=0.0, device="cpu", **options
    )  # gloo, even beside a GPU
    launch(TrainJob(single, *data, str(tmp_path / "one"), str(tmp_path / "ck1"), threads=1), log=lambda *a: None)
    two = {**single, "batch_size": 2, "processes_per_node": 2}
    launch(TrainJob(two, *data, str(tmp_path / "two"), str(tmp_path / "ck2"), threads=2))
    losses = [[json.loads(line)["loss"] for line in open(tmp_path / d / "metrics.jsonl")] for d in ("one", "two")]
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)
    one, two = (load_safetensors(tmp_path / d / "model.safetensors") for d in ("one", "two"))
    # torch.optim.Muon orthogonalises each update in bf16 (torch/optim/_muon.py): gradients that differ in
    # their last fp32 bits can round apart there, by a bf16 step (0.4%) of an update of size lr = 0.02
    atol = 5e-3 if options.get("optimizer") == "muon" else 1e-4
    assert max((one[k] - two[k]).abs().max().item() for k in one) < atol


def test_a_token_budget_sets_the_number_of_steps(tmp_path, data):
    cfg = tiny_entry(
        max_steps=1000, max_tokens=5 * 8 * 32 + 1, batch_size=8, eval_interval=100
    )  # 5 steps' tokens, and one more
    summary = train(TrainJob(cfg, *data, tmp_path / "out", tmp_path / "ckpt"), log=lambda *a: None)
    assert summary["steps"] == 6 and summary["tokens_seen"] == 6 * 8 * 32
    assert 0 < summary["step_time_s"] < summary["job_time_s"]  # the job's time adds set-up and validation to the steps'
    assert 0 < summary["data_time_s"] < summary["step_time_s"]  # drawing batches: a part of the steps' time


def test_sigterm_writes_a_checkpoint_and_the_rerun_resumes_from_it(tmp_path, data):
    import re
    import signal
    import subprocess
    import sys

    cfg = tiny_entry(max_steps=100_000, log_interval=5, eval_interval=10_000, checkpoint_interval=10_000)
    cmd = [
        sys.executable,
        "-m",
        "lmcore",
        "train",
        "--config-json",
        json.dumps(cfg),
        "--tokenizer",
        data[0],
        "--manifest",
        data[1],
        "--out",
        str(tmp_path / "out"),
        "--checkpoints",
        str(tmp_path / "ckpt"),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if re.search(r" step \d+/100000 ", line):  # training is under way
            proc.send_signal(signal.SIGTERM)
            break
    output = proc.stdout.read()
    assert proc.wait(timeout=60) == 143
    step = int(re.search(r"SIGTERM: checkpoint written at step (\d+)", output).group(1))
    assert [os.path.basename(p) for p in list_checkpoints(tmp_path / "ckpt")] == [f"ckpt-{step:08d}.pt"]
    rerun = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first_line = rerun.stdout.readline()
    rerun.kill()
    rerun.wait()
    assert re.fullmatch(
        rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d Resumed from step {step}", first_line.strip()
    )  # timestamped, like every line


def test_every_rng_state_survives_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    from lmcore.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint(tmp_path, 1, {"rng": rng_state()}, keep=1)
    expected = (random.random(), np.random.random(), torch.rand(1).item())
    set_rng_state(load_checkpoint(list_checkpoints(tmp_path)[0])["rng"])
    assert (random.random(), np.random.random(), torch.rand(1).item()) == expected


def test_a_checkpoint_of_other_training_code_is_not_resumed(tmp_path, data, monkeypatch):
    import lmcore.train.resume

    cfg = tiny_entry(max_steps=4, checkpoint_interval=2, eval_interval=2)
    train(TrainJob(cfg, *data, tmp_path / "out", tmp_path / "ckpt"), log=lambda *a: None)
    same, edited = [], []
    train(TrainJob(cfg, *data, tmp_path / "out", tmp_path / "ckpt"), log=same.append)
    assert "Resumed from step 4" in same
    monkeypatch.setattr(lmcore.train.resume, "code_fingerprint", lambda: "edited model.py")
    train(TrainJob(cfg, *data, tmp_path / "out", tmp_path / "ckpt"), log=edited.append)
    assert not any(line.startswith("Resumed") for line in edited) and any("starting afresh" in line for line in edited)


def test_a_damaged_newest_checkpoint_is_named_and_the_run_resumes_exactly_from_the_one_before(tmp_path, data):
    """Cut short (kill -9 mid-copy, a full disk) or with flipped bytes: named, moved aside, never resumed."""
    cfg = tiny_entry(max_steps=6, checkpoint_interval=2, keep_checkpoints=3, eval_interval=2, dropout=0.0)
    run = functools.partial(train, TrainJob(cfg, *data, tmp_path / "out", tmp_path / "ckpt"))
    run(log=lambda *a: None)
    uninterrupted = load_safetensors(tmp_path / "out" / "model.safetensors")
    newest = tmp_path / "ckpt" / "ckpt-00000006.pt"
    assert newest.with_suffix(".pt.sha256").read_text().split() == [
        hashlib.sha256(newest.read_bytes()).hexdigest(),
        newest.name,
    ]

    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    lines = []
    run(log=lines.append)
    assert any(f"{newest}: sha256" in line and "cut short or changed on disk" in line for line in lines), lines
    assert "Resumed from step 4" in lines and (tmp_path / "ckpt" / "ckpt-00000006.pt.damaged").exists()
    resumed = load_safetensors(tmp_path / "out" / "model.safetensors")
    assert all(torch.equal(uninterrupted[k], resumed[k]) for k in uninterrupted)

    data_bytes = bytearray(newest.read_bytes())  # the rerun wrote ckpt-6 again
    for i in range(len(data_bytes) // 2, len(data_bytes) // 2 + 64):
        data_bytes[i] ^= 0xFF
    newest.write_bytes(bytes(data_bytes))
    lines = []
    run(log=lines.append)
    assert any(line.startswith(f"{newest}: sha256") for line in lines) and "Resumed from step 4" in lines


def test_a_checkpoint_without_its_checksum_is_passed_over_and_one_torch_cannot_read_is_named(tmp_path, data):
    cfg = tiny_entry(max_steps=4, checkpoint_interval=2, keep_checkpoints=2, eval_interval=2)
    train(TrainJob(cfg, *data, tmp_path / "out", tmp_path / "ckpt"), log=lambda *a: None)
    newest = list_checkpoints(tmp_path / "ckpt")[-1]
    os.remove(newest + ".sha256")
    lines = []
    train(TrainJob(cfg, *data, tmp_path / "out", tmp_path / "ckpt"), log=lines.append)
    assert any(x.startswith(f"{newest}: no checksum beside it") for x in lines) and "Resumed from step 2" in lines
    newest = list_checkpoints(tmp_path / "ckpt")[-1]
    with open(newest, "r+b") as f:
        f.truncate(100)
    with pytest.raises(DamagedCheckpoint, match=rf"{re.escape(newest)}: not a readable checkpoint \(RuntimeError"):
        torch_load(newest)  # what a checkpoint whose checksum matches, but that torch cannot read, gets


def test_a_misspelt_setting_is_an_error_naming_it(tmp_path, data):
    with pytest.raises(ValueError, match=r"unknown model or training settings \['lrr'\]"):
        train(TrainJob({**tiny_entry(), "lrr": 0.1}, *data, tmp_path / "out", tmp_path / "ckpt"), log=lambda *a: None)


def test_every_setting_of_a_model_entry_takes_its_default_from_the_schema():
    """A field of ModelConfig or TrainConfig is a key of the schema's model entry, with its default there
    (lmcore.schema.schema_defaults): a default is stated once. The shape has none (an entry gives it)."""
    import yaml

    from lmcore.model.config import ModelConfig
    from lmcore.train.config import TrainConfig

    with open(SCHEMA, encoding="utf-8") as f:
        keys = yaml.safe_load(f)["$defs"]["model"]["properties"]
    shape = {"vocab_size", "d_model", "n_layers", "n_heads"}
    for cls in (TrainConfig, ModelConfig):
        for f in dataclasses.fields(cls):
            if f.name not in shape:
                default = f.default_factory() if f.default is dataclasses.MISSING else f.default
                assert default == keys[f.name]["default"], f"{cls.__name__}.{f.name}"
    assert TrainConfig().loggers is not TrainConfig().loggers  # a list default is never shared


@pytest.mark.parametrize(
    "name, tflops",
    [
        ("NVIDIA L40S", 362),
        ("NVIDIA L4", 121),
        ("NVIDIA H100 PCIe", 756),
        ("NVIDIA H100 80GB HBM3", 989),
        ("NVIDIA H100 NVL", 835),
        ("NVIDIA A100-SXM4-80GB", 312),
        ("NVIDIA A10", 125),
        ("Tesla T4", None),
    ],
)
def test_a_gpu_gets_the_data_sheet_peak_of_its_most_specific_name(name, tflops):
    from lmcore.train.runtime import data_sheet_peak

    found = data_sheet_peak(name)
    assert (found[0] / 1e12 if found else None) == tflops


def test_a_cpu_peak_is_measured_once_per_machine_and_a_faster_run_raises_it(tmp_path, data, monkeypatch):
    """One 1 s timing per job read 31.8 to 68.0 GFLOP/s on one VM and a run logged MFU 1.46: the peak is now
    measured once, kept, and raised by any run that goes faster, so that no MFU is above 1."""
    from lmcore.train import runtime

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    timings = []
    monkeypatch.setattr(
        runtime, "matmul_rate", lambda device, dtype: timings.append(1) or 1e3
    )  # a machine that read 1 kFLOP/s
    cpu = torch.device("cpu")
    assert runtime.peak_flops(cpu, None)[0] == runtime.peak_flops(cpu, None)[0] == 1e3 and len(timings) == 1
    summary = train(
        TrainJob(tiny_entry(max_steps=6, log_interval=2), *data, tmp_path / "out", tmp_path / "ckpt"),
        log=lambda *a: None,
    )
    rows = [json.loads(line) for line in open(tmp_path / "out" / "metrics.jsonl")]
    assert all(0 < row["mfu"] <= 1 for row in rows) and 0 < summary["mfu"] <= 1
    assert summary["peak_flops"] > 1e6 and summary["peak_source"].startswith("the rate this run reached")
    assert runtime.peak_flops(cpu, None)[0] == summary["peak_flops"] and len(timings) == 1  # kept for the next job


def test_compile_auto_compiles_on_gpus_only():
    from lmcore.train.runtime import use_compile

    assert [
        use_compile(s, torch.device(d)) for s, d in (("auto", "cuda"), ("auto", "cpu"), (True, "cpu"), (False, "cuda"))
    ] == [True, False, True, False]


def test_a_run_that_would_not_fit_the_jobs_memory_stops_before_its_first_step(tmp_path, data):
    """context_length 100000 trained 10 minutes at 1.5 GB without logging one step."""
    cfg = tiny_entry(max_steps=3, log_interval=2, eval_interval=3)
    with pytest.raises(
        MemoryError,
        match=r"training needs about ([\d,]+) MB \(batch_size 8 x context_length 32 tokens a micro-batch, "
        r"vocab_size 400\), more than the job's mem_mb of 300: lower batch_size",
    ):
        train(TrainJob(cfg, *data, tmp_path / "out", tmp_path / "ckpt", mem_mb=300), log=lambda *a: None)
    assert not list_checkpoints(tmp_path / "ckpt")
    lines = []
    train(TrainJob(cfg, *data, tmp_path / "out", tmp_path / "ckpt", mem_mb=2000), log=lines.append)
    assert any(re.fullmatch(r"memory: about \d+ MB of the job's 2,000", x) for x in lines), lines
    assert any(
        re.fullmatch(
            r"one step: 256 tokens, \S+ FLOPs, \S+ s at the peak \(a step takes 2-3 times that\); 3 steps to go: "
            r"at least \d+s",
            x,
        )
        for x in lines
    ), lines
    assert any(re.fullmatch(r"step 1 took \S+ s; progress every 2 steps", x) for x in lines), lines


def test_fsdp_takes_the_steps_of_ddp_and_of_one_process(tmp_path, data):
    """Two FSDP2 processes (gloo) against one process on the same global batch: the same losses and weights.
    gloo's reduce-scatter once summed where FSDP asked for a mean (pytorch issue 162338): a sum would show here."""
    single = tiny_entry(batch_size=4, max_steps=8, eval_interval=4, log_interval=1, device="cpu", grad_accum=2)
    launch(TrainJob(single, *data, str(tmp_path / "one"), str(tmp_path / "ck1")), log=lambda *a: None)
    two = {**single, "batch_size": 2, "processes_per_node": 2}
    launch(TrainJob({**two, "parallelism": "fsdp"}, *data, str(tmp_path / "fsdp"), str(tmp_path / "ck2"), threads=2))
    launch(TrainJob(two, *data, str(tmp_path / "ddp"), str(tmp_path / "ck3"), threads=2))
    runs = ("one", "fsdp", "ddp")
    losses = {d: [json.loads(line)["loss"] for line in open(tmp_path / d / "metrics.jsonl")] for d in runs}
    norms = {d: [json.loads(line)["grad_norm"] for line in open(tmp_path / d / "metrics.jsonl")] for d in runs}
    assert losses["fsdp"] == pytest.approx(losses["one"], abs=1e-4)
    assert losses["ddp"] == pytest.approx(losses["one"], abs=1e-4)
    assert norms["fsdp"] == pytest.approx(norms["one"], rel=1e-3)  # a summed gradient would be twice
    weights = {d: load_safetensors(tmp_path / d / "model.safetensors") for d in runs}
    assert weights["fsdp"].keys() == weights["one"].keys()
    assert all(torch.allclose(weights["fsdp"][k], weights["one"][k], atol=1e-4) for k in weights["one"])


def test_fsdp_killed_and_rerun_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, data):
    """SIGTERM to torchrun: both processes stop at the same step and write one sharded checkpoint
    (torch.distributed.checkpoint); the rerun resumes from it and ends where a run never stopped ends."""
    import signal
    import subprocess

    from lmcore.train.launch import launch_command, train_args

    entry = tiny_entry(
        batch_size=2, max_steps=40, eval_interval=10, log_interval=1, checkpoint_interval=1000, device="cpu",
        processes_per_node=2, parallelism="fsdp", dropout=0.1,
    )  # fmt: skip
    launch(TrainJob(entry, *data, str(tmp_path / "whole"), str(tmp_path / "ck1"), threads=2), log=lambda *a: None)
    cmd = launch_command(entry, train_args(TrainJob(entry, *data, tmp_path / "cut", tmp_path / "ck2"), 1), 2)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if re.search(r" step 5/40 ", line):
            proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both processes
            break
    output = proc.stdout.read()
    assert proc.wait(timeout=120) != 0
    step = int(re.search(r"SIGTERM: checkpoint written at step (\d+)", output).group(1))
    saved = list_checkpoints(tmp_path / "ck2")
    assert [os.path.basename(p) for p in saved] == [f"ckpt-{step:08d}"] and step < 40
    assert {"SHA256SUMS", "state.pt", "rng-0.pt", "rng-1.pt", ".metadata"} <= set(os.listdir(saved[0]))
    assert not os.path.exists(tmp_path / "cut" / "model.safetensors")
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"Resumed from step {step}" in rerun.stdout + rerun.stderr
    whole, cut = (load_safetensors(tmp_path / d / "model.safetensors") for d in ("whole", "cut"))
    assert max((whole[k] - cut[k]).abs().max().item() for k in whole) == 0
    shard = next(p for p in sorted(os.listdir(saved[0])) if p.endswith(".distcp"))
    with open(os.path.join(saved[0], shard), "r+b") as f:  # one byte changed on disk
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(DamagedCheckpoint, match=rf"{shard}: sha256 .* differs"):
        load_checkpoint(saved[0], rank=1)


def test_measuring_the_peak_leaves_the_global_random_numbers_alone():
    """A machine's first run measures its peak: a draw from the global RNG there changed that run's dropout."""
    from lmcore.train.runtime import matmul_rate

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    matmul_rate(torch.device("cpu"), None, n=64, rounds=1, seconds=0.01)
    assert torch.equal(torch.rand(3), expected)


def test_two_torchrun_launchers_meeting_at_a_c10d_rendezvous_take_the_steps_of_one_process(tmp_path, data):
    """What `nodes: 2` runs on each node (srun starts one launcher per node): torchrun --nnodes 2 with the
    c10d rendezvous at the first node; here both launchers on 127.0.0.1, gloo."""
    import subprocess
    import sys

    from lmcore.train.launch import free_port, torchrun_command, train_args

    single = tiny_entry(batch_size=4, max_steps=6, eval_interval=3, log_interval=1, device="cpu", dropout=0.0)
    launch(TrainJob(single, *data, str(tmp_path / "one"), str(tmp_path / "ck1")), log=lambda *a: None)
    entry = {**single, "batch_size": 2, "nodes": 2}
    torchrun = torchrun_command(2, 1, f"127.0.0.1:{free_port()}", run_id="test")
    cmd = [sys.executable, *torchrun, *train_args(TrainJob(entry, *data, tmp_path / "two", tmp_path / "ck2"), 1)]
    launchers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in launchers]
    assert [p.returncode for p in launchers] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    one, two = (load_safetensors(tmp_path / d / "model.safetensors") for d in ("one", "two"))
    assert all(torch.allclose(one[k], two[k], atol=1e-4) for k in one)


def test_nodes_above_one_outside_a_slurm_job_is_an_error_before_any_process_starts(tmp_path, data, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(ValueError, match="nodes: 2 needs a SLURM job .* --profile profiles/slurm"):
        launch(TrainJob(tiny_entry(nodes=2), *data, str(tmp_path / "m"), str(tmp_path / "ck")))


def test_across_nodes_srun_starts_one_torchrun_per_node_at_a_rendezvous_on_this_node(monkeypatch):
    from lmcore.train.launch import launch_command

    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    cmd = launch_command(tiny_entry(nodes=4, gpus=8), ["-m", "lmcore", "train"], threads=32)
    srun, torchrun = cmd[: cmd.index(sys.executable)], cmd[cmd.index(sys.executable) + 1 :]
    assert srun == [
        "srun", "--nodes=4", "--ntasks=4", "--ntasks-per-node=1", "--cpus-per-task=32", "--gpus-per-node=8",
        "--kill-on-bad-exit=1",
    ]  # fmt: skip
    assert torchrun[:6] == [
        "-m", "torch.distributed.run", "--nproc_per_node=8", "--nnodes=4", "--rdzv_backend=c10d",
        f"--rdzv_endpoint={socket.gethostname()}:{torchrun[5].rsplit(':', 1)[1]}",
    ]  # fmt: skip
    assert torchrun[6] == "--rdzv_id=4242"


def test_turning_activation_checkpointing_on_resumes_the_run_and_other_changes_do_not(tmp_path):
    from lmcore.train.resume import run_key

    entry = tiny_entry()
    key = run_key(entry, "tok", str(tmp_path))
    assert run_key({**entry, "activation_checkpointing": True}, "tok", str(tmp_path)) == key
    assert run_key({**entry, "parallelism": "fsdp"}, "tok", str(tmp_path)) != key


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_a_run_resumed_from_its_checkpoint_ends_with_the_weights_of_the_run_never_stopped(tmp_path, data, optimizer):
    """Muon's momentum buffers travel in the checkpoint as AdamW's moments do: the newest checkpoint and the
    outputs removed, the rerun resumes from the one before and ends where the first run ended."""
    entry = tiny_entry(
        max_steps=12, checkpoint_interval=6, keep_checkpoints=2, eval_interval=4, optimizer=optimizer, dropout=0.1,
        schedule="wsd", tie_embeddings=False, zero_init=True, qk_norm=True, mlp="relu2",
    )  # fmt: skip
    train(TrainJob(entry, *data, tmp_path / "out", tmp_path / "ckpt"), log=lambda *a: None)
    first = load_safetensors(tmp_path / "out" / "model.safetensors")
    newest = list_checkpoints(tmp_path / "ckpt")[-1]
    assert newest.endswith("ckpt-00000012.pt")
    os.remove(newest)
    lines = []
    train(TrainJob(entry, *data, tmp_path / "again", tmp_path / "ckpt"), log=lines.append)
    assert any("Resumed from step 6" in line for line in lines)
    again = load_safetensors(tmp_path / "again" / "model.safetensors")
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_max_minutes_plans_the_schedule_for_the_budget_and_stops_at_the_first_step_past_it(tmp_path, data):
    entry = tiny_entry(max_steps=1_000_000, max_minutes=0.05, eval_interval=100_000, log_interval=1, schedule="wsd")
    lines = []
    summary = train(TrainJob(entry, *data, tmp_path / "out", tmp_path / "ckpt"), log=lines.append)
    planned = int(
        re.search(r"max_minutes 0.05: .* s a step, ([\d,]+) steps planned", "\n".join(lines))[1].replace(",", "")
    )
    assert summary["step_time_s"] >= 3.0 or summary["steps"] == planned  # the budget, or the plan, ended it
    assert summary["steps"] <= planned == summary["planned_steps"] < 1_000_000
    rows = [json.loads(line) for line in open(tmp_path / "out" / "metrics.jsonl")]
    assert rows[-1]["step"] == summary["steps"] and rows[-1]["val_loss"] is not None  # validated where it stopped
    if summary["steps"] == planned:  # the cool-down was planned to end there: its last step was taken
        from lmcore.train.config import read_entry
        from lmcore.train.optim import lr_at

        last = lr_at(planned - 1, read_entry(entry)[1], planned)
        assert rows[-1]["lr"] == pytest.approx(last) and last < entry["lr"] / 2


def test_two_processes_with_a_time_budget_plan_and_stop_at_the_same_step(tmp_path, data):
    """Each process times its own steps: they agree on the plan and on the step that spends the budget
    (a process stopping alone would leave the other waiting at its next all-reduce)."""
    entry = tiny_entry(
        batch_size=2, max_steps=1_000_000, max_minutes=0.05, eval_interval=100_000, device="cpu",
        processes_per_node=2, schedule="wsd",
    )  # fmt: skip
    summary = launch(TrainJob(entry, *data, str(tmp_path / "m"), str(tmp_path / "ck"), threads=2), log=lambda *a: None)
    assert summary["steps"] <= summary["planned_steps"] < 1_000_000
