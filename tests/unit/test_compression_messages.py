"""Chat-message compression in lean_core and the method option: roles, instructions and the ask
are kept, history shrinks under one budget, sync and async agree."""

from __future__ import annotations

import pytest

from lean_core import InvalidParameterError, TokenCounter
from lean_core.compression import (
    CoarseToFineCompressor,
    CompressionBudget,
    LeanCompressor,
    LLMLinguaCompressor,
    acompress_messages,
    compress_messages,
    compressor_for,
)
from lean_core.compression.select import RelevanceScorer

COMPRESSOR = LeanCompressor(scorer=RelevanceScorer(semantic_weight=0.0), token_counter=TokenCounter())
SYSTEM = "You are a support agent. Answer in one sentence. Never reveal internal ticket numbers."
HISTORY = (
    "The customer asked about shipping to Canada. Shipping to Canada takes 5 business days. "
    "They also mentioned that the parcel for order #48213 arrived damaged last month. "
    "We talked about the weather in Toronto for a while. The agent apologised for the delay. "
    "Refunds for damaged parcels are issued within 14 days of the claim. "
)
MESSAGES = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Hi, I have a question about my order."},
    {"role": "assistant", "content": HISTORY * 3, "name": "agent"},
    {"role": "tool", "content": HISTORY * 2, "tool_call_id": "call_1"},
    {"role": "assistant", "content": [{"type": "text", "text": "multimodal parts stay as they are"}]},
    {"role": "user", "content": "How long do refunds for damaged parcels take?"},
]


def _check(out_messages: list[dict[str, object]], result_tokens: int, target: int) -> None:
    assert [m["role"] for m in out_messages] == [m["role"] for m in MESSAGES]
    assert out_messages[0]["content"] == SYSTEM and out_messages[-1] == MESSAGES[-1]
    assert str(out_messages[1]["content"]) in str(MESSAGES[1]["content"])  # an earlier user turn is history
    assert out_messages[4] == MESSAGES[4]  # non-text content untouched
    assert out_messages[2]["name"] == "agent" and out_messages[3]["tool_call_id"] == "call_1"
    history = str(out_messages[2]["content"]) + str(out_messages[3]["content"])
    assert len(history) < len(HISTORY) * 5
    assert "14 days" in history  # the sentence that answers the last question survives
    assert result_tokens <= target


def test_history_and_tool_results_shrink_instructions_and_question_do_not() -> None:
    out = compress_messages(MESSAGES, compressor=COMPRESSOR, budget=CompressionBudget(ratio=0.3))
    assert out.result is not None and out.result.budget_met
    _check(out.messages, out.result.compressed_tokens, out.result.target_tokens)
    assert MESSAGES[2]["content"] == HISTORY * 3  # the input is not modified


async def test_async_matches_sync() -> None:
    budget = CompressionBudget(target_tokens=60)
    sync = compress_messages(MESSAGES, compressor=COMPRESSOR, budget=budget)
    other = await acompress_messages(MESSAGES, compressor=COMPRESSOR, budget=budget)
    assert other.messages == sync.messages and other.result is not None
    _check(other.messages, other.result.compressed_tokens, 60)


def test_nothing_to_compress_returns_copies_and_no_result() -> None:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hello?"}]
    out = compress_messages(messages, compressor=COMPRESSOR, budget=CompressionBudget(ratio=0.1))
    assert out.result is None and out.messages == messages and out.messages[0] is not messages[0]


@pytest.mark.parametrize("bad", ["just a string", [{"content": "no role"}], [42]])
def test_bad_messages_name_the_parameter(bad: object) -> None:
    with pytest.raises(InvalidParameterError, match="messages"):
        compress_messages(bad, compressor=COMPRESSOR, budget=CompressionBudget(ratio=0.5))  # type: ignore[arg-type]


def test_method_names_build_their_compressors_and_bad_ones_are_named() -> None:
    assert isinstance(compressor_for("lean"), LeanCompressor)
    assert isinstance(compressor_for("llmlingua"), LLMLinguaCompressor)
    chained = compressor_for("lean+llmlingua")
    assert isinstance(chained, CoarseToFineCompressor) and chained.name == "lean+llmlingua"
    with pytest.raises(InvalidParameterError, match=r"method.*'lean'.*received.*'fast'"):
        compressor_for("fast")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="coarse_factor"):
        CoarseToFineCompressor(LeanCompressor(), LeanCompressor(), coarse_factor=0.5)


def test_adapters_take_the_method_option() -> None:
    lean_chain = pytest.importorskip("lean_chain")
    assert lean_chain.LeanCompress(method="lean+llmlingua").get_compressor().name == "lean+llmlingua"
    with pytest.raises(InvalidParameterError, match="method"):  # the named error itself, not pydantic's
        lean_chain.LeanCompress(method="fast")
