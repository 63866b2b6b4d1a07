"""Output budgets on the local model: a generous fixed budget vs our policy vs brevity + policy.

``lean-inference bench budget --data FILE [--data FILE] --out FILE.json`` runs the bundled
SmolLM2 on vLLM over the "eval" half of each file (the length predictor was fitted on the "fit"
half) with three policies, through the same ``BudgetSession`` the LangChain and LlamaIndex
adapters use:

* ``generous``: ``max_tokens`` fixed at a generous value, nothing else (what users do today);
* ``policy``: predicted budget, stop sequences, early stopping, continue-once on truncation;
* ``brevity+policy``: the same plus the brevity instruction.

``collect_lengths`` and ``fit_from_rows`` serve ``lean-inference budget fit``, which collects the
local model's answer lengths on the "fit" halves and writes the length predictor
(``lean_core/data/length_predictor_smollm2.json`` is made this way).
"""

from __future__ import annotations

import asyncio
import json
import platform
import re
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lean_benchmarks.budget_data import BudgetQuery, gold_in_answer, load_budget_queries
from lean_core.budget import (
    BudgetOptions,
    BudgetRequest,
    BudgetSession,
    EarlyStopRule,
    LengthPredictor,
    ModelAnswer,
    extract_features,
    with_brevity,
)
from lean_core.budget.policy import brevity_instruction
from lean_core.generation import ChatMessageDict, SamplingOptions

__all__ = ["collect_lengths", "run_budget_bench"]

POLICIES = ("generous", "policy", "brevity+policy")


def _engine() -> Any:
    from lean_backends.vllm_engine import VLLMEngineSettings, get_engine, resolve_model_dir

    return get_engine(VLLMEngineSettings(model=str(resolve_model_dir(None))))


def _messages(question: str, request: BudgetRequest) -> list[ChatMessageDict]:
    messages: list[ChatMessageDict] = [{"role": "user", "content": with_brevity(question, request.brevity_instruction)}]
    if request.continue_from is not None:
        messages += [{"role": "assistant", "content": request.continue_from},
                     {"role": "user", "content": request.continue_instruction}]
    return messages


async def _answer(engine: Any, messages: list[ChatMessageDict], options: SamplingOptions) -> ModelAnswer:
    result = await engine.agenerate(messages, options)
    choice = result.choices[0]
    return ModelAnswer(text=choice.text, finish_reason=choice.finish_reason,
                       output_tokens=result.usage.output_tokens, early_stop=choice.early_stop)


async def _run_policy(engine: Any, query: BudgetQuery, policy: str, *, generous_tokens: int,
                      options: BudgetOptions) -> dict[str, Any]:
    if policy == "generous":
        answer = await _answer(engine, [{"role": "user", "content": query.question}],
                               SamplingOptions(max_tokens=generous_tokens))
        return {"text": answer.text, "output_tokens": answer.output_tokens, "max_tokens": generous_tokens,
                "truncated": answer.finish_reason == "length", "continued": False, "early_stop": None}
    session_options = options.model_copy(update={"brevity": policy == "brevity+policy"})
    session = BudgetSession(query.question, session_options, model="smollm2-135m-instruct",
                            context_window=engine.max_model_len)
    request: BudgetRequest | None = session.first_request()
    while request is not None:
        sampling = SamplingOptions(max_tokens=request.max_tokens, stop=request.stop, early_stop=request.early_stop)
        answer = await _answer(engine, _messages(query.question, request), sampling)
        request = session.on_answer(answer)
    outcome = session.outcome
    return {"text": session.text, "output_tokens": outcome.output_tokens, "max_tokens": outcome.max_tokens,
            "expected_tokens": outcome.expected_tokens, "truncated": outcome.truncated,
            "continued": outcome.continued, "early_stop": outcome.early_stop}


def _gold_anywhere(query: BudgetQuery, text: str) -> bool:
    """Retention test: the gold is still in the answer (for math, anywhere, not only last)."""
    if query.kind != "math":
        return gold_in_answer(query, text)
    return any(float(n.replace(",", "")) == float(query.gold[0])
               for n in re.findall(r"-?\d[\d,]*(?:\.\d+)?", text.replace("$", "")) if n.strip(",-"))


_KEY = re.compile(r"\b(?:\d[\d,.]*|[A-Z][a-z]+(?:\s[A-Z][a-z]+)*)\b")


def _key_content(text: str) -> set[str]:
    """Numbers and names in the first sentence of an answer: its key content."""
    first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    return {m.group(0).rstrip(".,") for m in _KEY.finditer(first)}


def _retained(query: BudgetQuery, generous: str, budgeted: str) -> bool:
    """The gold is still in the answer; without a gold, the generous answer's key content is."""
    if query.gold:
        return _gold_anywhere(query, budgeted)
    key = _key_content(generous)
    return sum(k in budgeted for k in key) >= 0.8 * len(key)


def _summary(queries: Sequence[BudgetQuery], runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    base = runs["generous"]
    # Retention is measured where the generous answer had something to keep.
    had_gold = [i for i, q in enumerate(queries)
                if (_gold_anywhere(q, base[i]["text"]) if q.gold else bool(_key_content(base[i]["text"])))]
    out: dict[str, Any] = {}
    for policy, rows in runs.items():
        tokens = [r["output_tokens"] for r in rows]
        out[policy] = {
            "output_tokens_mean": statistics.fmean(tokens),
            "output_tokens_p90": sorted(tokens)[int(0.9 * (len(tokens) - 1))],
            "truncation_rate": statistics.fmean(r["truncated"] for r in rows),
            "continued_rate": statistics.fmean(r["continued"] for r in rows),
            "early_stop_confidence_rate": statistics.fmean(r["early_stop"] == "confidence" for r in rows),
            "early_stop_repetition_rate": statistics.fmean(r["early_stop"] == "repetition" for r in rows),
            "accuracy": statistics.fmean(gold_in_answer(q, r["text"]) for q, r in zip(queries, rows, strict=True)),
            "answer_retention": (statistics.fmean(_retained(queries[i], base[i]["text"], rows[i]["text"])
                                                  for i in had_gold) if had_gold else None),
            "retention_items": len(had_gold),
        }
        out[policy]["token_reduction_vs_generous"] = 1.0 - out[policy]["output_tokens_mean"] / max(
            statistics.fmean(r["output_tokens"] for r in base), 1e-9)
    return out


def run_budget_bench(data: Sequence[str | Path], *, limit: int = 200, generous_tokens: int = 512,
                     predictor: str | Path | None = None, out: str | Path | None = None,
                     png: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the three policies on each data file's eval half; returns (and writes) the results."""
    from tqdm import tqdm

    engine = _engine()
    options = BudgetOptions(predictor=LengthPredictor.load(predictor) if predictor else None,
                            early_stop=EarlyStopRule())
    result: dict[str, Any] = {"benchmark": "budget", "model": "smollm2-135m-instruct", "device": _device(),
                              "generous_tokens": generous_tokens, "limit": limit, "datasets": {},
                              "date": datetime.now(UTC).date().isoformat()}
    for path in data:
        queries = load_budget_queries(path, split="eval", limit=limit)
        runs: dict[str, list[dict[str, Any]]] = {}
        seconds: dict[str, float] = {}
        for policy in POLICIES:
            bar = tqdm(total=len(queries), desc=f"{Path(path).stem} {policy}", disable=not progress)

            async def one(q: BudgetQuery, policy: str = policy, bar: Any = bar) -> dict[str, Any]:
                row = await _run_policy(engine, q, policy, generous_tokens=generous_tokens, options=options)
                bar.update(1)
                return row

            async def all_rows(policy: str = policy, queries: list[BudgetQuery] = queries) -> list[dict[str, Any]]:
                return list(await asyncio.gather(*(one(q, policy) for q in queries)))

            start = time.perf_counter()
            runs[policy] = asyncio.run(all_rows())
            seconds[policy] = time.perf_counter() - start
            bar.close()
        result["datasets"][Path(path).stem] = {
            "items": len(queries), "policies": _summary(queries, runs), "seconds": seconds,
            "examples": [{"question": q.question, "gold": list(q.gold), **{p: runs[p][i]["text"] for p in POLICIES}}
                         for i, q in enumerate(queries[:5])],
        }
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    if png:
        _plot(result, Path(png))
    return result


def collect_lengths(data: Sequence[str | Path], *, limit: int = 200, max_tokens: int = 1024,
                    rows_path: str | Path | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """The local model's answer lengths on each file's fit half, with and without brevity.

    With ``rows_path``, rows are appended there after each batch and batches already there are
    not run again (a long collection resumes where it stopped)."""
    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    if rows_path is not None and Path(rows_path).is_file():
        rows = [json.loads(line) for line in Path(rows_path).read_text(encoding="utf-8").split("\n") if line]
    done = {(r["source"], r["brevity"]) for r in rows}
    engine = _engine()
    rule = EarlyStopRule()
    for path in data:
        queries = load_budget_queries(path, split="fit", limit=limit)
        for brevity in (False, True):
            if (Path(path).stem, brevity) in done:
                continue
            prompts: list[list[ChatMessageDict]] = []
            for q in queries:
                text = with_brevity(q.question, brevity_instruction(extract_features(q.question)) if brevity else None)
                prompts.append([{"role": "user", "content": text}])
            bar = tqdm(total=len(prompts), desc=f"{Path(path).stem} brevity={brevity}", disable=not progress)

            async def one(messages: list[ChatMessageDict], bar: Any = bar) -> ModelAnswer:
                answer = await _answer(engine, messages, SamplingOptions(max_tokens=max_tokens, early_stop=rule))
                bar.update(1)
                return answer

            async def gather(prompts: list[list[ChatMessageDict]] = prompts) -> list[ModelAnswer]:
                return list(await asyncio.gather(*(one(m) for m in prompts)))

            answers = asyncio.run(gather())
            bar.close()
            batch = [{"question": q.question, "source": q.source, "brevity": brevity,
                      "output_tokens": a.output_tokens, "finish_reason": a.finish_reason}
                     for q, a in zip(queries, answers, strict=True)]
            rows += batch
            if rows_path is not None:
                with Path(rows_path).open("a", encoding="utf-8") as f:
                    f.write("".join(json.dumps(r) + "\n" for r in batch))
    return rows


def fit_from_rows(rows: Sequence[dict[str, Any]], *, quantile: float = 0.95) -> LengthPredictor:
    usable = [r for r in rows if r["finish_reason"] != "length"]
    features = [extract_features(r["question"], brevity_instruction=r["brevity"]) for r in usable]
    return LengthPredictor.fit(features, [r["output_tokens"] for r in usable], model="smollm2-135m-instruct",
                               quantile=quantile)


def _device() -> str:
    return f"cpu ({platform.machine()})"


def _plot(result: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(result["datasets"])
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
    for ax, name in zip(axes[0], datasets, strict=True):
        policies = result["datasets"][name]["policies"]
        means = [policies[p]["output_tokens_mean"] for p in POLICIES]
        bars = ax.bar(POLICIES, means, color=["#999999", "#4C72B0", "#55A868"])
        for bar, p in zip(bars, POLICIES, strict=True):
            s = policies[p]
            retention = "-" if s["answer_retention"] is None else f"{s['answer_retention']:.0%}"
            label = f"trunc {s['truncation_rate']:.0%}\nacc {s['accuracy']:.1%}\nretained {retention}"
            ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=8)
        ax.set_title(f"{name} ({result['datasets'][name]['items']} queries)")
        ax.set_ylabel("output tokens per answer (mean)")
        ax.set_ylim(0, max(means) * 1.35)
    fig.suptitle(f"Output budgets, {result['model']} on vLLM ({result['device']}): mean output tokens per answer")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
