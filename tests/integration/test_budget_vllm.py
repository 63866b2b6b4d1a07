"""Output budgets on the real local engine: early stopping, LeanBudget/LeanBudgetLLM, the bench."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lean_core.budget import EarlyStopRule
from lean_core.generation import SamplingOptions
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.integration

# Questions whose greedy SmolLM2 answers loop until any budget (seen in our probes at 512 tokens).
LOOPING_QUESTIONS = ("who is under the mask of darth vader", "who plays gram on the young and the restless",
                     "who developed the concept of total quality management")
LOOPING = LOOPING_QUESTIONS[0]


@pytest.fixture(scope="module")
def engine(smollm2_path: Path):  # type: ignore[no-untyped-def]
    from lean_backends.vllm_engine import VLLMEngineSettings, get_engine

    return get_engine(VLLMEngineSettings(model=str(smollm2_path)))


def test_early_stop_only_cuts_the_greedy_answer(engine) -> None:  # type: ignore[no-untyped-def]
    prompts = [[{"role": "user", "content": q}] for q in
               ("who wrote the novel emma", "why is the sky blue", *LOOPING_QUESTIONS)]
    full = engine.generate_many(prompts, SamplingOptions(max_tokens=384))
    cut = engine.generate_many(prompts, SamplingOptions(max_tokens=384, early_stop=EarlyStopRule()))
    for a, b in zip(full, cut, strict=True):
        assert a.text.startswith(b.text.rstrip()), (a.text, b.text)
        assert b.usage.output_tokens <= a.usage.output_tokens
    loops = [(a, b) for a, b in zip(full[2:], cut[2:], strict=True) if b.choices[0].early_stop == "repetition"]
    assert loops, [b.text for b in cut[2:]]
    for a, b in loops:
        assert b.finish_reason == "stop" and b.usage.output_tokens < a.usage.output_tokens


def test_early_stop_streams_the_same_text(engine) -> None:  # type: ignore[no-untyped-def]
    prompt = [{"role": "user", "content": "who wrote the novel emma"}]
    options = SamplingOptions(max_tokens=128, early_stop=EarlyStopRule())
    whole = engine.generate(prompt, options)
    chunks = list(engine.stream(prompt, options))
    assert "".join(c.text for c in chunks).rstrip() == whole.text.rstrip()
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == whole.usage.output_tokens


def test_lean_budget_over_chat_lean_vllm(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from langchain_core.output_parsers import StrOutputParser

    from lean_chain import ChatLeanVLLM, LeanBudget
    from lean_core.ledger import CostLedger

    ledger = CostLedger(tmp_path / "l.sqlite3")
    budget = LeanBudget(llm=ChatLeanVLLM(max_tokens=512), brevity=True, ledger=ledger)
    message = budget.invoke(LOOPING)
    outcome = message.response_metadata["lean_budget"]
    assert message.usage_metadata["output_tokens"] <= outcome["max_tokens"] * 2
    assert outcome["brevity"] is True
    text = (budget | StrOutputParser()).invoke("who wrote the novel emma")
    assert text.strip()
    assert {e.layer for e in ledger.savings()} == {"output"} and len(ledger.output_lengths()) == 2


def test_lean_budget_llm_over_lean_vllm(engine) -> None:  # type: ignore[no-untyped-def]
    from lean_index import LeanBudgetLLM, LeanVLLM

    llm = LeanBudgetLLM(LeanVLLM(max_tokens=512))
    response = llm.complete(LOOPING)
    outcome = response.additional_kwargs["lean_budget"]
    assert outcome["early_stop"] == "repetition" or outcome["output_tokens"] <= outcome["max_tokens"]
    streamed = list(llm.stream_complete("who wrote the novel emma"))
    assert streamed[-1].text.strip()


@pytest.mark.skipif(not (SHARED_DATA / "math" / "gsm8k_test.jsonl").is_file(), reason="needs ../shared/data")
def test_budget_bench_slice(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from lean_benchmarks.budget_bench import run_budget_bench

    out = tmp_path / "budget.json"
    result = run_budget_bench([SHARED_DATA / "queries" / "nq_open_dev.jsonl", SHARED_DATA / "math" / "gsm8k_test.jsonl"],
                              limit=3, out=out, png=tmp_path / "budget.png", progress=False)
    assert json.loads(out.read_text())["benchmark"] == "budget"
    for dataset in result["datasets"].values():
        generous, ours = dataset["policies"]["generous"], dataset["policies"]["policy"]
        assert set(ours) >= {"output_tokens_mean", "truncation_rate", "answer_retention", "accuracy"}
        assert ours["output_tokens_mean"] <= generous["output_tokens_mean"] * 1.5
    assert (tmp_path / "budget.png").read_bytes()[:4] == b"\x89PNG"
