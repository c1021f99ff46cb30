"""The report page on its own: readable numbers whatever a model did, flags, and the data funnel's details."""

import math

from lmcore.report import render


def model(test_loss, mfu=0.3, perplexity=None):
    summary = {
        "parameters": 1000,
        "non_embedding_parameters": 800,
        "tokens_seen": 10_000,
        "tokens_per_parameter": 10.0,
        "total_flops": 4.8e10,
        "step_time_s": 12.5,
        "job_time_s": 14.0,
        "tokens_per_s": 800.0,
        "mfu": mfu,
        "peak_flops": 3e10,
        "peak_source": "measured: best of 5",
        "best_val_loss": test_loss,
        "device": "cpu",
        "precision": "torch.float32",
    }
    test = {
        "loss": test_loss,
        "perplexity": perplexity if perplexity is not None else math.exp(min(test_loss, 700)),
        "bits_per_byte": 1.5,
    }
    baseline = {"loss": 5.0, "perplexity": math.exp(5.0), "bits_per_byte": 3.0}
    metrics = [{"step": 10, "tokens": 1000, "loss": test_loss, "val_loss": test_loss, "lr": 1e-3, "grad_norm": 1.0}]
    return {"summary": summary, "metrics": metrics, "eval": {"test": test, "baseline": baseline}, "samples": []}


def page_data():
    ingest = [
        {
            "source": "s",
            "documents": 3,
            "characters": 300,
            "skipped": {},
            "replaced_bytes": {"a.txt": 2},
            "control_characters": {"b.txt": 5},
        }
    ]
    clean = [{"documents_out": 3, "characters_out": 300, "dropped": {}, "dropped_characters": {}, "examples": {}}]
    dedup = {
        "stats": {"documents_out": 2, "characters_out": 200, "documents_removed": 1, "characters_removed": 100},
        "clusters": [
            {
                "survivor": "s/a.txt",
                "members": ["s/a.txt", "s/c.txt"],
                "removed": [{"id": "s/c.txt", "exact": False, "jaccard": 0.87}],
            }
        ],
    }
    tokenizers = {
        "t": {
            "model_type": "bpe",
            "vocab_size": 20943,
            "requested_vocab_size": 100000,
            "chars_per_token": 3.0,
            "bytes_per_token": 3.0,
            "byte_fallback_share": 0.0,
            "vocab_used_share": 0.5,
            "round_trip_failures": 0,
            "tokens": 100,
            "top_pieces": [],
        }
    }
    return {"ingest": ingest, "clean": clean, "dedup": dedup}, tokenizers


def page(models):
    return render({"config": {}, "commit": "abc", "rule_times": {}}, *page_data(), models)


def test_a_diverged_model_reads_plainly_and_is_flagged():
    html = page(
        {
            "good": model(3.0),
            "huge": model(250.0, mfu=1.46),
            "inf": model(800.0, perplexity=math.inf),
            "empty": model(math.nan),
        }
    )
    assert "3.75e+108" in html  # exp(250), not 109 digits
    assert "<td class='n'>∞</td>" in html and "<td class='n'>nan</td>" in html
    assert html.count("<td>NO</td>") == 3 and html.count("<td>yes</td>") == 1
    assert "Not better than the unigram baseline: huge, inf, empty." in html
    assert "146.0%" not in html and "30.0%" in html  # an MFU above 100% means a peak measured too low: not shown


def test_the_best_model_comes_first_with_its_folders_commands_and_benchmark_scores():
    models = {"tiny": model(3.0), "small": model(2.5), "broken": model(math.nan)}
    models["small"]["eval"]["test"]["bits_per_byte"] = 1.2
    models["broken"]["eval"]["test"]["bits_per_byte"] = math.nan
    models["small"]["hf"], models["tiny"]["hf"] = "ok: llama", "no: relu2 has no Hugging Face architecture"
    models["small"]["gguf"], models["tiny"]["gguf"] = "ok: llama", "no: relu2 has no Hugging Face architecture"
    row = {"task": "next_line", "metric": "acc_norm", "filter": "none", "value": 0.4, "stderr": 0.02, "chance": 0.25,
           "n": 500}  # fmt: skip
    models["small"]["scores"] = {"scores": [row]}
    models["small"]["adapter"] = True  # a LoRA model's PEFT adapter
    html = page(models)
    assert "Best model: <strong>small</strong>, 1.200 test bits per byte (then tiny 1.500, broken nan)." in html
    assert html.index("Best model") < html.index("<h2>Models</h2>")
    assert '<a href="hf/small/">Hugging Face</a>' in html and 'href="hf/tiny/"' not in html
    assert '<a href="gguf/small.gguf">GGUF</a>' in html and 'href="gguf/tiny.gguf"' not in html
    assert '<a href="lora/small/">PEFT adapter</a>' in html and 'href="lora/tiny/"' not in html
    assert 'href="checkpoints/tiny/"' in html and "python -m lmcore generate results/models/small" in html
    assert "--rerun-incomplete results/models/broken/summary.json" in html
    assert "<h3>Benchmark scores</h3>" in html
    assert "<td>small</td><td>next_line</td><td>acc_norm</td><td class='n'>0.4</td>" in html


def test_columns_spell_out_their_units_and_vocabulary_shows_what_was_asked():
    html = page({"good": model(3.0)})
    for header in (
        "test loss (nats/token)",
        "test perplexity",
        "test bits per byte",
        "tokens/s",
        "training time, steps (s)",
        "training time, whole job (s)",
        "MFU",
    ):
        assert f"<th>{header}</th>" in html
    assert "<td>20,943 of 100,000 requested</td>" in html
    top = html[: html.index("<h2>")]  # where a person looks first
    assert "Vocabulary smaller than asked: t: 20,943 pieces, fewer than the vocab_size of 100,000 asked." in top


def test_the_funnel_shows_near_duplicates_with_their_similarity_and_repaired_files():
    html = page({"good": model(3.0)})
    assert "s/c.txt (0.87)" in html and "<td>s/a.txt</td>" in html
    assert "<td>s/a.txt</td><td class='n'>2</td><td class='n'>0</td>" in html
    assert "<td>s/b.txt</td><td class='n'>0</td><td class='n'>5</td>" in html


def test_the_funnel_counts_what_a_sources_where_dropped_at_ingest():
    data, tokenizers = page_data()
    data["ingest"][0].update(dropped={"where int_score >= 3": 7}, dropped_characters={"where int_score >= 3": 700})
    html = render({"config": {}, "commit": "abc", "rule_times": {}}, data, tokenizers, {"good": model(3.0)})
    assert "<td>read</td><td class='n'>10</td><td class='n'>1,000</td>" in html
    assert "<td>where int_score &gt;= 3</td><td class='n'>7</td><td class='n'>700</td>" in html


def test_evaluation_summaries_never_divide_by_zero_or_overflow():
    from lmcore.evaluation.perplexity import split_figures

    empty = split_figures(0.0, 0, 0)  # a split with no token
    assert math.isnan(empty["loss"]) and math.isnan(empty["perplexity"]) and math.isnan(empty["bits_per_byte"])
    diverged = split_figures(250.0 * 1000, 1000, 4000)  # a loss of 250 nats per token
    assert diverged["perplexity"] == math.exp(250.0)
    assert split_figures(800.0 * 10, 10, 40)["perplexity"] == math.inf  # exp(800) overflows a float


def test_a_sweep_gets_a_table_of_its_grid_with_the_best_cell_marked_and_a_plot():
    import re

    from lmcore.report.page import render

    models = {
        "w-d_model32-lr0.001": model(3.5),
        "w-d_model32-lr0.003": model(3.1),
        "w-d_model64-lr0.001": model(3.0),
        "other": model(2.0),
    }
    html = page(models)  # no sweep in the config: no section
    assert "<h2>Sweeps</h2>" not in html
    run = {
        "config": {"sweeps": {"w": {"grid": {"d_model": [32, 64], "lr": [0.001, 0.003]}}}},
        "commit": "abc",
        "rule_times": {},
    }
    html = render(run, *page_data(), models)
    section = html[html.index("<h2>Sweeps</h2>") : html.index("<h2>Training curves</h2>")]
    assert (
        "<th>d_model</th><th>lr</th>" in section and "other" not in section
    )  # a cell not trained (64, 0.003) is left out
    assert re.search(
        r"<td>w-d_model64-lr0.001</td><td class='n'>64</td><td class='n'>0.001</td><td "
        r"class='n'>3</td>.*?<td>best</td>",
        section,
    )
    assert section.count("<td>best</td>") == 1 and section.count("<svg") == 1


def test_each_source_gets_its_test_bits_per_byte_beside_what_each_model_trained_on_and_started_from():
    models = {"all": model(3.0), "milton": model(2.8)}
    models["all"]["eval"]["test"]["sources"] = {"milton": {"bits_per_byte": 2.5}, "plays": {"bits_per_byte": 2.2}}
    models["milton"]["eval"]["test"]["sources"] = {"milton": {"bits_per_byte": 2.1}, "plays": {"bits_per_byte": 2.4}}
    config = {
        "sources": {"plays": {}, "milton": {}},
        "models": {
            "all": {"data": {"sources": None}, "init_from": None},
            "milton": {"data": {"sources": {"milton": 3, "plays": 1}}, "init_from": {"model": "all"}},
        },
    }
    html = render({"config": config, "commit": "abc", "rule_times": {}}, *page_data(), models)
    section = html[html.index("<h2>By source</h2>") : html.index("<h2>Training curves</h2>")]
    assert (
        "<th>milton: test bits per byte</th><th>plays: test bits per byte</th><th>all: test bits per byte</th>"
        in section
    )
    assert "<td>all</td><td>all, by tokens</td><td>random</td><td class='n'>2.5</td><td class='n'>2.2</td>" in section
    assert (
        "<td>milton</td><td>milton 75%, plays 25%</td><td>all</td><td class='n'>2.1</td><td class='n'>2.4</td>"
        in section
    )
    assert "<h2>By source</h2>" not in page({"one": model(3.0)})  # one source, nothing continued: no section


def test_conversations_put_the_base_and_the_fine_tuned_model_side_by_side_with_their_replies_escaped():
    models = {"base": model(3.0), "sft": model(3.2)}
    for name, bits in (("base", 2.5), ("sft", 1.25)):
        models[name]["eval"]["test"]["answers"] = {"loss": bits, "bits_per_byte": bits, "tokens": 40, "bytes": 90}
        messages = [{"role": "user", "content": "Who <b>goes</b> there?"}]
        models[name]["conversations"] = [
            {"messages": messages, "reference": "Nay, answer me.", "replies": {"greedy": f"<i>{name}</i>"}}
        ]
    config = {"models": {"base": {}, "sft": {"init_from": {"model": "base"}, "loss": "assistant"}}}
    html = render({"config": config, "commit": "abc", "rule_times": {}}, *page_data(), models)
    section = html[html.index("<h2>Conversations</h2>") : html.index("<h2>Training curves</h2>")]
    assert "<td>sft</td><td>assistant</td><td></td><td>base</td><td class='n'>40</td>" in section
    assert "1.25" in section and "2.5" in section
    assert "Who &lt;b&gt;goes&lt;/b&gt; there?" in section and "&lt;i&gt;sft&lt;/i&gt;" in section
    assert section.count("Nay, answer me.") == 1  # one conversation, both models' replies under it
    assert "<h2>Conversations</h2>" not in page({"base": model(3.0)})


def test_the_funnel_counts_languages_and_the_text_cleaning_changed():
    data, tokenizers = page_data()
    data["clean"][0] |= {"languages": {"en": [2, 250], "fr": [1, 50]}, "fixed_text": 1, "pii": {"email": 3, "ip": 0}}
    html = render({"config": {}, "commit": "abc", "rule_times": {}}, data, tokenizers, {"m": model(3.0)})
    section = html[html.index("<h3>Languages</h3>") : html.index("<h2>Tokenizers</h2>")]
    assert section.index("<td>en</td>") < section.index("<td>fr</td>") and "250" in section
    assert "mojibake repaired (clean.fix_text)</td><td class='n'>1" in section and "email replaced" in section
    assert "ip replaced" not in section  # nothing to say
    assert "<h3>Languages</h3>" not in page({"m": model(3.0)})
