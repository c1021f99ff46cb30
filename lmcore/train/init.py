"""A model's starting weights: the files its `init_from` names (the train rule's inputs, the
checkpoint's run key and the loader read the same list), and the weights, checked against the model.
Torch is imported only to read the weights: the workflow reads the file list while it plans."""

import os

from lmcore.model.families import BLOCK_KEYS


def hf_weight_files(folder):
    """The files of a Hugging Face folder that hold its model: config.json and every .safetensors
    (rule inputs, checkpoint run key and loader read the same list; no torch import here)."""
    return [
        os.path.join(folder, name)
        for name in sorted(os.listdir(folder))
        if name == "config.json" or name.endswith(".safetensors")
    ]


def starting_files(init_from, models_dir):
    """The weight files a model's `init_from` names: a Hugging Face folder's, or those of another model
    of the config, in `models_dir` (results/models/). The train rule's inputs and the run key."""
    if "hf" in init_from:
        return hf_weight_files(init_from["hf"])
    return [os.path.join(models_dir, init_from["model"], "model.safetensors")]


def other_models(entry):
    """{role: model name} of the other models of the config whose weights this entry's training reads: the
    teacher it distils (and the reference of preference tuning); each trains first, and a new one retrains it."""
    distill, dpo = entry.get("distill"), entry.get("dpo")
    return {
        **({"teacher": distill["teacher"]["model"]} if distill else {}),
        **({"reference": dpo["reference"]["model"]} if dpo else {}),
    }


def weight_files(entry, models_dir):
    """{role: files} of every model's weights this entry's training reads: `start` (init_from's) and other_models'.
    The train rule's inputs and the checkpoints' run key."""
    files = {"start": starting_files(entry["init_from"], models_dir)} if entry.get("init_from") else {}
    for role, name in other_models(entry).items():
        files[role] = [os.path.join(models_dir, name, f) for f in ("model.safetensors", "config.json")]
    return files


def starting_weights(init_from, model, models_dir, tokenizer):
    """The weights `init_from` names (a Hugging Face folder, or another model's folder in `models_dir`),
    checked against `model` and its tokenizer tensor by tensor before any step."""
    from lmcore.export.layouts import load_hf
    from lmcore.model.folder import read_config, read_weights

    if "hf" in init_from:
        where = init_from["hf"]
        options, weights = load_hf(where)
    else:
        where = os.path.join(models_dir, init_from["model"])
        saved = read_config(where)
        if saved["tokenizer_fingerprint"] != tokenizer.fingerprint:
            raise ValueError(
                f"init_from {where}: trained with tokenizer {saved['tokenizer_fingerprint'][:12]}, "
                f"this model with {tokenizer.fingerprint[:12]}; a model continues another of the same tokenizer"
            )
        options, weights = saved["model"], read_weights(where, saved)
    for key in BLOCK_KEYS:
        if options[key] != getattr(model.cfg, key):
            raise ValueError(
                f"init_from {where}: {key} is {options[key]} there, {getattr(model.cfg, key)} in this model entry"
            )
    ours = model.state_dict()
    for name, tensor in weights.items():
        if name not in ours or ours[name].shape != tensor.shape:
            raise ValueError(
                f"init_from {where}: tensor {name} has shape {tuple(tensor.shape)} there, "
                f"{tuple(ours[name].shape) if name in ours else 'none'} in this model entry"
            )
    return where, weights
