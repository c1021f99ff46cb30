"""Cleaning: every rule of lmcore.data.clean.RULES, the reason each drop gives, and the memory of a data job."""

import collections
import os
import random

import pytest
import yaml

import lmcore.data.text as text_module
from helpers import SCHEMA, WORDS
from lmcore.data import clean
from lmcore.io import read_jsonl, write_jsonl


def test_clean_drops_short_documents_with_reason_and_examples(tmp_path):
    docs = [{"id": "long", "text": ("word " * 50).rstrip() + "\n"}, {"id": "short", "text": "tiny"}]
    write_jsonl(tmp_path / "in.jsonl", docs)
    cfg = clean_config(
        min_chars=20, min_words=5, gopher_quality={"enabled": False}, gopher_repetition={"enabled": False}
    )
    stats = clean.clean_part(tmp_path / "in.jsonl", tmp_path / "out.jsonl", cfg)
    out = list(read_jsonl(tmp_path / "out.jsonl"))
    assert [d["id"] for d in out] == ["long"]
    assert out[0]["text"] == ("word " * 50).rstrip() + "\n"
    assert (
        stats["dropped"] == {"min_chars": 1}
        and stats["dropped_characters"] == {"min_chars": 4}
        and stats["examples"] == {"min_chars": [{"id": "short", "excerpt": "tiny"}]}
    )


def clean_config(**changes):
    from lmcore.config import prepare_config

    config = {
        "sources": {"s": {"path": "x"}},
        "tokenizers": {"t": {}},
        "models": {"m": {"tokenizer": "t", "d_model": 8, "n_layers": 1, "n_heads": 1}},
        "clean": {"min_chars": 0, "min_words": 0, **changes},
    }
    return prepare_config(config, SCHEMA)["clean"]


def prose_lines(n_lines=12, seed=0):
    """Distinct lines of ordinary words with stop words among them."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(n_lines)]


PROSE = "\n".join(prose_lines()) + "\n"


# A text each rule drops, by the reason it drops it for: the config key that fired.
DROPS = [
    ("word " * 30, "gopher_quality.min_words"),
    ("# " * 40 + PROSE, "gopher_quality.max_symbol_word_ratio"),
    ("\n".join("- " + line for line in prose_lines()), "gopher_quality.max_bullet_lines"),
    ("\n".join(line + "..." for line in prose_lines()), "gopher_quality.max_ellipsis_lines"),
    ("12 34 56 78 " * 10 + PROSE, "gopher_quality.min_alpha_words"),
    (" ".join(f"w{i}ord" for i in range(80)), "gopher_quality.min_stop_words"),
    (PROSE + "the same line and of that is here\n" * 10, "gopher_repetition.max_dup_line_char_frac"),
    ("lorem ipsum dolor sit amet " + PROSE, "c4.lorem_ipsum"),
    ("function f() { return 1 }\n" + PROSE, "c4.curly_braces"),
]


@pytest.mark.parametrize("text, reason", [(PROSE, None), *DROPS], ids=lambda v: v if v is None or " " not in v else "")
def test_each_rule_drops_for_the_config_key_that_fired(text, reason):
    assert clean.Cleaner(clean_config())(text)[1] == reason


@pytest.mark.parametrize("text, reason", DROPS, ids=lambda v: v if " " not in v else "")
def test_a_null_threshold_switches_off_that_rule_only(text, reason):
    section, key = reason.split(".")
    one_off = clean_config(**{section: {key: None}})
    assert clean.Cleaner(one_off)(text)[1] != reason
    assert len(clean.filters(one_off)) == len(clean.filters(clean_config())) - 1


def test_the_rules_table_is_the_schemas_clean_section():
    """Every threshold key of the schema belongs to one rule of clean.RULES (or C4's line removal), and
    every rule's keys are in the schema: a rule cannot be added to one and not the other."""
    schema = yaml.safe_load(open(SCHEMA, encoding="utf-8"))["properties"]["clean"]["properties"]
    groups = {name for name, spec in schema.items() if spec.get("type") == "object"} - set(clean.STEPS)
    in_schema = {(None, k) for k in schema if k not in groups and k not in clean.STEPS}
    in_schema |= {(g, k) for g in groups for k in schema[g]["properties"] if k != "enabled"}
    in_table = {(rule.group, key) for rule in clean.RULES for key in rule.keys}
    assert in_schema == in_table | {("c4", key) for key in clean.LINE_RULES}
    assert len(in_table) == sum(len(rule.keys) for rule in clean.RULES)  # no key read by two rules


def test_hashes_and_ellipses_are_tested_each_against_the_symbol_limit_as_gopher_does():
    words = PROSE.split()[:100]  # 100 words with 8 '#' and 8 ellipses: 0.08 each, 0.16 together
    text = " ".join(
        w + (" #" if i % 12 == 0 and i < 96 else "") + ("..." if i % 12 == 6 and i < 96 else "")
        for i, w in enumerate(words)
    )
    assert (text.count("#"), text.count("...")) == (8, 8)
    view = clean.TextView(text)
    assert (
        clean.gopher_symbol_ratio(0.1)(view) is None
        and clean.gopher_symbol_ratio(0.07)(view) == "max_symbol_word_ratio"
    )


def test_bullet_and_ellipsis_lines_and_letterless_words_count_as_gopher_defines_them():
    # 6 lines with text (blank ones count for neither side): bullets after spaces or a tab,
    # ellipses with only spaces after
    text = "\n".join(["  - one", "\t• two", "three...  ", "four … five…", "six ...seven", "x", "", "   "])
    view = clean.TextView(text)
    assert (
        clean.gopher_bullet_lines(0.34)(view) is None and clean.gopher_bullet_lines(0.33)(view) == "max_bullet_lines"
    )  # 2 of 6
    assert (
        clean.gopher_ellipsis_lines(0.34)(view) is None
        and clean.gopher_ellipsis_lines(0.33)(view) == "max_ellipsis_lines"
    )
    words = "1999 -- 3.14 __ é! e2e word, (a) x_1 ok"  # 4 of 10 words have no letter: digits, punctuation, underscores
    view = clean.TextView(words)
    assert clean.gopher_alpha_words(0.6)(view) is None and clean.gopher_alpha_words(0.61)(view) == "min_alpha_words"


def test_rules_run_in_the_tables_order_and_an_n_gram_of_a_rule_can_be_left_out():
    on = clean.filters(clean_config(min_chars=1, min_words=1, fineweb={"enabled": True}))
    assert [rule for rule, _ in on] == list(clean.RULES)
    text = "cat dog " * 40  # the top 2-gram covers all of it
    quality_off = {"gopher_quality": {"enabled": False}}
    assert clean.Cleaner(clean_config(**quality_off))(text)[1] == "gopher_repetition.top_ngram_char_frac.2"
    without_2grams = clean_config(
        **quality_off, gopher_repetition={"top_ngram_char_frac": {"2": None, "3": 0.18, "4": 0.16}}
    )
    assert clean.Cleaner(without_2grams)(text)[1] == "gopher_repetition.top_ngram_char_frac.3"


def play(n_speeches=120, seed=0):
    """A play's shape: a speaker's name on its own line, then a few lines of verse; names repeat."""
    rng = random.Random(seed)
    speakers = ["FALSTAFF.", "MISTRESS QUICKLY.", "SIR HUGH EVANS.", "PAGE.", "FORD."]
    speeches = [
        rng.choice(speakers)
        + "\n"
        + "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 10))) for _ in range(rng.randint(1, 2)))
        for _ in range(n_speeches)
    ]
    return "\n\n".join(speeches) + "\n"


def web_page():
    """A shop's listing page: navigation and footer lines around items that repeat the same lines."""
    nav = "Home\nProducts\nAbout us\nContact\nLog in\n"
    items = "".join(
        f"{name} and the spare parts of it, sold to the trade\nAdd to cart\nFree delivery on all orders over fifty "
        "pounds\n"
        f"In stock, ships within one working day\n"
        for name in ("Garden chair", "Oak table", "Desk lamp", "Wool rug", "Bookshelf", "Mirror")
    )
    footer = (
        "Copyright 2024 Example Shop Ltd. All rights reserved.\nTerms and conditions of sale\n"
        "Follow us on social media\n"
    )
    return nav + items + footer + nav + footer


def test_plays_pass_the_duplicate_line_rule_and_boilerplate_does_not():
    text = play()
    lines = [line for line in text.split("\n") if line.strip()]
    assert clean._duplicate_share(lines)[0] > 0.3  # Gopher's share by line count would drop it
    assert clean.Cleaner(clean_config())(text)[1] is None
    assert clean.Cleaner(clean_config())(web_page())[1] == "gopher_repetition.max_dup_line_char_frac"
    by_count = clean_config(gopher_repetition={"max_dup_line_frac": 0.3})  # Gopher's rule, switched back on
    assert clean.Cleaner(by_count)(text)[1] == "gopher_repetition.max_dup_line_frac"


def test_duplicated_ngrams_are_caught():
    rng = random.Random(0)
    fresh = " ".join(rng.choice(WORDS) + str(rng.randint(0, 99)) for _ in range(200))
    repeated = " ".join(["the king and of that queen said to me"] * 8)
    assert clean.Cleaner(clean_config())(fresh + " the of and")[1] is None
    assert clean.Cleaner(clean_config())(fresh + " " + repeated)[1] == "gopher_repetition.dup_ngram_char_frac.5"


@pytest.mark.parametrize("n, limit", [(2, 0.2), (3, 0.18), (4, 0.16)])
def test_top_ngram_rule_decides_as_counting_the_ngrams_does(n, limit):
    """Gopher's rule, counted with tuples: the most frequent n-gram's occurrences x its characters,
    over all word characters. Words of one length, so that ties between n-grams do not matter."""
    rules = {
        "top_ngram_char_frac": {str(k): (limit if k == n else None) for k in (2, 3, 4)},
        "dup_ngram_char_frac": {},
        "max_dup_line_frac": None,
        "max_dup_line_char_frac": None,
        "max_dup_para_frac": None,
        "max_dup_para_char_frac": None,
    }
    cleaner = clean.Cleaner(
        clean_config(gopher_quality={"enabled": False}, c4={"enabled": False}, gopher_repetition=rules)
    )
    rng = random.Random(n)
    fired = 0
    for _ in range(400):
        vocab = ["cat", "dog", "sun", "sea", "owl", "elk", "fox", "yak"][: rng.choice([2, 4, 8])]
        words = [rng.choice(vocab) for _ in range(rng.randint(1, 120))]
        for _ in range(rng.randint(0, 12)):  # a phrase repeated here and there
            phrase = [rng.choice(vocab) for _ in range(n)]
            at = rng.randint(0, len(words))
            words[at:at] = phrase
        grams = collections.Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        top = max(grams.values(), default=0)
        fires = top >= 2 and top * 3 * n / (3 * len(words)) > limit
        expected = f"gopher_repetition.top_ngram_char_frac.{n}" if fires else None
        assert cleaner(" ".join(words))[1] == expected
        fired += expected is not None
    assert 40 < fired < 360  # both outcomes were tried


def test_a_long_document_is_read_in_pieces_with_the_same_words_and_decisions(monkeypatch):
    """Words are counted and hashed piece by piece, so that a document's memory stays a small multiple
    of its size; every rule decides as it does on the whole list of words."""
    rng = random.Random(5)
    texts = [
        play(),
        web_page(),
        PROSE,
        " ".join(["the king and of that queen said to me"] * 8) + PROSE,
        "12 34 56 78 " * 10 + PROSE,
        "no\u2003ordinary\u00a0spaces\tand\nlines " * 30,
        "x" * 500,
    ]
    texts += [" ".join(rng.choice(WORDS) for _ in range(rng.randint(50, 400))) for _ in range(20)]
    for text in texts:
        for size in (1, 7, 64):
            assert "".join(clean.pieces(text, size)) == text
            assert [w for piece in clean.pieces(text, size) for w in piece.split()] == text.split()
    cleaner = clean.Cleaner(clean_config())
    whole = [cleaner(text) for text in texts]
    monkeypatch.setattr(text_module, "PIECE_CHARS", 16)
    assert [cleaner(text) for text in texts] == whole
    reasons = {None, "gopher_repetition.max_dup_line_char_frac", "gopher_quality.min_alpha_words"}
    assert {reason for _, reason in whole} > reasons


def test_c4_removes_javascript_and_policy_lines():
    more = "\n".join(prose_lines(seed=1)) + "\n"
    text = PROSE + "Please enable JavaScript to view this page.\nRead our Privacy Policy.\n" + more
    cleaned, reason = clean.Cleaner(clean_config())(text)
    assert reason is None and cleaned == PROSE + more


def test_cleaning_that_drops_most_of_a_part_says_which_rule_did(tmp_path):
    docs = [{"id": f"d{i}", "text": "def f(x) { return x }\n" + PROSE} for i in range(3)] + [
        {"id": "ok", "text": PROSE}
    ]
    write_jsonl(tmp_path / "in.jsonl", docs)
    lines = []
    stats = clean.clean_part(tmp_path / "in.jsonl", tmp_path / "out.jsonl", clean_config(), warn=lines.append)
    assert stats["dropped"] == {"c4.curly_braces": 3}
    assert len(lines) == 1 and lines[0].startswith("dropped 3 of 4 documents, 3 of them for c4.curly_braces")
    lines.clear()
    clean.clean_part(tmp_path / "out.jsonl", tmp_path / "again.jsonl", clean_config(), warn=lines.append)
    assert lines == []


def test_a_document_emptied_by_c4_line_removal_is_counted_for_it_with_what_it_held():
    """A one-line page mentioning the terms of use was counted as too_short_chars with 0 characters
    and an empty excerpt."""
    import tempfile

    page = "Welcome to the shop, read our terms of use before you buy anything from the many fine things here. " * 20
    docs = [{"id": "page", "text": page.strip()}, {"id": "short", "text": "tiny"}]
    with tempfile.TemporaryDirectory() as tmp:
        write_jsonl(os.path.join(tmp, "in.jsonl"), docs)
        stats = clean.clean_part(
            os.path.join(tmp, "in.jsonl"), os.path.join(tmp, "out.jsonl"), clean_config(min_chars=20, min_words=5)
        )
    assert stats["dropped"] == {"c4.policy": 1, "min_chars": 1}
    assert stats["dropped_characters"] == {"c4.policy": len(page.strip()), "min_chars": 4}
    assert stats["examples"]["c4.policy"] == [{"id": "page", "excerpt": page[:200]}]


def test_a_document_too_long_for_a_jobs_memory_is_named_before_the_job_reads_it(tmp_path):
    from lmcore.data.memory import check_document_memory

    write_jsonl(
        tmp_path / "part-0.jsonl",
        [{"id": "small", "text": "a few words"}, {"id": "src/huge.txt", "text": "word " * 600_000}],
    )
    with pytest.raises(
        MemoryError,
        match=r"part-0\.jsonl: document 'src/huge\.txt' holds 3\.0 MB of JSON, and clean needs about "
        r"230 MB for it .* more than its mem_mb of 100: raise `resources\.clean\.mem_mb`",
    ):
        check_document_memory(tmp_path / "part-0.jsonl", "clean", 100)
    assert check_document_memory(tmp_path / "part-0.jsonl", "shard", 2000) == pytest.approx(212, abs=1)


SENTENCES = "\n".join(line + "." for line in prose_lines()) + "\n"
FINEWEB_DROPS = [
    (PROSE, "fineweb.min_line_punct_ratio"),  # no line ends in punctuation
    ("\n".join(f"Item {i}." for i in range(40)), "fineweb.max_short_line_ratio"),
    (SENTENCES + prose_lines()[0] + ".\n", "fineweb.max_dup_line_char_ratio"),  # one line of 13 again: 7.7%
    (
        "\n".join(f"Extraordinarily magnificent accomplishments{i}." for i in range(20)),
        "fineweb.max_newline_word_ratio",
    ),
]


@pytest.mark.parametrize(
    "text, reason", [(SENTENCES, None), *FINEWEB_DROPS], ids=lambda v: v if v is None or " " not in v else ""
)
def test_finewebs_rules_drop_with_its_thresholds(text, reason):
    cfg = clean_config(
        gopher_quality={"enabled": False}, gopher_repetition={"enabled": False}, fineweb={"enabled": True}
    )
    assert clean.Cleaner(cfg)(text)[1] == reason


def test_c4s_brace_rule_looks_at_the_lines_c4_keeps_of_three_words_or_more():
    cleaner = clean.Cleaner(clean_config())
    assert cleaner("{\n" + PROSE + "}\n")[1] is None  # lines C4 would have removed as too short
    assert cleaner("if x { y }\n" + PROSE)[1] == "c4.curly_braces"
