"""The README's commands work as written: each shell command (of docs/ too) and python example runs in a copy
of the repository (snakemake as a dry run, make as `make -n`), with the README's own example
config as `my.yaml` and a trained tiny model as `results/models/small` (and its exports) and as the chat
config's `small-sft`."""

import glob
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from helpers import REPO, fake_document

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
PROGRAMS = ("snakemake", "python", "make")
COPY_IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "results", "logs", "benchmarks", ".snakemake", "__pycache__", ".pytest_cache", "*.egg-info"
)


def readme_blocks(path="README.md"):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return FENCE.findall(f.read())


def pages():
    """The README and docs/*.md."""
    return ["README.md", *sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))]


def readme_commands():
    """Every command line of the shell blocks of the README and docs/ whose program is snakemake, python or make."""
    commands = []
    for lang, body in [block for path in pages() for block in readme_blocks(path)]:
        if lang not in ("", "sh", "bash", "shell"):
            continue
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            if words and os.path.basename(words[0]) in PROGRAMS:
                commands.append(words)
    return commands


def example_config():
    """The README's example `my.yaml` (the yaml block that starts with `# my.yaml`)."""
    blocks = [body for lang, body in readme_blocks() if lang == "yaml" and body.startswith("# my.yaml")]
    assert len(blocks) == 1, "the README shows one example my.yaml"
    return yaml.safe_load(blocks[0])


def test_the_readme_shows_the_everyday_commands():
    lines = [" ".join(c) for c in readme_commands()]
    for expected in (
        "make run",
        "make test",
        "snakemake --cores 8 results/report.html",
        "--configfile my.yaml",
        "--profile profiles/slurm",
        "python -m lmcore generate",
    ):
        assert any(expected in line for line in lines), f"the README lost the command {expected!r}"


@pytest.fixture(scope="module")
def checkout(tmp_path_factory, pipeline):
    """A copy of the repository with the README's my.yaml, its corpus folder, and a trained model."""
    root = tmp_path_factory.mktemp("readme") / "repo"
    shutil.copytree(REPO, root, ignore=COPY_IGNORE)
    config = example_config()
    with open(root / "my.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f)
    import random

    rng = random.Random(0)
    for source in config["sources"].values():
        folder = root / source["path"]
        folder.mkdir(parents=True)
        for i in range(5):
            (folder / f"text{i}.txt").write_text(fake_document(rng, 30), encoding="utf-8")
    for folder in ("results/models/small", "results-chat/results/models/small-sft"):  # what the commands name
        shutil.copytree(pipeline["work"] / "results" / "models" / "a", root / folder)
    shutil.copytree(pipeline["work"] / "results" / "hf" / "a", root / "results" / "hf" / "small")
    (root / "results" / "gguf").mkdir()
    shutil.copy(pipeline["work"] / "results" / "gguf" / "a.gguf", root / "results" / "gguf" / "small.gguf")
    return root


@pytest.mark.parametrize("command", readme_commands(), ids=" ".join)
def test_each_readme_command_runs_as_written(checkout, command):
    program = os.path.basename(command[0])
    if program == "snakemake":
        argv = [sys.executable, "-m", "snakemake", *command[1:], "-n"]
    elif program == "python":
        argv = [sys.executable, *command[1:]]
    else:
        argv = ["make", "-n", *command[1:]]
    result = subprocess.run(  # no input: `python -m lmcore chat` at a terminal ends at once, as at Ctrl-D
        argv, cwd=checkout, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, f"{shlex.join(command)}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    if program == "python" and "generate" in command:
        assert result.stdout.startswith("ROMEO:") and len(result.stdout) > len("ROMEO:\n")


@pytest.mark.parametrize(
    "block",
    [body for path in pages() for lang, body in readme_blocks(path) if lang == "python"],
    ids=lambda b: b.splitlines()[0][:40],
)
def test_each_readme_python_example_runs_as_written(checkout, block):
    if "llama_cpp" in block and importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (make llama-cpp)")
    result = subprocess.run([sys.executable, "-c", block], cwd=checkout, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ROMEO:\n") and len(result.stdout) > len("ROMEO:\n") + 10
