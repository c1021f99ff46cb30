"""Where a model's starting weights are: the files its `init_from` names (the train rule's inputs,
the checkpoint's run key and the loader read the same list). No torch import: the workflow reads it while it plans."""

import os


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
