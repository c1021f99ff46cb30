"""Beam search (lmcore.model.beam): the ids transformers' beam search gives on the model's Hugging Face folder,
cached and uncached alike, and through `python -m lmcore generate --beams`."""

import subprocess
import sys

import pytest
import torch

from helpers import FAMILIES, trained_folder
from lmcore.export.hf import export
from lmcore.model.beam import beam_search
from lmcore.model.folder import load_model
from lmcore.model.generate import generate

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module", params=["llama-untied", "gpt2-tied"])
def models(request, tmp_path_factory, bpe):
    """(lmcore's model, transformers' model of its export, the end-of-text id) of one family; context 48."""
    tmp = tmp_path_factory.mktemp(request.param)
    folder = trained_folder(tmp, bpe, {**FAMILIES[request.param], "context_length": 48})
    export(folder, tmp / "hf")
    ours, tok = load_model(folder)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp / "hf").eval()
    return ours, theirs, tok.eot_id


PROMPTS = [[5, 17, 42], [9], [3, 100, 7, 250, 61, 12, 8]]


@pytest.mark.parametrize(
    "beams, length_penalty, early_stopping",
    [(2, 1.0, False), (3, 1.0, False), (4, 0.5, True), (5, 2.0, "never"), (3, -1.0, False)],
)
def test_beam_search_gives_transformers_ids_cached_and_uncached(models, beams, length_penalty, early_stopping):
    ours, theirs, eot = models
    # the end of text made likely after a few tokens, so that hypotheses finish at different lengths
    stops = {eot, int(ours(torch.tensor([PROMPTS[0]]))[0][0, -1].argsort()[-3])}
    for prompt in PROMPTS:
        cached = beam_search(ours, prompt, 16, beams, length_penalty, early_stopping, stops)
        assert beam_search(ours, prompt, 16, beams, length_penalty, early_stopping, stops, use_cache=False) == cached
        with torch.no_grad():
            out = theirs.generate(
                torch.tensor([prompt]), max_new_tokens=16, num_beams=beams, length_penalty=length_penalty,
                early_stopping=early_stopping, do_sample=False, eos_token_id=sorted(stops), pad_token_id=0,
            )[0, len(prompt):].tolist()  # fmt: skip
        assert cached == out[: len(cached)] and all(t == sorted(stops)[0] for t in out[len(cached) :]), (
            prompt,
            cached,
            out,
        )


def test_one_beam_is_greedy_decoding_and_a_search_past_the_window_crops_as_generate_does(models):
    ours, _, eot = models
    prompt = PROMPTS[2]
    assert beam_search(ours, prompt, 10, 1, stop=()) == list(generate(ours, prompt, 10, temperature=0.0))
    long = beam_search(ours, prompt, 60, 3, stop=())  # past the 48 positions: the last window, recomputed
    assert len(long) == 60 and long == beam_search(ours, prompt, 60, 3, stop=(), use_cache=False)


def test_generate_takes_beams_from_the_command_line(tmp_path, bpe):
    folder = trained_folder(tmp_path, bpe, FAMILIES["llama-untied"])
    command = [sys.executable, "-m", "lmcore", "generate", str(folder), "--prompt", "ROMEO:", "--max-new-tokens", "8"]
    one = subprocess.run([*command, "--beams", "3", "--length-penalty", "0.5"], capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    ours, tok = load_model(folder)
    expected = beam_search(ours, tok.encode("ROMEO:"), 8, 3, 0.5, False, {tok.eot_id})
    assert one.stdout == "ROMEO:" + tok.decode(expected) + "\n"
    bad = subprocess.run([*command, "--beams", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--beams: must be 1 or more, got 0" in bad.stderr and "Traceback" not in bad.stderr
