"""A trained model's folder, `results/models/<name>/`: what training writes and what evaluation,
sampling and `python -m lmcore generate` load.

    model.safetensors   the weights (best validation loss), tied head left out
    config.json         {"model": ModelConfig, "train": the model's config entry, "tokenizer_fingerprint"}
    tokenizer.model     the SentencePiece model, copied
    metrics.jsonl       one line per log step
    summary.json        parameters, tokens, FLOPs, time, MFU, best validation loss
"""
import json
import os

from lmcore.checkpoint import load_safetensors, save_safetensors
from lmcore.io import atomic_open, copy_file, sha256_file, write_json
from lmcore.model import GPT, ModelConfig
from lmcore.tokenizer import Tokenizer


def save_model(out_dir, model, entry, tokenizer_path, metrics, summary):
    os.makedirs(out_dir, exist_ok=True)
    weights = model.state_dict()
    if model.cfg.tie_embeddings:
        weights.pop("lm_head.weight")  # the same tensor as tok_emb.weight
    save_safetensors(weights, os.path.join(out_dir, "model.safetensors"), {"format": "pt"})
    copy_file(tokenizer_path, os.path.join(out_dir, "tokenizer.model"))
    config = {"model": model.cfg.to_dict(), "train": entry, "tokenizer_fingerprint": sha256_file(tokenizer_path)}
    write_json(os.path.join(out_dir, "config.json"), config)
    with atomic_open(os.path.join(out_dir, "metrics.jsonl")) as f:
        f.writelines(json.dumps(row) + "\n" for row in metrics)
    write_json(os.path.join(out_dir, "summary.json"), summary)


def read_config(model_dir):
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        return json.load(f)


def load_model(model_dir, device="cpu"):
    """(model in eval mode, tokenizer) from a model folder."""
    config = read_config(model_dir)
    model = GPT(ModelConfig(**config["model"]))
    missing, unexpected = model.load_state_dict(load_safetensors(os.path.join(model_dir, "model.safetensors")), strict=False)
    if unexpected or set(missing) - ({"lm_head.weight"} if model.cfg.tie_embeddings else set()):
        raise ValueError(f"{model_dir}: weights do not match config.json (missing {missing}, unexpected {unexpected})")
    return model.to(device).eval(), Tokenizer(os.path.join(model_dir, "tokenizer.model"))
