"""Issue 21, "logic once": compression options, the stream budget cut, the conversation cache key
and the typed savings events live in lean_core, and both framework adapters use them."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.load import dumps
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from llama_index.core.base.llms.types import ChatMessage, MessageRole

from lean_chain import LeanCompress, LeanDocumentCompressor
from lean_chain import LeanTemplate as ChainTemplate
from lean_chain.cache import LeanCache
from lean_core import CostLedger, SavingsEvent, count_tokens
from lean_core.budget import BudgetOptions, BudgetSession, ModelAnswer, StreamCut
from lean_core.cache import (
    CacheNamespace,
    ConversationKey,
    ConversationTurn,
    ResponseCache,
    SQLiteCacheStore,
    conversation_key,
)
from lean_core.compression import (
    CompressionJob,
    CompressionOptions,
    LeanCompressor,
    LLMLinguaCompressor,
)
from lean_core.compression.chain import CoarseToFineCompressor, compressor_for
from lean_core.compression.select import RelevanceScorer
from lean_core.errors import InvalidParameterError
from lean_core.templates.options import TemplateOptions
from lean_index import LeanCompressPostprocessor
from lean_index import LeanTemplate as IndexTemplate
from lean_index._cache_codec import chat_key

PASSAGES = ["The Spree flows through Berlin. It joins the Havel at Spandau.",
            "Paris lies on the Seine. The river is 777 km long."]


def lexical() -> LeanCompressor:
    return LeanCompressor(scorer=RelevanceScorer(semantic_weight=0.0))


@pytest.fixture
def ledger(tmp_path: Path) -> CostLedger:
    return CostLedger(tmp_path / "ledger.sqlite3")


# -- 1. compression options, declared once ---------------------------------------------------------
@pytest.mark.parametrize("adapter", [LeanCompress, LeanDocumentCompressor, LeanCompressPostprocessor])
def test_every_compression_adapter_is_the_one_options_model(adapter: type[CompressionOptions]) -> None:
    assert issubclass(adapter, CompressionOptions)
    for name in CompressionOptions.model_fields:
        assert adapter.model_fields[name].description == CompressionOptions.model_fields[name].description
    built = adapter(target_tokens=40, target_model="gpt-4o-mini", method="lean+llmlingua",  # type: ignore[call-arg]
                    protect_kinds=["number"], protect_patterns=[r"ID-\d+"], title_key=None)
    assert built.budget.target_tokens == 40 and built.budget.target_model == "gpt-4o-mini"
    assert built._default_compressor is None  # nothing built, nothing loaded, at construction
    compressor = built.get_compressor()
    assert isinstance(compressor, CoarseToFineCompressor) and compressor is built.get_compressor()
    assert isinstance(compressor.coarse, LeanCompressor) and compressor.coarse.protect_kinds == ("number",)
    assert isinstance(compressor.fine, LLMLinguaCompressor) and compressor.fine.protect_patterns == (r"ID-\d+",)


@pytest.mark.parametrize(("options", "parameter"), [
    ({"ratio": 1.5}, "ratio"), ({"ratio": True}, "ratio"), ({"target_tokens": 0}, "target_tokens"),
    ({"target_tokens": 2.5}, "target_tokens"), ({"method": "zip"}, "method"), ({"target_model": ""}, "target_model"),
    ({"protect_kinds": ["numbers"]}, "protect_kinds"), ({"protect_kinds": "number"}, "protect_kinds"),
    ({"protect_patterns": ["("]}, "protect_patterns"), ({"compressor": "lean"}, "compressor"),
    ({"ratio": 0.5, "target_tokens": 10}, "ratio"), ({"ratio": None}, "ratio"),
])
@pytest.mark.parametrize("adapter", [CompressionOptions, LeanCompress, LeanCompressPostprocessor])
def test_options_are_validated_with_named_errors(adapter: type[CompressionOptions], options: dict[str, object],
                                                 parameter: str) -> None:
    # InvalidParameterError's message (parameter, allowed, received), which pydantic wraps
    with pytest.raises(ValueError, match=f"invalid {parameter}: expected .*, received"):
        adapter(**options)  # type: ignore[arg-type]


async def test_jobs_and_typed_savings_event(ledger: CostLedger) -> None:
    options = CompressionOptions(compressor=lexical(), target_tokens=12, ledger=ledger)
    jobs = [CompressionJob(PASSAGES, "What river flows through Berlin?"), CompressionJob(PASSAGES[1])]
    results = options.compress_jobs(jobs)
    assert [r.text for r in await options.acompress_jobs(jobs)] == [r.text for r in results]
    event = options.savings_event(results, tenant="acme")
    assert isinstance(event, SavingsEvent) and event.layer == "compression" and event.tenant == "acme"
    assert event.input_tokens_before == sum(r.original_tokens for r in results)
    options.record_compression(results, tenant="acme")
    await options.arecord_compression(results)
    assert [(e.layer, e.tenant) for e in ledger.savings()] == [("compression", "acme"), ("compression", None)]
    assert CompressionOptions(compressor=lexical()).savings_event(results) is None  # no ledger


def test_postprocessor_serialises_without_its_compressor() -> None:
    post = LeanCompressPostprocessor(compressor=lexical(), target_tokens=30)
    data = post.to_dict()
    assert "compressor" not in data and "ledger" not in data and data["target_tokens"] == 30


def test_compressor_for_names_the_allowed_methods() -> None:
    with pytest.raises(InvalidParameterError, match="method"):
        compressor_for("zip")  # type: ignore[arg-type]
    assert isinstance(compressor_for("lean", protect_kinds=()), LeanCompressor)


# -- 2. the stream budget cut ----------------------------------------------------------------------
def test_stream_cut_ends_at_the_budget_and_counts_what_was_shown() -> None:
    cut = StreamCut(max_tokens=3, model="gpt-4o", enforce=True)
    shown = [cut.take(d) for d in ["One", " two", " three", " four", " five"]]
    assert cut.done and cut.cut and shown[-1] is None
    assert cut.text == "One two three" and shown[:3] == ["One", " two", " three"]
    answer = cut.answer(reported_tokens=99)  # a cut stream's provider count is never used
    assert answer.finish_reason == "length" and answer.output_tokens == count_tokens("One two three", "gpt-4o").tokens


def test_stream_cut_without_enforcement_joins_and_reports() -> None:
    cut = StreamCut(max_tokens=1, model="gpt-4o", enforce=False)
    assert cut.take("a long answer", early_stop="repetition") == "a long answer"
    assert cut.take("", finish_reason="stop") is None and not cut.done
    cut.take("", finish_reason=None)  # a later chunk without a reason keeps the last one
    answer = cut.answer(reported_tokens=7, raw="raw")
    assert (answer.finish_reason, answer.output_tokens, answer.early_stop, answer.raw) == ("stop", 7, "repetition",
                                                                                           "raw")
    assert cut.output_tokens() == count_tokens("a long answer", "gpt-4o").tokens
    with pytest.raises(InvalidParameterError, match="max_tokens"):
        StreamCut(max_tokens=0, model="gpt-4o", enforce=True)


# -- 3. the conversation cache key -----------------------------------------------------------------
def test_conversation_key_rule() -> None:
    lone = conversation_key([ConversationTurn("user", "hi")])
    assert lone == ConversationKey(prompt="hi", context=None, semantic=True)
    assert lone.namespace("acme", "m") == CacheNamespace("acme", "m")
    chat = conversation_key([ConversationTurn("system", "be brief"), ConversationTurn("user", "hi")])
    assert chat.prompt == "hi" and chat.semantic and chat.context is not None
    assert chat.scoped("m").startswith("m\n") and chat.context in chat.scoped("m")
    other = conversation_key([ConversationTurn("system", "be long"), ConversationTurn("user", "hi")])
    assert other.context != chat.context
    tool = conversation_key([ConversationTurn("tool", "18 C", {"tool_call_id": "c1"})])
    named = conversation_key([ConversationTurn("user", "hi", {"name": "bob"})])
    assert not tool.semantic and not named.semantic and named.context not in (None, lone.context)
    with pytest.raises(InvalidParameterError, match="turns"):
        conversation_key([])
    with pytest.raises(InvalidParameterError, match="extras"):
        conversation_key([ConversationTurn("user", "x", {"bad": float("nan")})])


def test_both_adapters_key_a_plain_conversation_by_the_same_rule() -> None:
    lc = [SystemMessage("Answer briefly."), HumanMessage("Name a prime.")]
    li = [ChatMessage(role=MessageRole.SYSTEM, content="Answer briefly."),
          ChatMessage(role=MessageRole.USER, content="Name a prime.")]
    lean = LeanCache(cache=ResponseCache(mode="exact"), default_tenant="t")
    chain_key = lean._key(dumps(lc), "llm")
    index_key = chat_key({"class": "X"}, li, {})
    expected = conversation_key([ConversationTurn("system", "Answer briefly."), ConversationTurn("user", "Name a prime.")])
    assert chain_key is not None and chain_key.prompt == index_key.prompt == "Name a prime."
    assert expected.context is not None
    assert chain_key.namespace.llm.endswith(expected.context) and index_key.llm.endswith(expected.context)
    assert not chain_key.exact_only and not index_key.exact_only
    tool_key = lean._key(dumps([*lc, AIMessage("", tool_calls=[{"name": "f", "args": {}, "id": "c"}]),
                                ToolMessage("18", tool_call_id="c")]), "llm")
    assert tool_key is not None and tool_key.exact_only and tool_key.prompt == "18"
    named = [li[0], ChatMessage(role=MessageRole.USER, content="Name a prime.", additional_kwargs={"name": "b"})]
    assert chat_key({"class": "X"}, named, {}).exact_only


def test_exact_only_entries_are_never_served_by_meaning(tmp_path: Path) -> None:
    class NoEmbedder:
        def encode(self, texts: list[str]) -> object:
            raise AssertionError("an exact-only prompt is never embedded")

    cache = ResponseCache(SQLiteCacheStore(tmp_path / "c.sqlite3"), mode="semantic", embedder=NoEmbedder())  # type: ignore[arg-type]
    space = CacheNamespace("t", "m")
    cache.update("18 C", "payload", namespace=space, exact_only=True)
    assert cache.lookup("18 C", namespace=space, exact_only=True).kind == "exact"
    assert cache.lookup("19 C", namespace=space, exact_only=True).entry is None


# -- 4. savings as typed events --------------------------------------------------------------------
async def test_budget_session_writes_typed_events(ledger: CostLedger) -> None:
    session = BudgetSession("who wrote emma", BudgetOptions())
    session.record_in(ledger, model="gpt-4o-mini")  # no answer yet: nothing to record
    session.on_answer(ModelAnswer(text="Jane Austen.", finish_reason="stop", output_tokens=4))
    savings, _ = session.records(model="gpt-4o-mini", tenant="acme")
    assert isinstance(savings, SavingsEvent) and savings.layer == "output" and savings.output_tokens_after == 4
    session.record_in(ledger, model="gpt-4o-mini", tenant="acme")
    await session.arecord_in(ledger, model="gpt-4o-mini")
    session.record_in(None, model="gpt-4o-mini")
    assert [e.tenant for e in ledger.savings()] == ["acme", None] and len(ledger.output_lengths()) == 2


@pytest.mark.parametrize("adapter", [ChainTemplate, IndexTemplate])
def test_template_adapters_share_their_options(adapter: type[TemplateOptions], ledger: CostLedger) -> None:
    assert issubclass(adapter, TemplateOptions)
    template = adapter(task="Answer from the context.", context="Context: {context}", question="Q: {question}",
                       baseline="Please, kindly, answer {question} using {context} carefully.",
                       ledger=ledger)  # type: ignore[call-arg]  # sections stand in for spec
    rendered, savings = template.render_values({"context": "Berlin is on the Spree.", "question": "Which river?"})
    assert savings is not None and rendered.total_tokens == savings.input_tokens_after
    event = savings.ledger_event(tenant="t")
    assert isinstance(event, SavingsEvent) and event.layer == "template"
    template.record_template(savings, tenant="t")
    template.record_template(None)
    assert [e.tenant for e in ledger.savings()] == ["t"]
    with pytest.raises(ValueError, match="baseline"):
        adapter(task="x {a}", baseline="uses {b}")  # type: ignore[call-arg]
