"""The agent benchmark's parts that need no server: tasks, tools, scripted choice, metric and cost maths."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from lean_benchmarks.agent import (
    ModelCall,
    PriceReference,
    TaskRun,
    build_agent_tasks,
    check_targets,
    price_calls,
    summarize_runs,
)
from lean_benchmarks.agent.report import format_agent_table, write_agent_chart
from lean_benchmarks.agent.scripted import ScriptedToolChoiceMiddleware
from lean_benchmarks.agent.tools import SearchSession, evaluate_arithmetic, make_task_tools
from lean_core.errors import InvalidParameterError

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
NQ = DATA / "qa" / "nq_open_oracle.jsonl"
GSM8K = DATA / "math" / "gsm8k_test.jsonl"
needs_data = pytest.mark.skipif(not (NQ.is_file() and GSM8K.is_file()), reason="../shared/data not present")


# -- tasks ----------------------------------------------------------------------------------------
@needs_data
def test_tasks_mix_two_search_to_one_calculator_with_the_gold_in_each_pool() -> None:
    tasks = build_agent_tasks([NQ, GSM8K], tasks=9, tool_steps=3, passages_per_call=4)
    assert [t.tool for t in tasks] == ["search", "search", "calculator"] * 3
    assert len({t.task_id for t in tasks}) == 9
    for task in tasks:
        if task.tool == "search":
            assert len(task.passages) == 12 and task.gold_passage is not None
            gold = task.passages[task.gold_passage].lower()
            assert any(a.lower() in gold for a in task.answers)
            # hard distractors: none of the others holds a gold answer
            others = [p.lower() for i, p in enumerate(task.passages) if i != task.gold_passage]
            assert not any(a.lower() in p for a in task.answers for p in others)
        else:
            assert task.passages == () and task.answers[0].lstrip("-").replace(".", "").isdigit()


@needs_data
def test_tasks_are_the_same_on_every_build_and_only_one_kind_is_allowed() -> None:
    assert build_agent_tasks([NQ], tasks=3) == build_agent_tasks([NQ], tasks=3)
    assert {t.tool for t in build_agent_tasks([GSM8K], tasks=2)} == {"calculator"}
    with pytest.raises(InvalidParameterError, match="tasks"):
        build_agent_tasks([NQ], tasks=0)


def test_tasks_refuse_unknown_files(tmp_path: Path) -> None:
    other = tmp_path / "x.jsonl"
    other.write_text(json.dumps({"prompt": "hi"}) + "\n")
    with pytest.raises(InvalidParameterError, match="data"):
        build_agent_tasks([other], tasks=1)
    with pytest.raises(InvalidParameterError, match="data"):
        build_agent_tasks([tmp_path / "missing.jsonl"], tasks=1)


# -- tools ----------------------------------------------------------------------------------------
def test_search_returns_every_passage_once_best_match_first() -> None:
    pool = ("Paris is the capital of France.", "Berlin is in Germany.", "Rome has the Colosseum.",
            "Madrid is Spanish.", "Lisbon faces the Atlantic.")
    session = SearchSession(pool, passages_per_call=2)
    first = session.search("capital of France")
    assert first.startswith("[1] Paris") and "[2]" in first
    session.search("Colosseum")
    session.search("anything")
    assert sorted(session.returned) == [0, 1, 2, 3, 4]
    assert session.returned[2] == 2  # the Colosseum passage led the second page
    assert session.search("more") == "No more results."


def test_calculator_evaluates_arithmetic_and_refuses_the_rest() -> None:
    assert evaluate_arithmetic("6 * 4 * 9") == "6 * 4 * 9 = 216"
    assert evaluate_arithmetic("1,200 / 4") == "1,200 / 4 = 300"
    assert evaluate_arithmetic("(2 + 3) ** 2 - 7 % 4") == "(2 + 3) ** 2 - 7 % 4 = 22"
    assert evaluate_arithmetic("__import__('os')").startswith("error")
    assert evaluate_arithmetic("2 ** 100000").startswith("error")
    assert evaluate_arithmetic("1 / 0").startswith("error")


def test_task_tools_expose_both_tools_with_bounded_arguments() -> None:
    from lean_benchmarks.agent.tasks import AgentTask

    task = AgentTask(task_id="t", tool="search", question="q", answers=("a",), passages=("a b", "c d"),
                     gold_passage=0)
    tools, session = make_task_tools(task, passages_per_call=1)
    assert [t.name for t in tools] == ["search", "calculator"] and session is not None
    schema = tools[0].tool_call_schema.model_json_schema()  # type: ignore[union-attr]
    assert schema["properties"]["query"]["maxLength"] == 120
    assert tools[0].invoke({"query": "c"}).startswith("[1] c d")
    assert tools[1].invoke({"expression": "2+2"}) == "2+2 = 4"


# -- scripted tool choice -------------------------------------------------------------------------
def _request(choice: Any = None) -> Any:
    from langchain.agents.middleware import ModelRequest
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

    return ModelRequest(model=GenericFakeChatModel(messages=iter(())), messages=[], tool_choice=choice)


def test_scripted_choice_forces_the_tool_k_times_then_none() -> None:
    middleware = ScriptedToolChoiceMiddleware("search", tool_steps=2)
    seen: list[Any] = []
    for _ in range(4):
        middleware.wrap_model_call(_request("auto"), lambda r: seen.append(r.tool_choice))
    assert seen == ["search", "search", "none", "none"]
    assert middleware.choices == seen


async def test_scripted_choice_async_matches_sync() -> None:
    middleware = ScriptedToolChoiceMiddleware("calculator", tool_steps=1)
    seen: list[Any] = []

    async def handler(request: Any) -> None:
        seen.append(request.tool_choice)

    for _ in range(2):
        await middleware.awrap_model_call(_request(), handler)
    assert seen == ["calculator", "none"]


def test_scripted_choice_validates() -> None:
    with pytest.raises(InvalidParameterError, match="tool_steps"):
        ScriptedToolChoiceMiddleware("search", tool_steps=-1)
    with pytest.raises(InvalidParameterError, match="tool"):
        ScriptedToolChoiceMiddleware("", tool_steps=1)


# -- metrics and cost -----------------------------------------------------------------------------
GPT4O = PriceReference("gpt-4o", "openai")
SONNET = PriceReference("claude-sonnet-4-5", "anthropic")


def test_price_calls_charges_cached_tokens_at_the_cache_read_price() -> None:
    from genai_prices import Usage, calc_price

    calls = [ModelCall(0, 1000, 0, 10), ModelCall(1, 2000, 1500, 20)]
    expected = sum(calc_price(Usage(input_tokens=i, cache_read_tokens=c, output_tokens=o), "gpt-4o",
                              provider_id="openai").total_price for _, i, c, o in
                   [(0, 1000, 0, 10), (1, 2000, 1500, 20)])
    assert price_calls(calls, GPT4O) == pytest.approx(float(expected))
    # gpt-4o: $2.50 per 1M input, $1.25 cached, $10 output
    assert price_calls([ModelCall(0, 1_000_000, 1_000_000, 0)], GPT4O) == pytest.approx(1.25)
    assert Decimal(str(price_calls([ModelCall(0, 1_000_000, 0, 0)], GPT4O))) == Decimal("2.5")
    # Anthropic reads cost a tenth of fresh input
    fresh = price_calls([ModelCall(0, 100_000, 0, 0)], SONNET)
    assert price_calls([ModelCall(0, 100_000, 100_000, 0)], SONNET) == pytest.approx(fresh / 10)
    with pytest.raises(InvalidParameterError, match="price reference"):
        price_calls(calls, PriceReference("no-such-model", "openai"))


def _run(config: str, calls: list[ModelCall], *, kept: bool, seconds: float = 1.0) -> TaskRun:
    return TaskRun(task_id="t", configuration=config, calls=tuple(calls), answer_in_last_step_context=kept,
                   answer_correct=False, tool_steps_done=2, seconds=seconds)


def test_summaries_shares_reductions_and_targets() -> None:
    runs = [
        _run("plain", [ModelCall(0, 100, 0, 10), ModelCall(1, 300, 96, 10), ModelCall(2, 600, 288, 10)], kept=True),
        _run("plain", [ModelCall(0, 100, 0, 10), ModelCall(1, 300, 96, 10), ModelCall(2, 600, 288, 10)], kept=True),
        _run("lean", [ModelCall(0, 100, 0, 5), ModelCall(1, 150, 96, 5), ModelCall(2, 200, 144, 5)], kept=True),
        _run("lean", [ModelCall(None, 50, 0, 5), ModelCall(0, 100, 0, 5), ModelCall(1, 150, 96, 5),
                      ModelCall(2, 200, 144, 5)], kept=False),
    ]
    plain, lean = summarize_runs(runs, [GPT4O, SONNET])
    assert (plain.configuration, plain.tasks, plain.input_tokens_per_task) == ("plain", 2, 1000)
    assert plain.cached_share == pytest.approx(384 / 1000)
    assert plain.cached_share_from_second_step == pytest.approx(384 / 900)
    # the summarizer-style call (step None) counts as "after the first step"
    assert lean.cached_share_from_second_step == pytest.approx((240 + 240) / (350 + 400))
    assert lean.model_calls_per_task == 3.5 and lean.output_tokens_per_task == 17.5
    assert lean.answer_retention == 0.5 and lean.answer_retention_vs_plain == 0.5
    key = "openai:gpt-4o"
    expected = 1 - price_calls([c for r in runs[2:] for c in r.calls], GPT4O) / price_calls(
        [c for r in runs[:2] for c in r.calls], GPT4O)
    assert lean.cost_reduction_vs_plain[key] == pytest.approx(expected)
    assert plain.cost_reduction_vs_plain[key] == 0.0
    checks = check_targets([plain, lean])
    assert len(checks) == 4 and all(c.configuration == "lean" for c in checks)
    by_kind = {c.target.split()[0]: c for c in checks}
    assert not by_kind["answer"].passed and by_kind["answer"].measured == 0.5
    assert not by_kind["prefix-cache"].passed and by_kind["prefix-cache"].measured == pytest.approx(0.64)
    cost = [c for c in check_targets([plain, lean]) if "cost" in c.target]
    assert len(cost) == 2 and all(c.passed == (c.measured is not None and c.measured >= 0.7) for c in cost)


def test_retention_vs_plain_is_none_when_plain_kept_nothing() -> None:
    runs = [_run("plain", [ModelCall(0, 10, 0, 1)], kept=False), _run("lean", [ModelCall(0, 10, 0, 1)], kept=True)]
    _, lean = summarize_runs(runs, [GPT4O])
    assert lean.answer_retention_vs_plain is None
    assert not next(c for c in check_targets(summarize_runs(runs, [GPT4O])) if "retention" in c.target).passed


def test_table_and_chart_render_a_result(tmp_path: Path) -> None:
    from dataclasses import asdict

    runs = [_run("plain", [ModelCall(0, 1000, 0, 10), ModelCall(1, 2000, 960, 10)], kept=True),
            _run("lean", [ModelCall(0, 400, 0, 10), ModelCall(1, 500, 384, 10)], kept=True)]
    summaries = summarize_runs(runs, [GPT4O, SONNET])
    result = {"tasks": 1, "search_tasks": 1, "calculator_tasks": 0, "tool_steps": 1, "served_model": "m",
              "tool_choice": "scripted", "date": "2026-01-01", "price_references": [asdict(GPT4O), asdict(SONNET)],
              "summaries": [asdict(s) for s in summaries], "targets": [asdict(t) for t in check_targets(summaries)],
              "lean_middleware_present": ["LeanCompressMiddleware"], "lean_middleware_missing": []}
    table = format_agent_table(result)
    assert "plain" in table and "lean" in table and ("PASS" in table or "FAIL" in table)
    png = tmp_path / "agent.png"
    write_agent_chart(result, png)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_public_surface_is_pinned_and_light() -> None:
    import subprocess
    import sys

    import lean_benchmarks.agent as agent

    assert set(agent.__all__) == {"AgentTask", "ConfigSummary", "ModelCall", "PriceReference", "TargetCheck",
                                  "TaskRun", "build_agent_tasks", "check_targets", "price_calls",
                                  "run_agent_bench", "summarize_runs"}
    code = ("import sys, lean_benchmarks.agent; "
            "print(sorted(m for m in ('torch', 'vllm', 'langchain.agents', 'langchain_openai') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "[]"
