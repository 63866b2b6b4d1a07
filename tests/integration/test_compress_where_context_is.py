"""The README's LCEL pattern on real passages: ``prompt | LeanCompress(ratio=0.33)`` with a system
message and a "Context: ... Question: ..." human turn keeps at most 0.4 of that turn's tokens,
with the system prompt and the question byte for byte (the default MiniLM compressor)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.prompt_values import ChatPromptValue
from langchain_core.prompts import ChatPromptTemplate

from lean_chain import LeanCompress
from lean_core import count_tokens

pytestmark = pytest.mark.integration

HOTPOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "qa" / "hotpotqa_dev_distractor.jsonl"
SYSTEM = "You are a helpful assistant. Answer from the context only; say so when it is not there."


def _rows(limit: int) -> list[dict[str, object]]:
    if not HOTPOT.is_file():
        pytest.skip(f"needs {HOTPOT} (../shared/data)")
    with HOTPOT.open(encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(limit), handle, strict=False)]


def test_readme_pattern_keeps_at_most_0_4_of_the_human_turn_on_real_passages() -> None:
    prompt = ChatPromptTemplate.from_messages([("system", SYSTEM),
                                               ("human", "Context:\n{context}\n\nQuestion: {question}")])
    compress = LeanCompress(ratio=0.33)
    shares = []
    for row in _rows(5):
        context = "\n\n".join(f"{title}: {''.join(sentences).strip()}"
                              for title, sentences in row["context"])  # type: ignore[attr-defined]
        value = prompt.invoke({"context": context, "question": row["question"]})
        out = compress.invoke(value)
        assert isinstance(out, ChatPromptValue)
        assert out.messages[0].content == SYSTEM
        human = str(out.messages[1].content)
        assert human.startswith("Context:\n") and human.endswith(f"\n\nQuestion: {row['question']}")
        before = count_tokens(str(value.to_messages()[1].content), "gpt-4o").tokens
        shares.append(count_tokens(human, "gpt-4o").tokens / before)
        assert compress.last_report is not None and compress.last_report.compressed
    assert max(shares) <= 0.4, shares
