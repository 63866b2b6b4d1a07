"""LLMLinguaCompressor with real llmlingua and the real SmolLM2 scorer on 1k-token SQuAD contexts.

Each context is a SQuAD v2 passage followed by the next distinct passages until it holds 1,000+
target-model tokens: far beyond llmlingua's iterative_size (200), where transformers 5 used to
crash it. The scorer runs at a few hundred tokens/s on CPU, so the file compresses only a few
contexts.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from lean_core.compression.llmlingua_backend import LLMLinguaCompressor
from lean_core.compression.protect import find_protected_spans
from lean_core.compression.types import CompressionBudget
from lean_core.errors import InvalidParameterError
from lean_core.tokens import TokenCounter
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.integration
pytest.importorskip("llmlingua")

SQUAD = SHARED_DATA / "qa" / "squad_v2_dev.jsonl"
TARGET_MODEL = "gpt-4o"


def _long_context(first: int, *, min_tokens: int = 1000) -> tuple[list[str], str]:
    """Passages (from SQuAD row ``first`` on, distinct) totalling ``min_tokens``+, and its question."""
    if not SQUAD.is_file():
        pytest.skip(f"{SQUAD} is not available")
    rows = [json.loads(line) for line in SQUAD.read_text().splitlines() if line.strip()]
    counter = TokenCounter()
    passages: list[str] = []
    for row in rows[first:]:
        if row["context"] not in passages:
            passages.append(row["context"])
        if counter.count("\n\n".join(passages), TARGET_MODEL).tokens >= min_tokens:
            return passages, rows[first]["question"]
    raise AssertionError("not enough SQuAD text")


def _share_of_known_words(text: str, source: str) -> float:
    """Share of ``text``'s words found in ``source`` (dropping sub-word tokens can fuse a few)."""
    words, known = re.findall(r"\w+", text.lower()), set(re.findall(r"\w+", source.lower()))
    return sum(word in known for word in words) / max(1, len(words))


@pytest.fixture(scope="module")
def compressor() -> Iterator[LLMLinguaCompressor]:
    """One loaded SmolLM2 scorer for the whole module."""
    state = random.getstate()
    compressor = LLMLinguaCompressor()
    compressor.load()
    assert random.getstate() == state  # loading leaves global random state alone
    yield compressor


def test_long_context_is_compressed_within_a_ratio_budget(compressor: LLMLinguaCompressor) -> None:
    passages, question = _long_context(0)
    text = "\n\n".join(passages)
    result = compressor.compress(text, budget=CompressionBudget(ratio=0.33), question=question)
    assert result.method == "llmlingua"
    assert result.original_tokens >= 1000
    assert result.budget_met and result.compressed_tokens <= result.target_tokens
    assert result.kept_share <= 0.33
    assert result.compressed_tokens >= 0.1 * result.original_tokens  # compressed, not emptied
    assert result.compressed_tokens == TokenCounter().count(result.text, TARGET_MODEL).tokens
    assert _share_of_known_words(result.text, text) > 0.8  # tokens dropped, not rewritten
    assert result.seconds > 0 and result.note is not None and "llmlingua run" in result.note


def test_protected_spans_come_out_whole_or_not_at_all(compressor: LLMLinguaCompressor) -> None:
    passages, question = _long_context(0)
    head = ("Run `cache_size = 4096` first, mail ops-team@example.com, read <https://example.com/a?b=1> "
            "and check that a<b holds for 3.14159 and 1,600 mm (5 ft 3 in) gauges.")
    text = head + "\n\n" + "\n\n".join(passages)
    result = compressor.compress(text, budget=CompressionBudget(ratio=0.33), question=question)
    assert result.budget_met and result.kept_share <= 0.33
    spans = [span.text(text) for span in find_protected_spans(text)]
    assert result.protected_spans == len(spans) > 20
    for whole in ("`cache_size = 4096`", "ops-team@example.com", "https://example.com/a?b=1", "3.14159"):
        assert whole in result.text  # protected segments at the start are never dropped or trimmed
    # every number in the output is one of the input's number spans, never a fusion of two
    numbers = {s for s in spans if re.fullmatch(r"[\d,.]+", s)}
    assert set(re.findall(r"\d[\d,.]*\d|\d", result.text)) <= numbers | {
        n for s in spans for n in re.findall(r"\d[\d,.]*\d|\d", s)}
    assert "\ufffd" not in result.text


def test_passage_list_fits_a_token_budget_in_the_target_models_tokenizer(
        compressor: LLMLinguaCompressor) -> None:
    passages, question = _long_context(40)
    budget = CompressionBudget(target_tokens=250, target_model="smollm2-135m-instruct")
    result = compressor.compress(passages, budget=budget, question=question)
    assert len(passages) > 3
    assert result.original_tokens > 1000 and result.target_tokens == 250
    assert result.budget_met and 0 < result.compressed_tokens <= 250
    assert result.tokenizer.endswith("tokenizer.json") and not result.estimated_counts
    assert _share_of_known_words(result.text, "\n\n".join(passages)) > 0.8


def test_raw_mode_runs_plain_llmlingua_and_reports_what_it_achieved(
        compressor: LLMLinguaCompressor) -> None:
    passages, question = _long_context(0)
    raw = compressor.raw_baseline()
    assert raw._scorer is compressor._scorer  # the same loaded scorer
    result = raw.compress("\n\n".join(passages), budget=CompressionBudget(ratio=0.33),
                          question=question)
    assert result.method == "llmlingua-raw" and result.note is not None
    assert "not enforced" in result.note
    assert 0 < result.compressed_tokens < result.original_tokens
    assert result.kept_share == result.compressed_tokens / result.original_tokens
    assert result.budget_met == (result.compressed_tokens <= result.target_tokens)


def test_llmlingua2_token_classifier_checkpoint_is_accepted(tmp_path: Path) -> None:
    """A tiny random LLMLingua-2-style (BERT token-classification) checkpoint, built offline."""
    transformers = pytest.importorskip("transformers")
    from lean_core.assets import minilm_dir

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm_dir()))
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32,
                                     num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, num_labels=2)
    transformers.BertForTokenClassification(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    passages, question = _long_context(0, min_tokens=300)
    with pytest.raises(InvalidParameterError, match="protect_kinds"):  # it cannot protect spans
        LLMLinguaCompressor(tmp_path).compress(passages, budget=CompressionBudget(ratio=0.4), question=question)
    result = LLMLinguaCompressor(tmp_path, protect_kinds=()).compress(
        passages, budget=CompressionBudget(ratio=0.4), question=question)
    assert result.budget_met and result.kept_share <= 0.4 and result.compressed_tokens > 0
    assert result.note is not None and "ignores the question" in result.note


def test_coarse_to_fine_selects_then_compresses_tokens_within_budget(compressor: LLMLinguaCompressor) -> None:
    from lean_core.compression import CoarseToFineCompressor, LeanCompressor

    passages, question = _long_context(80)
    chained = CoarseToFineCompressor(LeanCompressor(), compressor, coarse_factor=2.0)
    result = chained.compress(passages, budget=CompressionBudget(ratio=0.2), question=question)
    assert result.method == "lean+llmlingua" and result.original_tokens > 1000
    assert result.budget_met and 0 < result.kept_share <= 0.2
    assert any(d.kind == "sentence" for d in result.dropped)  # the coarse stage dropped sentences
    assert result.note is not None and "llmlingua" in result.note
    source = "\n\n".join(passages)
    assert _share_of_known_words(result.text, source) > 0.8
    numbers = {n for n in re.findall(r"\d[\d,.]*\d|\d", source)}  # numbers that survive are whole
    assert set(re.findall(r"\d[\d,.]*\d|\d", result.text)) <= numbers
