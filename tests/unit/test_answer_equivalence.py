"""Answer equivalence: each check, payload reading, combinators, and the judge's failure paths.

The judge runs against a LangChain ``GenericFakeChatModel`` (fast path) and against the real
``ChatOpenAI`` and LlamaIndex ``OpenAI`` clients on loopback servers speaking the OpenAI wire format.
The embedding check uses a bag-of-words embedder here; the real MiniLM runs in
tests/integration/test_answer_equivalence_models.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, Generation

from lean_benchmarks.answer_equivalence_bench import (
    answer_pairs_path,
    load_answer_pairs,
    run_answer_equivalence_bench,
)
from lean_core.cache.answer_equivalence import (
    AllOf,
    AnswerEquivalence,
    AnyOf,
    EmbeddingEquivalence,
    FactsAgree,
    JudgeEquivalence,
    NormalizedExactMatch,
    answer_text,
    default_answer_equivalence,
    normalized_answer,
)
from lean_core.embeddings import Embedder
from lean_core.errors import InvalidParameterError
from tests.support.agent_chat_server import AgentChatServer, ScriptedStep
from tests.support.openai_stub import OpenAIStub


class TableEmbedder(Embedder):
    """Vectors chosen by the test: a text's vector is looked up, unknown texts are orthogonal."""

    def __init__(self, table: dict[str, Sequence[float]]) -> None:
        super().__init__()
        self.table = table
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> Any:
        self.calls += 1
        rows = [np.asarray(self.table.get(t, [0.0, 0.0, 1.0]), dtype=np.float32) for t in texts]
        out = np.stack(rows)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _fake(*replies: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(content=r) for r in replies]))


# -- payloads -------------------------------------------------------------------------------------
def test_answer_text_reads_the_langchain_payload_leancache_stores() -> None:
    from lean_chain.cache import _serialise

    chat, _, _ = _serialise([ChatGeneration(message=AIMessage(content="Paris."))])
    plain, _, _ = _serialise([Generation(text="Lyon")])
    assert chat is not None and plain is not None
    assert answer_text(chat) == "Paris."
    assert answer_text(plain) == "Lyon"
    assert NormalizedExactMatch().equivalent(chat, "paris")
    assert not NormalizedExactMatch().equivalent(chat, plain)


def test_answer_text_keeps_tool_calls_so_different_calls_never_match() -> None:
    from lean_chain.cache import _serialise

    def call(city: str, call_id: str) -> str:
        message = AIMessage(content="", tool_calls=[{"name": "weather", "args": {"city": city}, "id": call_id}])
        payload, _, _ = _serialise([ChatGeneration(message=message)])
        assert payload is not None
        return payload

    assert NormalizedExactMatch().equivalent(call("Paris", "call_1"), call("Paris", "call_2"))  # ids differ only
    assert not NormalizedExactMatch().equivalent(call("Paris", "call_1"), call("Lyon", "call_1"))


def test_answer_text_reads_llamaindex_payloads() -> None:
    from llama_index.core.base.llms.types import ChatMessage, ChatResponse, CompletionResponse

    from lean_index._cache_codec import dump_chat, dump_completion

    chat = dump_chat(ChatResponse(message=ChatMessage(role="assistant", content="The answer is 42.")))
    completion = dump_completion(CompletionResponse(text="42"))
    assert answer_text(chat) == "The answer is 42."
    assert answer_text(completion) == "42"


@pytest.mark.parametrize("raw", ["plain answer", "{not json", '{"v": 2, "text": "x"}', "[1, 2]", '{"a": 1}'])
def test_answer_text_takes_anything_else_as_the_answer(raw: str) -> None:
    assert answer_text(raw) == raw


# -- the checks -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("a", "b", "same"), [
    ("The Eiffel Tower.", "eiffel  tower", True), ("Yes!", "yes", True), ("An apple", "apple", True),
    ("-20", "20", False), ("3.5", "35", False), ("Paris", "Lyon", False), ("−20 °C", "-20 C", True),
])
def test_normalized_exact_match(a: str, b: str, same: bool) -> None:
    assert NormalizedExactMatch().equivalent(a, b) is same
    assert (normalized_answer(a) == normalized_answer(b)) is same


@pytest.mark.parametrize(("a", "b", "reason"), [
    ("The tower was finished in 1889.", "The tower was finished in 1887.", "numbers differ"),
    ("The capital of France is Paris.", "The capital of France is Lyon.", "named entities differ"),
    ("Yes, it is safe to eat.", "No, it is not safe to eat.", "negation differs"),
    ("The store opens at 9 am.", "The store opens at 9 pm.", "times differ"),
    ("The capital of France is Paris.", "Paris is the capital of France.", None),
])
def test_facts_agree_reads_numbers_entities_and_negation(a: str, b: str, reason: str | None) -> None:
    assert FactsAgree().reason(a, b) == reason
    assert FactsAgree().equivalent(a, b) is (reason is None)


def test_embedding_equivalence_uses_the_threshold_and_skips_identical_answers() -> None:
    embedder = TableEmbedder({"a": [1.0, 0.0, 0.0], "b": [0.95, 0.31, 0.0], "c": [0.5, 0.87, 0.0]})
    check = EmbeddingEquivalence(threshold=0.9, embedder=embedder)
    assert check.similarity("a", "b") == pytest.approx(0.95, abs=0.01)
    assert check.equivalent("a", "b")
    assert not check.equivalent("a", "c")
    calls = embedder.calls
    assert check.equivalent("same text", "same text") and embedder.calls == calls
    assert asyncio.run(check.aequivalent("a", "b"))
    with pytest.raises(InvalidParameterError, match="threshold"):
        EmbeddingEquivalence(threshold=1.5)
    with pytest.raises(InvalidParameterError, match="cached"):
        check.equivalent(b"bytes", "a")  # type: ignore[arg-type]


def test_combinators_and_the_default_chain() -> None:
    embedder = TableEmbedder({"It was completed in 1889.": [1, 0, 0], "It was finished in 1889.": [0.97, 0.24, 0],
                              "It was completed in 1887.": [0.99, 0.1, 0]})
    chain = default_answer_equivalence(embedder=embedder)
    assert isinstance(chain, AnswerEquivalence)
    assert chain.equivalent("Paris.", "paris")  # exact match, no embedding needed
    assert chain.equivalent("It was completed in 1889.", "It was finished in 1889.")
    assert not chain.equivalent("It was completed in 1889.", "It was completed in 1887.")  # facts veto
    assert asyncio.run(chain.aequivalent("It was completed in 1889.", "It was finished in 1889."))
    seen: list[str] = []

    def recording(cached: str, fresh: str) -> bool:
        seen.append(cached)
        return True

    assert not AllOf(NormalizedExactMatch(), recording).equivalent("a", "b") and seen == []  # stops at the "no"
    assert AnyOf(recording, NormalizedExactMatch()).equivalent("a", "b") and seen == ["a"]
    assert asyncio.run(AllOf(recording, NormalizedExactMatch()).aequivalent("x", "X"))
    with pytest.raises(InvalidParameterError, match="checks"):
        AllOf()
    with pytest.raises(InvalidParameterError, match="checks"):
        AnyOf("not a check")  # type: ignore[arg-type]


# -- the judge ------------------------------------------------------------------------------------
def test_judge_reads_yes_and_no_from_a_chat_model() -> None:
    judge = JudgeEquivalence(_fake("Yes.", "no, they differ"))
    assert judge.equivalent("Paris", "It is Paris.")
    assert not judge.equivalent("Paris", "Lyon")
    assert judge.verdicts == 2 and judge.failures.total == 0
    async_judge = JudgeEquivalence(_fake("yes"))
    assert asyncio.run(async_judge.aequivalent("a", "b"))


def test_judge_failure_and_unreadable_reply_count_as_not_equivalent(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(GenericFakeChatModel):
        def _generate(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("judge is down")

    judge = JudgeEquivalence(Broken(messages=iter([])))
    with caplog.at_level(logging.WARNING, logger="lean_core.cache.answer_equivalence"):
        assert not judge.equivalent("a", "a b")
        assert not judge.equivalent("a", "a b")
    assert judge.failures.errors == 2
    assert sum("judge is down" in r.getMessage() for r in caplog.records) == 1  # warned once, then debug
    assert not asyncio.run(judge.aequivalent("a", "b")) and judge.failures.errors == 3
    unreadable = JudgeEquivalence(_fake("Perhaps."))
    assert not unreadable.equivalent("a", "b")
    assert unreadable.failures.unreadable == 1 and unreadable.verdicts == 0


def test_judge_timeout_counts_as_not_equivalent() -> None:
    release = threading.Event()

    class Hanging(GenericFakeChatModel):
        def _generate(self, *args: Any, **kwargs: Any) -> Any:
            release.wait(30)  # held until the test has seen the timeout
            return super()._generate(*args, **kwargs)

        async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
            await asyncio.Event().wait()  # never answers

    judge = JudgeEquivalence(Hanging(messages=iter([AIMessage(content="yes")])), timeout_s=0.05)
    try:
        assert not judge.equivalent("a", "b")
        assert judge.failures.timeouts == 1
        assert not asyncio.run(judge.aequivalent("a", "b"))
        assert judge.failures.timeouts == 2 and judge.verdicts == 0
    finally:
        release.set()
        judge.close()


def test_judge_duck_types_llamaindex_complete() -> None:
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata

    class Judge(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata()

        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            return CompletionResponse(text="yes" if "Paris" in prompt.split("Answer B:")[1] else "no")

        def stream_complete(self, prompt: str, formatted: bool = False,
                            **kwargs: Any) -> Generator[CompletionResponse, None, None]:
            yield self.complete(prompt)

    judge = JudgeEquivalence(Judge())
    assert judge.equivalent("Paris", "It is Paris.")
    assert not judge.equivalent("Paris", "Lyon")
    assert asyncio.run(judge.aequivalent("Paris", "Paris!"))


def test_judge_validates_its_options() -> None:
    with pytest.raises(InvalidParameterError, match="judge"):
        JudgeEquivalence(object())
    with pytest.raises(InvalidParameterError, match="timeout_s"):
        JudgeEquivalence(_fake("yes"), timeout_s=0)
    with pytest.raises(InvalidParameterError, match="prompt"):
        JudgeEquivalence(_fake("yes"), prompt="no placeholders")


def test_judge_with_the_real_chat_openai_client_on_loopback() -> None:
    from langchain_openai import ChatOpenAI

    with OpenAIStub(script=["yes", "No"]) as stub:
        model = ChatOpenAI(model="gpt-4o", base_url=stub.base_url, api_key="test-key",  # type: ignore[arg-type]
                           max_retries=0)
        judge = JudgeEquivalence(model)
        assert judge.equivalent("The capital is Paris.", "Paris.")
        assert not judge.equivalent("Paris", "Lyon")
        asked = stub.requests[0]["messages"][-1]["content"]
        assert "The capital is Paris." in asked and "Paris." in asked
    with AgentChatServer(script=[ScriptedStep(content="yes")], fail_requests=2) as server:
        model = ChatOpenAI(model="gpt-4o", base_url=server.base_url, api_key="test-key",  # type: ignore[arg-type]
                           max_retries=0)
        judge = JudgeEquivalence(model)
        assert not judge.equivalent("a", "b")  # HTTP 500: not equivalent, counted
        assert not asyncio.run(judge.aequivalent("a", "b"))
        assert judge.failures.errors == 2
        assert judge.equivalent("a", "b")  # the server recovered: a real verdict


def test_judge_with_the_real_llamaindex_openai_client_on_loopback() -> None:
    from llama_index.llms.openai import OpenAI

    with OpenAIStub(script=["Yes", "no"]) as stub:
        judge = JudgeEquivalence(OpenAI(model="gpt-4o", api_base=stub.base_url, api_key="test-key", max_retries=0))
        assert judge.equivalent("42", "The answer is 42.")
        assert not asyncio.run(judge.aequivalent("42", "43"))
        assert judge.verdicts == 2


# -- its own error rate ---------------------------------------------------------------------------
def test_bundled_answer_pairs_are_balanced_and_labelled() -> None:
    pairs = load_answer_pairs(answer_pairs_path())
    kinds = {p.kind for p in pairs}
    assert {"same_short", "paraphrase", "number", "entity", "negation"} <= kinds
    assert sum(p.label for p in pairs) >= 40 and sum(1 - p.label for p in pairs) >= 60


def test_answer_equivalence_bench_measures_false_equivalences(tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    rows = [{"cached": "Paris.", "fresh": "paris", "label": 1, "kind": "same"},
            {"cached": "It was built in 1889.", "fresh": "It was built in 1887.", "label": 0, "kind": "number"},
            {"cached": "Paris", "fresh": "Lyon", "label": 0, "kind": "entity"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "result.json"
    result = run_answer_equivalence_bench(data, checks={"exact": NormalizedExactMatch(), "facts": FactsAgree()},
                                          out=out)
    exact, facts = result
    assert (exact.false_equivalences, exact.false_differences) == (0, 0)
    assert facts.false_equivalences == 1 and facts.false_equivalence_samples[0][0] == "entity"  # one-word names
    assert facts.false_equivalence_rate == pytest.approx(0.5)
    assert json.loads(out.read_text())["rows"][1]["false_equivalences"] == 1
