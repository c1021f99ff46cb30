"""A trained model's folder, `results/models/<name>/`: what training writes and what evaluation,
sampling and `python -m lmcore generate` load.

    model.safetensors   the weights (best validation loss), tied head left out
    config.json         {"model": ModelConfig, "train": the model's config entry, "tokenizer_fingerprint",
                        "weights_sha256": of model.safetensors, checked by every reader}
    tokenizer.model     the SentencePiece model, copied
    metrics.jsonl       one line per log step
    summary.json        parameters, tokens, FLOPs, time, MFU, best validation loss
"""

import json
import os

import safetensors
import safetensors.torch

from lmcore.io import atomic_open, atomic_path, copy_file, sha256_file, write_json
from lmcore.model.config import ModelConfig
from lmcore.model.gpt import GPT
from lmcore.tokens.tokenizer import Tokenizer


def save_safetensors(tensors, path, metadata=None):
    """Write tensors (contiguous copies on the CPU; a tensor shared by two names must be given once) atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(tensors, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()})


def load_safetensors(path):
    """The tensors of a safetensors file; ValueError names a file cut short or not in the format."""
    try:
        return safetensors.torch.load_file(path)
    except safetensors.SafetensorError as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None


def save_model(out_dir, model, entry, tokenizer_path, metrics, summary):
    os.makedirs(out_dir, exist_ok=True)
    weights = model.state_dict()
    if model.cfg.tie_embeddings:
        weights.pop("lm_head.weight")  # the same tensor as tok_emb.weight
    weights_path = os.path.join(out_dir, "model.safetensors")
    save_safetensors(weights, weights_path, {"format": "pt"})
    copy_file(tokenizer_path, os.path.join(out_dir, "tokenizer.model"))
    config = {
        "model": model.cfg.to_dict(),
        "train": entry,
        "tokenizer_fingerprint": sha256_file(tokenizer_path),
        "weights_sha256": sha256_file(weights_path),
    }
    write_json(os.path.join(out_dir, "config.json"), config)
    with atomic_open(os.path.join(out_dir, "metrics.jsonl")) as f:
        f.writelines(json.dumps(row) + "\n" for row in metrics)
    write_json(os.path.join(out_dir, "summary.json"), summary)


class DamagedModel(ValueError):
    """A model folder whose weights are cut short, changed since training, or do not fit its config.json."""


def read_config(model_dir):
    path = os.path.join(model_dir, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DamagedModel(f"{path}: not valid JSON ({e})") from None
    missing = [key for key in ("model", "weights_sha256", "tokenizer_fingerprint") if key not in config]
    if missing:
        raise DamagedModel(f"{path}: no {', '.join(missing)} in it: not a model folder that lmcore training wrote")
    return config


def read_weights(model_dir, config=None):
    """The tensors of a model folder's model.safetensors, checked first against the sha256 that
    training recorded in config.json."""
    path = os.path.join(model_dir, "model.safetensors")
    if not os.path.isfile(path):
        raise DamagedModel(f"{path}: missing (the folder's weights); train the model again or restore the file")
    if sha256_file(path) != (config or read_config(model_dir))["weights_sha256"]:
        raise DamagedModel(
            f"{path}: sha256 differs from the one config.json recorded when the model was trained "
            f"(the file was cut short or changed since); train it again or restore the file"
        )
    try:
        return load_safetensors(path)
    except ValueError as e:
        raise DamagedModel(str(e)) from None


def load_model(model_dir, device="cpu"):
    """(model in eval mode, tokenizer) from a model folder; DamagedModel names a file that is not as
    training wrote it."""
    config = read_config(model_dir)
    model = GPT(ModelConfig(**config["model"]))
    try:
        missing, unexpected = model.load_state_dict(read_weights(model_dir, config), strict=False)
    except RuntimeError as e:  # a tensor of another shape
        raise DamagedModel(
            f"{model_dir}: model.safetensors does not match config.json ({str(e).splitlines()[-1].strip()})"
        ) from None
    if unexpected or set(missing) - ({"lm_head.weight"} if model.cfg.tie_embeddings else set()):
        raise DamagedModel(
            f"{model_dir}: weights do not match config.json (missing {missing}, unexpected {unexpected})"
        )
    return model.to(device).eval(), read_tokenizer(model_dir, config)


def other_model(models_dir, name, tokenizer, device, role):
    """Another model of the config that this run reads (`role`: its teacher, its DPO reference), in evaluation mode
    on `device`, checked to share the run's tokenizer (its distribution is over the same tokens)."""
    folder = os.path.join(models_dir, name)
    model, theirs = load_model(folder, device)
    if theirs.fingerprint != tokenizer.fingerprint:
        raise ValueError(
            f"{role} {folder}: trained with tokenizer {theirs.fingerprint[:12]}, this model with "
            f"{tokenizer.fingerprint[:12]}; a {role} must share the tokenizer of the model it trains"
        )
    return model


def read_tokenizer(model_dir, config):
    """The folder's tokenizer.model, checked against the fingerprint training recorded."""
    path = os.path.join(model_dir, "tokenizer.model")
    if not os.path.isfile(path):
        raise DamagedModel(f"{path}: missing (the folder's tokenizer); train the model again or restore the file")
    if sha256_file(path) != config["tokenizer_fingerprint"]:
        raise DamagedModel(
            f"{path}: sha256 differs from the tokenizer_fingerprint config.json recorded when the model was "
            f"trained (the file was cut short or changed since); restore it from results/tokenizers/"
        )
    return Tokenizer(path)
