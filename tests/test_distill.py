"""Distillation (`distill: {teacher, temperature, alpha}`): the loss is the stated mix of the soft and hard terms,
a student trains on a teacher's folder and resumes exactly, and the config errors that stop a student that could
not work (or that would wait for itself) before any job runs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import SCHEMA, resumes_exactly, tiny_config, tiny_entry
from lmcore.config import ConfigError, prepare_config
from lmcore.model.config import ModelConfig
from lmcore.model.folder import save_model
from lmcore.model.gpt import GPT
from lmcore.tokens.shards import TokenDataset
from lmcore.train.distill import Distillation
from lmcore.train.resume import run_key


def model(vocab, seed, d_model=32, n_layers=1):
    torch.manual_seed(seed)
    return GPT(ModelConfig(vocab_size=vocab, d_model=d_model, n_layers=n_layers, n_heads=2, context_length=32))


def test_the_loss_is_alpha_kl_times_t_squared_plus_the_rest_cross_entropy(shards):
    tokenizer, manifest = shards
    data = TokenDataset(manifest, "train")
    x, y = (torch.from_numpy(a) for a in data.sample_batch(np.random.default_rng(0), 4, 32))
    student, teacher = model(data.vocab_size, 0), model(data.vocab_size, 1, d_model=64, n_layers=2)
    logits, loss = Distillation(student, teacher, temperature=4.0, alpha=0.3)(x, y)
    p_teacher = F.softmax(teacher(x)[0].flatten(0, 1) / 4, dim=-1)
    log_p_student = F.log_softmax(logits.flatten(0, 1) / 4, dim=-1)
    kl = (p_teacher * (p_teacher.log() - log_p_student)).sum(-1).mean()
    ce = F.cross_entropy(logits.flatten(0, 1), y.flatten())
    assert torch.allclose(loss, 0.3 * kl * 16 + 0.7 * ce, rtol=1e-5)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())  # the teacher learns nothing
    assert student.tok_emb.weight.grad is not None
    _, same = Distillation(student, student, temperature=2.0, alpha=1.0)(x, y)  # a student that is its teacher
    assert same.item() == pytest.approx(0.0, abs=1e-5)


def test_a_student_trains_on_its_teacher_and_resumes_exactly_and_a_new_teacher_starts_afresh(tmp_path, shards):
    tokenizer, manifest = shards
    from lmcore.tokens.tokenizer import Tokenizer

    tok = Tokenizer(tokenizer)
    models = tmp_path / "models"
    teacher = model(tok.vocab_size, 1, d_model=64, n_layers=2)
    save_model(models / "big", teacher, {"tokenizer": "t"}, tokenizer, [], {})
    entry = tiny_entry(
        distill={"teacher": {"model": "big"}, "temperature": 2.0, "alpha": 0.5},
        max_steps=12, checkpoint_interval=6, keep_checkpoints=3, eval_interval=4,
    )  # fmt: skip
    resumes_exactly(entry, tokenizer, manifest, models, resumed_at=6)  # results/models/: the teacher beside
    key = run_key(entry, tok.fingerprint, str(models))
    save_model(models / "big", model(tok.vocab_size, 2, d_model=64, n_layers=2), {"tokenizer": "t"}, tokenizer, [], {})
    assert run_key(entry, tok.fingerprint, str(models)) != key  # checkpoints against the old teacher are not resumed


def distilled(**student):
    config = tiny_config("file:///x", None)
    config["models"]["b"] = {**config["models"]["b"], "distill": {"teacher": {"model": "a"}}, **student}
    config["models"]["a"]["context_length"] = 64
    return config


@pytest.mark.parametrize(
    "change, message",
    [
        ({"distill": {"teacher": {"model": "nope"}}}, r"distill\.teacher\.model': 'nope' is not a model"),
        ({"context_length": 128}, r"'a' reads 64 tokens, this model 128"),
        ({"parallelism": "fsdp", "gpus": 2}, r"models\.b\.distill': with parallelism: ddp"),
        ({"distill": {"teacher": {"model": "b"}}}, r"b -> b is a cycle"),
    ],
)
def test_a_student_that_could_not_work_is_a_config_error(change, message):
    with pytest.raises(ConfigError, match=message):
        prepare_config(distilled(**change), SCHEMA)


def test_a_teacher_of_another_tokenizer_and_a_loop_of_teachers_are_config_errors():
    config = distilled()
    config["tokenizers"]["other"] = {"vocab_size": 400}
    config["models"]["a"]["tokenizer"] = "other"
    with pytest.raises(ConfigError, match=r"'a' uses tokenizer 'other', this model 'tok'"):
        prepare_config(config, SCHEMA)
    config = distilled()
    config["models"]["a"]["distill"] = {"teacher": {"model": "b"}}
    config["models"]["a"]["context_length"] = 32
    with pytest.raises(ConfigError, match=r"(a -> b -> a|b -> a -> b) is a cycle"):
        prepare_config(config, SCHEMA)


def test_the_weights_a_student_and_a_dpo_entry_wait_for_are_their_train_jobs_inputs():
    from lmcore.train.init import weight_files

    entry = {"init_from": {"model": "sft"}, "distill": None, "dpo": {"beta": 0.1, "reference": {"model": "sft"}}}
    assert weight_files(entry, "results/models") == {
        "start": ["results/models/sft/model.safetensors"],
        "reference": ["results/models/sft/model.safetensors", "results/models/sft/config.json"],
    }
    student = {"init_from": None, "distill": {"teacher": {"model": "big"}}}
    assert weight_files(student, "m") == {"teacher": ["m/big/model.safetensors", "m/big/config.json"]}
