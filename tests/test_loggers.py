"""Live curves: TensorBoard's event files and an offline W&B run hold metrics.jsonl's rows and summary.json's
figures, read back with each tool's own reader; a resumed run continues both instead of starting again."""

import glob
import json
import os
import sys

import pytest

from helpers import tiny_entry
from lmcore.train.checkpoint import list_checkpoints, remove_checkpoint
from lmcore.train.config import TrainJob
from lmcore.train.loggers import log_evaluation, wandb_mode
from lmcore.train.loop import train

pytest.importorskip("tensorboard")
pytest.importorskip("wandb")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No W&B account: no key in the environment, no ~/.netrc."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / ".config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "home" / ".cache"))


def scalars(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(logdir)
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def wandb_records(path):
    """The records of a W&B run file (run-<id>.wandb: a LevelDB log of wandb_internal_pb2.Record, in blocks of
    32 KiB after a 7-byte header), as wandb sync reads it."""
    from wandb.proto import wandb_internal_pb2

    block, pos, chunks = 32768, 7, b""
    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # the end of a block too short for a record header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunks, pos = chunks + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a full record, or a record's last chunk
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            chunks = b""
            yield record


def wandb_runs(folder):
    """{run id: [{config, history: {step: row}, summary} of each attempt]} of the offline runs in `folder`."""

    def items(updates):
        return {u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in updates}

    runs = {}
    for path in sorted(glob.glob(os.path.join(folder, "wandb", "offline-run-*", "run-*.wandb")), key=os.path.getmtime):
        attempt = {"config": {}, "history": {}, "summary": {}}
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                attempt["config"] = items(record.run.config.update)
                run_id = record.run.run_id
            elif kind == "history":
                row = items(record.history.item)
                attempt["history"][row["_step"]] = row
            elif kind == "summary":
                attempt["summary"].update(items(record.summary.update))
        runs.setdefault(run_id, []).append(attempt)
    return runs


def test_wandb_is_offline_unless_the_user_has_logged_in(tmp_path, offline, monkeypatch):
    assert wandb_mode() == "offline"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password 0123456789abcdef\n")
    monkeypatch.setenv("NETRC", str(netrc))
    assert wandb_mode() == "online"  # `wandb login` wrote its key
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"  # the user's word goes


def test_tensorboard_and_wandb_get_the_curves_and_a_resumed_run_continues_them(tmp_path, shards, offline):
    entry = tiny_entry(max_steps=12, log_interval=2, eval_interval=4, checkpoint_interval=4, keep_checkpoints=3,
                       loggers=["tensorboard", "wandb"], wandb_project="tests")  # fmt: skip
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    train(TrainJob(entry, *shards, str(out), str(ckpt)), log=lambda *a: None)
    remove_checkpoint(list_checkpoints(ckpt)[-1])  # as if killed after step 8's checkpoint
    summary = train(TrainJob(entry, *shards, str(out), str(ckpt)), log=lambda *a: None)
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]

    curves = scalars(str(out / "tensorboard"))
    assert curves["train/loss"] == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in rows]  # once each
    assert curves["train/val_loss"] == [
        (r["step"], pytest.approx(r["val_loss"], rel=1e-6)) for r in rows if r["val_loss"] is not None
    ]
    assert curves["final/best_val_loss"] == [(12, pytest.approx(summary["best_val_loss"], rel=1e-6))]

    runs = wandb_runs(out)
    assert len(runs) == 1  # the resumed job went on with the same run
    (first, resumed), = runs.values()  # fmt: skip
    assert sorted(first["history"]) == [r["step"] for r in rows] and sorted(resumed["history"]) == [10, 12]
    last = rows[-2:]
    assert [resumed["history"][r["step"]]["train/loss"] for r in last] == pytest.approx([r["loss"] for r in last])
    config = resumed["config"]
    assert config["wandb_project"] == "tests" and config["d_model"] == entry["d_model"]
    assert len(config["config_digest"]) == 12
    assert resumed["summary"]["final/best_val_loss"] == pytest.approx(summary["best_val_loss"])


def test_the_evaluation_adds_the_test_figures_to_the_training_runs_once(tmp_path, shards, offline):
    entry = tiny_entry(max_steps=6, log_interval=2, eval_interval=3, loggers=["tensorboard", "wandb"])
    out = tmp_path / "out"
    train(TrainJob(entry, *shards, str(out), str(tmp_path / "ckpt")), log=lambda *a: None)
    for bpb in (2.5, 2.25):  # evaluated again (a code change): the new figures replace the old
        result = {"test": {"loss": 1.5, "perplexity": 4.48, "bits_per_byte": bpb}, "baseline": {"bits_per_byte": 3.5}}
        log_evaluation(entry["loggers"], str(out), entry, result)
    curves = scalars(str(out / "tensorboard"))
    assert curves["test/bits_per_byte"] == [(6, 2.25)] and curves["test/unigram_bits_per_byte"] == [(6, 3.5)]
    assert len(curves["train/loss"]) == len(open(out / "metrics.jsonl").readlines())  # the curves stay
    (attempts,) = wandb_runs(out).values()  # one run: training's, continued
    summary = attempts[-1]["summary"]
    assert summary["test/bits_per_byte"] == 2.25 and summary["test/perplexity"] == 4.48


def test_a_logger_turned_on_after_training_gets_no_test_figures_and_is_named(tmp_path, shards, offline):
    entry = tiny_entry(max_steps=2)
    out = tmp_path / "out"
    train(TrainJob(entry, *shards, str(out), str(tmp_path / "ckpt")), log=lambda *a: None)
    said = []
    result = {"test": {"loss": 1.5, "perplexity": 4.48, "bits_per_byte": 2.0}, "baseline": {"bits_per_byte": 3.5}}
    log_evaluation(["tensorboard", "wandb"], str(out), entry, result, log=said.append)
    assert len(said) == 2 and "tensorboard turned on after training" in said[0] and "wandb turned on" in said[1]
    assert not (out / "tensorboard").exists() and not (out / "wandb").exists()


def test_a_run_without_loggers_imports_neither_package(tmp_path, shards):
    import subprocess

    code = (
        "import sys, json; from lmcore.train.config import TrainJob; from lmcore.train.loop import train; "
        "train(TrainJob(json.loads(sys.argv[1]), *sys.argv[2:6]), log=lambda *a: None); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('wandb', 'tensorboard')))"
    )
    entry = json.dumps(tiny_entry(max_steps=2))
    done = subprocess.run([sys.executable, "-c", code, entry, *shards, str(tmp_path / "o"), str(tmp_path / "c")],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout.strip().splitlines()[-1] == "[]"
