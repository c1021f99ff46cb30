"""Reruns follow the imports: each rule's code param is the digest of its script's import closure,
so an edit reruns exactly the jobs whose code changed and a moved project reruns nothing."""

import glob
import os
import re
import shutil

import pytest

from helpers import REPO, planned_jobs, snakemake
from lmcore.workflow.closure import closure


def scripts_closure(script):
    return closure(os.path.join(REPO, "workflow_scripts", script + ".py"), os.path.join(REPO, "lmcore"))


def test_every_rule_takes_the_digest_of_the_script_it_runs():
    """A rule whose code param named another script would rerun on the wrong edits."""
    rules = 0
    for path in glob.glob(os.path.join(REPO, "rules", "*.smk")):
        for block in re.split(r"^rule ", open(path, encoding="utf-8").read(), flags=re.M)[1:]:
            script = re.search(r'script:\n\s+"\.\./workflow_scripts/(\w+)\.py"', block)
            if script:
                rules += 1
                assert re.search(
                    rf'^    params:\n(?:        .*\n)*?        code=code\("{script.group(1)}"\),', block, re.M
                ), block
    assert rules == len(glob.glob(os.path.join(REPO, "workflow_scripts", "*.py")))  # each script is a rule's


@pytest.mark.parametrize(
    "script, holds, lacks",
    [
        ("ingest", ["data/ingest.py", "data/text.py"], ["workflow/joblog.py"]),  # CONTROL comes from data/text.py
        ("shards_manifest", ["tokens/shards.py", "tokens/tokenizer.py"], []),
        ("evaluate", ["data/splits.py", "model/gpt.py"], ["export/layouts.py"]),
        ("sample", ["data/splits.py", "model/generate.py"], []),
        ("export_hf", ["export/hf.py", "export/layouts.py", "data/splits.py"], []),
        # not through the HF folder
        ("export_gguf", ["export/gguf.py", "export/layouts.py", "export/architectures.py"], ["export/hf.py"]),
        (
            "train",
            [
                "train/loop.py",
                "train/launch.py",
                "train/budget.py",
                "train/batches.py",
                "train/meter.py",
                "model/gpt.py",
            ],
            ["export/hf.py", "workflow/joblog.py", "train/loggers.py", "config.py"],
        ),  # init_from reads HF folders, never writes them
        ("report", ["report/page.py", "report/templates/report.html.j2"], []),
    ],
)
def test_a_scripts_closure_is_what_it_imports(script, holds, lacks):
    found = scripts_closure(script)
    assert set(holds) <= set(found) and not set(lacks) & set(found), found


def copy_checkout(to):
    """The repository's code, as another checkout at another path would hold it."""
    to.mkdir()
    for name in ("Snakefile", "rules", "workflow_scripts", "lmcore", "schemas", "report", "profiles"):
        source = os.path.join(REPO, name)
        if os.path.isdir(source):
            shutil.copytree(source, to / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, to / name)
    return to


def test_a_moved_project_plans_nothing_and_an_edit_reruns_the_jobs_whose_code_changed(pipeline, tmp_path):
    """A finished project copied elsewhere, with a checkout at another path, planned all its jobs:
    the code inputs were absolute paths."""
    work = tmp_path / "work"
    shutil.copytree(pipeline["work"], work, symlinks=True)
    checkout = copy_checkout(tmp_path / "checkout")
    configfile = work / os.path.basename(pipeline["configfile"])

    def planned():
        result = snakemake(work, "-n", "results/report.html", configfile=configfile, checkout=checkout)
        assert result.returncode == 0, result.stderr[-3000:]
        return planned_jobs(result)

    assert planned() == {}
    with open(checkout / "lmcore" / "workflow" / "joblog.py", "a") as f:
        f.write("\n# rewording a log line changes no output\n")
    with open(checkout / "lmcore" / "train" / "loggers.py", "a") as f:
        f.write("\n# nor does how TensorBoard and W&B are fed\n")
    assert planned() == {}
    with open(checkout / "lmcore" / "export" / "hf.py", "a") as f:
        f.write("\n# how a folder is written\n")
    # model a exports (and is scored again on what it wrote), b has no HF architecture; no training
    assert planned() == {"export_hf": 1, "lm_eval": 1, "report": 1}
    with open(checkout / "lmcore" / "export" / "gguf.py", "a") as f:
        f.write("\n# how a GGUF file is written\n")
    assert planned() == {"export_hf": 1, "lm_eval": 1, "export_gguf": 1, "report": 1}  # the HF edit still pending
    with open(checkout / "lmcore" / "data" / "text.py", "a") as f:
        f.write("\n# where words and control characters are\n")
    jobs = planned()
    assert jobs["ingest"] == 2 and jobs["clean"] == 2 and jobs["train"] == 2 and "download" not in jobs
