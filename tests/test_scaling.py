"""Scaling studies: the planner, the IsoFLOP fits (approach 2) and the loss law (approach 3)."""

import re

import pytest
import yaml

from helpers import DATA_JOBS, REPO, SCHEMA, TOKEN_JOBS, planned_jobs, snakemake, tiny_config
from lmcore.config import ConfigError, prepare_config
from lmcore.evaluation.scaling import fit, plan

# Chinchilla's exponents and irreducible loss; A and B put the optimum among shapes a CPU can hold.
E, A, B, ALPHA, BETA = 1.69, 400.0, 400.0, 0.34, 0.28
SHAPES = {
    f"d{d}l{n}": {"d_model": d, "n_layers": n, "n_heads": 2}
    for d, n in [(16, 1), (32, 1), (32, 2), (64, 2), (96, 2), (128, 3), (192, 3), (256, 4), (384, 4), (512, 6)]
}


def study(budgets, shapes=SHAPES):
    config = tiny_config("file:///x", None)
    config["scaling"] = {"iso": {"budgets": budgets, "shapes": shapes, "base": {"context_length": 64}}}
    return prepare_config(config, SCHEMA)


def synthetic_runs(config):
    """The planner's runs, each with the loss L(N, D) = E + A / N^alpha + B / D^beta."""
    return [{**r, "loss": E + A / r["N"] ** ALPHA + B / r["D"] ** BETA} for r in plan(config)]


def test_each_shape_at_each_budget_is_a_model_with_that_flop_budget():
    config = study([1e11, 3e11])
    runs = {name: m for name, m in config["models"].items() if name.startswith("iso-")}
    assert len(runs) == 2 * len(SHAPES)
    assert runs["iso-d64l2-C3e11"]["max_flops"] == 3e11 and runs["iso-d64l2-C3e11"]["d_model"] == 64
    assert (
        runs["iso-d64l2-C3e11"]["context_length"] == 64 and runs["iso-d64l2-C3e11"]["lr"] == 0.01
    )  # base, then model_defaults


def test_the_planner_gives_the_tokens_training_will_see():
    import torch

    from lmcore.model.config import ModelConfig
    from lmcore.model.gpt import GPT, count_parameters, flops_per_token

    (row,) = [r for r in plan(study([1e11])) if r["shape"] == "d64l2"]
    cfg = ModelConfig(vocab_size=320, d_model=64, n_layers=2, n_heads=2, context_length=64)
    n = count_parameters(GPT(cfg))["non_embedding_parameters"]
    assert row["N"] == n and row["D"] == pytest.approx(1e11 / flops_per_token(cfg, n))
    assert torch.get_default_device().type == "cpu"  # the meta device was left


def test_the_fits_recover_the_exponents_of_a_known_loss_law():
    result = fit(synthetic_runs(study([1e11, 1e12, 1e13])))
    assert all("N_opt" in curve for curve in result["curves"].values())
    assert result["a"] == pytest.approx(BETA / (ALPHA + BETA), abs=0.03)  # approach 2: 0.452
    assert result["b"] == pytest.approx(ALPHA / (ALPHA + BETA), abs=0.03)
    law = result["law"]  # approach 3, on noiseless losses: exact
    assert law["alpha"] == pytest.approx(ALPHA, abs=0.005) and law["beta"] == pytest.approx(BETA, abs=0.005)
    assert law["E"] == pytest.approx(E, abs=0.01)
    prediction = result["prediction"]
    assert prediction["budget"] == 1e14
    optimum = result["curves"][1e13]["N_opt"]
    assert prediction["N"] == pytest.approx(optimum * 10 ** result["a"], rel=0.1)


def test_a_budget_whose_minimum_lies_beyond_its_shapes_is_reported_not_fitted():
    large = {k: v for k, v in SHAPES.items() if v["d_model"] >= 128}  # all bigger than the optimum at 1e11 FLOPs
    runs = synthetic_runs(study([1e11], large)) + synthetic_runs(study([1e12, 1e13]))
    result = fit(runs)
    assert "N_opt" not in result["curves"][1e11]
    assert result["curves"][1e11]["reason"] == "the minimum lies beyond the smallest shape: add a smaller one"
    assert result["a"] == pytest.approx(BETA / (ALPHA + BETA), abs=0.05)  # from the two budgets that have one
    alone = fit(synthetic_runs(study([1e11], large)))
    assert alone["a"] is None and alone["prediction"] is None


def test_losses_that_only_rise_with_size_are_said_to_need_a_smaller_shape():
    runs = [
        {"budget": 1e11, "N": n, "D": 1e11 / (6 * n), "loss": loss} for n, loss in [(1e4, 4.2), (3e4, 5.0), (1e5, 5.5)]
    ]
    assert (
        fit(runs)["curves"][1e11]["reason"]
        == "the parabola has no minimum; the loss is lowest at the smallest shape: add a smaller one"
    )


def test_two_shapes_make_no_parabola():
    two = {k: SHAPES[k] for k in ("d32l1", "d64l2")}
    result = fit(synthetic_runs(study([1e11], two)))
    assert result["curves"][1e11]["reason"] == "2 finished run(s) of distinct size; a parabola needs 3"


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda s: s["shapes"]["d16l1"].update(n_layer=2),
            r"'scaling\.iso\.shapes\.d16l1\.n_layer': 'n_layer' is not a model key",
        ),
        (
            lambda s: s["base"].update(max_tokens=1000),
            r"models\.iso-d16l1-C1e11\.max_flops': set max_flops \(1e\+11\) or max_tokens \(1000\), not both",
        ),
        (lambda s: s.update(budgets=[]), r"'scaling\.iso\.budgets': \[\] should be non-empty"),
    ],
)
def test_study_errors_name_the_key(change, message):
    config = tiny_config("file:///x", None)
    config["scaling"] = {
        "iso": {"budgets": [1e11], "shapes": {"d16l1": {"d_model": 16, "n_layers": 1, "n_heads": 2}}, "base": {}}
    }
    change(config["scaling"]["iso"])
    with pytest.raises(ConfigError, match=message):
        prepare_config(config, SCHEMA)


def test_numbers_written_the_short_way_in_yaml_are_numbers():
    """PyYAML, Snakemake's loader, reads 1e11 and 3e-4 as strings; where the schema wants a number they are one."""
    text = """
    sources: {fake: {url: "file:///x"}}
    tokenizers: {tok: {vocab_size: 3.2e+2}}
    model_defaults: {tokenizer: tok, lr: 3e-4}
    models: {a: {d_model: 32, n_layers: 1, n_heads: 2, max_tokens: 1e5}}
    scaling: {iso: {budgets: [1e11, 3.0e11], shapes: {s: {d_model: 32, n_layers: 1, n_heads: 2}}}}
    sweeps: {w: {base: {d_model: 32, n_layers: 1, n_heads: 2}, grid: {lr: [1e-3], max_tokens: [2e3]}}}
    sampling: {prompts: ["1e5"]}
    """
    config = prepare_config(yaml.safe_load(text), SCHEMA)
    assert config["models"]["a"]["lr"] == 3e-4 and config["models"]["a"]["max_tokens"] == 100000
    assert sorted(config["models"]) == ["a", "iso-s-C1e11", "iso-s-C3e11", "w-lr0.001-max_tokens2000"]
    assert (
        config["models"]["iso-s-C3e11"]["max_flops"] == 3e11
        and config["models"]["w-lr0.001-max_tokens2000"]["max_tokens"] == 2000
    )
    assert config["sampling"]["prompts"] == ["1e5"]  # a string where the schema wants one


def test_numbers_inside_a_command_line_mapping_are_numbers():
    """`snakemake --config 'model_defaults={gpus: 1, lr: 0.01}'` hands every value of the mapping over as a string."""
    from snakemake.cli import parse_config

    config = yaml.safe_load("""
    sources: {fake: {url: "file:///x"}}
    tokenizers: {tok: {}}
    model_defaults: {tokenizer: tok}
    models: {a: {d_model: 32, n_layers: 1, n_heads: 2}}
    """)
    config.update(parse_config(['model_defaults={"tokenizer": "tok", "gpus": 1, "lr": 0.01, "batch_size": 1e1}']))
    assert config["model_defaults"]["gpus"] == "1"  # what Snakemake gives
    a = prepare_config(config, SCHEMA)["models"]["a"]
    assert (a["gpus"], a["lr"], a["batch_size"]) == (1, 0.01, 10)
    config["model_defaults"]["batch_size"] = "2.5"
    with pytest.raises(ConfigError, match=r"'models\.a\.batch_size': 2\.5 is not of type 'integer'"):
        prepare_config(config, SCHEMA)


def test_a_dry_run_of_the_example_study_lists_exactly_its_jobs(tmp_path):
    with open(f"{REPO}/configs/scaling.yaml", encoding="utf-8") as f:
        spec = yaml.safe_load(f)["scaling"]
    runs = sum(len(s["budgets"]) * len(s["shapes"]) for s in spec.values())
    result = snakemake(tmp_path, "-n", "results/report.html", configfile=f"{REPO}/configs/scaling.yaml")
    assert result.returncode == 0, result.stderr
    jobs = planned_jobs(result)
    per_model = ("train", "evaluate", "sample", "export_hf", "export_gguf")
    assert {rule: jobs.pop(rule) for rule in per_model} == dict.fromkeys(per_model, runs)
    assert set(re.findall(r"model=(\S+)", result.stdout)) == {
        r["model"]
        for r in plan(prepare_config(yaml.safe_load(open(f"{REPO}/configs/scaling.yaml", encoding="utf-8")), SCHEMA))
    }
    assert jobs == {**DATA_JOBS, "corpus_stats": 1, **TOKEN_JOBS, "report": 1}  # the data stages, the report once


def test_the_report_gives_each_study_its_runs_optima_exponents_prediction_and_plots():
    from lmcore.report import render
    from test_report import model, page_data

    config = study([1e11, 1e12, 1e13])
    runs = synthetic_runs(config)
    models = {}
    for r in runs:
        m = model(r["loss"])
        m["summary"].update(non_embedding_parameters=r["N"], tokens_seen=round(r["D"]))
        models[r["model"]] = m
    html = render({"config": config, "commit": "abc", "rule_times": {}}, *page_data(), models)
    section = html[html.index("<h2>Scaling laws</h2>") : html.index("<h2>Training curves</h2>")]
    a = fit([{**r, "D": round(r["D"])} for r in runs])["a"]
    assert f"N_opt ∝ C<sup>{a:.3f}</sup>" in section and "1e+14 FLOPs (10x the largest run)" in section
    assert "Approach 3: L(N, D) = 1.690 + 400 / N<sup>0.340</sup>" in section
    assert section.count("<svg") == 2 and section.count("<td>iso-") == len(runs)
    del models["iso-d16l1-C1e11"], models["iso-d32l1-C1e11"], models["iso-d32l2-C1e11"], models["iso-d64l2-C1e11"]
    html = render({"config": config, "commit": "abc", "rule_times": {}}, *page_data(), models)
    assert "<td>the minimum lies beyond the smallest shape: add a smaller one</td>" in html
