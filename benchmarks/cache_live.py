"""``lean-inference bench cache-live``: the response cache in front of the bundled model (issue 25 item 6).

Where ``bench cache-stream`` lets labels stand in for answers, this replays real request streams
(:mod:`lean_benchmarks._cache_live_streams`: the demo workload, a seeded ShareGPT slice) through
:class:`~lean_core.cache.ResponseCache` in front of SmolLM2-135M-Instruct, and the
**answer-equivalence check decides**: the error-bounded caches learn from comparing the model's
fresh answer with the cached one (:func:`~lean_core.cache.answer_equivalence.default_answer_equivalence`),
never from a label.

**Methods**, side by side on the same stream, each with its own empty cache: ``no_cache`` (every
request is a model call), ``exact`` (``mode="exact"``), ``static`` (today's static verifier,
``ResponseCache`` defaults), ``budget_<δ>`` (``max_error_rate=δ``, seeded).

**The model** answers greedily with at most ``max_tokens`` tokens, through the demo's own path
(``LeanPipeline`` with every layer off, on the local vLLM engine: the demo workload gets the demo's
baseline RAG prompt, a ShareGPT turn is sent alone). Greedy decoding makes an answer a function
of its prompt, so each distinct prompt is answered once, in batches of 16 as the demo serves,
before the replay; a method's "model call" then takes that answer, and its *model seconds* are the
batch time per answer of the prompts it sent (amortised: batch wall time / batch size).
*Cache seconds* are measured live (lookups, embeddings, writes, the explorations' answer checks);
*wall seconds* are their sum.

**Measured per method:** model calls, hits served (exact / semantic), explorations (and audits
among them) with how often the fresh answer agreed; and, for every served hit, whether the served
answer is equivalent (same check) to the answer the model gives that very request. That fresh
answer is computed offline for measurement only: a served hit costs no model call in the replay.
Its not-equivalent share among semantic hits is the *observed error rate*. On the demo, labels
are reported beside it (served from another question group; gold answer in the answer returned)
but decide nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lean_benchmarks._cache_live_streams import (
    DEFAULT_SHAREGPT,
    LiveRequest,
    demo_requests,
    sharegpt_slice,
)
from lean_benchmarks._cache_load import percentile_ms
from lean_benchmarks.cache_bench import _device
from lean_benchmarks.cache_stream import LabelOracle, _plain, _wilson_upper
from lean_benchmarks.progress import bench_progress
from lean_core.cache.normalize import normalize_prompt
from lean_core.cache.types import CacheNamespace
from lean_core.errors import InvalidParameterError

__all__ = [
    "DEFAULT_LIVE_DELTAS",
    "LIVE_WORKLOADS",
    "MEASUREMENT_NOTE",
    "CacheLiveResult",
    "LiveAnswer",
    "LiveMethodRow",
    "ServedSample",
    "answer_with_engine",
    "live_methods",
    "replay_live",
    "run_cache_live_bench",
    "run_live_workload",
]

DEFAULT_LIVE_DELTAS = (0.02, 0.05)
LIVE_WORKLOADS = ("demo", "sharegpt")
MEASUREMENT_NOTE = ("served hits are scored against the model's fresh answer to the same request, computed offline "
                    "for measurement only (a served hit makes no model call in the replay)")
_BATCH = 16
_MAX_SAMPLES = 8
_SAMPLE_CHARS = 240


@dataclass(frozen=True)
class LiveAnswer:
    """The model's (greedy) answer to one request."""

    text: str
    seconds: float = 0.0
    """Model seconds charged to a call for this request (amortised batch time)."""
    output_tokens: int = 0
    input_tokens: int = 0
    truncated: bool = False


@dataclass
class ServedSample:
    kind: str
    query: str
    served_prompt: str
    served_answer: str
    fresh_answer: str


@dataclass
class LiveMethodRow:
    method: str
    max_error_rate: float | None
    requests: int
    model_calls: int
    hits: int
    exact_hits: int
    semantic_hits: int
    explorations: int
    """Misses whose fresh answer the cache compared with a candidate's cached answer."""
    audits: int
    """Of those, would-be hits checked on purpose (the budget's certification)."""
    exploration_agreements: int
    exploration_disagreements: int
    semantic_equivalent: int
    """Served semantic hits whose answer is equivalent to the model's fresh answer (offline check)."""
    semantic_not_equivalent: int
    observed_error_rate: float | None
    """semantic_not_equivalent / semantic_hits (None without semantic hits)."""
    error_upper_95: float
    exact_not_equivalent: int
    """Exact hits (same text up to case, spacing, punctuation) whose answer differs from the fresh one."""
    semantic_other_group: int | None = None
    """Demo labels: semantic hits served from another question group (a wrong fact); None without labels."""
    lookalikes_served: int | None = None
    """Demo labels: look-alike questions served semantically (from any entry)."""
    paraphrases_served: int | None = None
    """Demo labels: paraphrase questions served semantically."""
    gold_accuracy: float | None = None
    """Demo labels: share of answers returned (served or fresh) containing a gold answer."""
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per request kind: requests, exact_hits, semantic_hits, semantic_not_equivalent, explorations,
    explorations_agreed."""
    model_seconds: float = 0.0
    cache_seconds: float = 0.0
    wall_seconds: float = 0.0
    p50_lookup_ms: float = 0.0
    cache_stats: dict[str, Any] = field(default_factory=dict)
    samples: list[ServedSample] = field(default_factory=list)
    """Served semantic hits (not-equivalent ones first), for reading."""


@dataclass
class CacheLiveResult:
    benchmark: str
    workload: str
    model: str
    engine_dtype: str
    max_tokens: int
    requests: int
    distinct_prompts: int
    kinds: dict[str, int]
    answer_equivalence: str
    measurement: str = MEASUREMENT_NOTE
    model_answer_seconds: float = 0.0
    """Wall time of answering every distinct prompt once (batches of 16)."""
    seed: int = 0
    deltas: list[float] = field(default_factory=list)
    rows: list[LiveMethodRow] = field(default_factory=list)
    device: str = ""
    date: str = ""
    seconds: float = 0.0


def live_methods(deltas: Sequence[float]) -> list[tuple[str, float | None]]:
    """(name, δ) of every method, in report order."""
    for d in deltas:
        if isinstance(d, bool) or not isinstance(d, int | float) or not 0 < d <= 0.5:
            raise InvalidParameterError("deltas", allowed="error rates in (0, 0.5]", received=list(deltas))
    return [("no_cache", None), ("exact", None), ("static", None)] + [(f"budget_{d:g}", float(d)) for d in deltas]


def _key(request: LiveRequest) -> tuple[str, str]:
    return request.source, request.prompt


# -- the model ------------------------------------------------------------------------------------
def _fastest_dtype() -> str:
    from lean_core._hardware import cpu_has_native_bf16

    return "bfloat16" if cpu_has_native_bf16() else "auto"


def _answer_key(model: str, dtype: str, max_tokens: int, request: LiveRequest) -> str:
    context = hashlib.sha256("\n\n".join(request.context).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return json.dumps([model, dtype, max_tokens, request.source, request.prompt, context], ensure_ascii=False)


def _read_answers(path: Path | None) -> dict[str, dict[str, Any]]:
    if path is None or not path.is_file():
        return {}
    rows = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return {row["key"]: row for row in rows}


def answer_with_engine(requests: Sequence[LiveRequest], *, max_tokens: int = 64, model: str | None = None,
                       dtype: str | None = None, answers_file: str | Path | None = None,
                       progress: Any = None) -> tuple[dict[tuple[str, str], LiveAnswer], dict[str, Any]]:
    """Answer each distinct (source, prompt) once with the bundled model on the local vLLM engine,
    as the demo's baseline row does (every layer off, greedy, ``max_tokens``), 16 requests in flight.

    ``answers_file`` (JSONL, keep it outside the project: it holds the data's text): answers found
    there for the same model, dtype, ``max_tokens`` and prompt are reused and new ones appended
    after every batch, so an interrupted run resumes and a replay alone starts no engine.
    Returns the answers and {"model", "engine_dtype", "seconds"}."""
    for name, value in (("VLLM_LOGGING_LEVEL", "ERROR"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                        ("TORCH_CPP_LOG_LEVEL", "ERROR"), ("PYTHONWARNINGS", "ignore::FutureWarning")):
        os.environ.setdefault(name, value)  # as the demo: its progress, not vLLM's start-up log
    identity, wanted_dtype = model or "bundled SmolLM2-135M-Instruct", dtype or _fastest_dtype()
    path = None if answers_file is None else Path(answers_file)
    known = _read_answers(path)
    distinct = list({_key(r): r for r in requests}.values())
    answers: dict[tuple[str, str], LiveAnswer] = {}
    info: dict[str, Any] = {"model": "", "engine_dtype": wanted_dtype, "seconds": 0.0}
    missing = []
    for request in distinct:
        row = known.get(_answer_key(identity, wanted_dtype, max_tokens, request))
        if row is None:
            missing.append(request)
            continue
        answers[_key(request)] = LiveAnswer(**row["answer"])
        info.update(model=row["model_name"], engine_dtype=row["engine_dtype"])
        info["seconds"] += row["answer"]["seconds"]
    if missing:
        info.update(_generate(missing, answers, identity=identity, model=model, dtype=wanted_dtype,
                              max_tokens=max_tokens, path=path, progress=progress))
        info["seconds"] = sum(a.seconds for a in answers.values())
    return answers, info


def _generate(missing: Sequence[LiveRequest], answers: dict[tuple[str, str], LiveAnswer], *, identity: str,
              model: str | None, dtype: str, max_tokens: int, path: Path | None, progress: Any) -> dict[str, Any]:
    from lean_backends.pipeline_model import EngineModel
    from lean_core.assets import smollm2_dir
    from lean_core.pipeline import LeanPipeline, PipelineRequest, PipelineSettings

    task = progress.add_task("model: starting the local engine", total=len(missing)) if progress else None
    engine_model = EngineModel.local(model or str(smollm2_dir(show_progress=False)), dtype=dtype)
    engine = engine_model.engine
    engine.start()  # type: ignore[attr-defined]
    settings = PipelineSettings(baseline_max_tokens=max_tokens).with_layers(
        cache=False, template=False, compression=False, budget=False)
    pipeline = LeanPipeline(engine_model, settings=settings)
    served = {"model_name": engine_model.model_name, "engine_dtype": str(getattr(engine, "dtype", dtype))}

    async def batch(chunk: Sequence[LiveRequest]) -> list[Any]:
        return list(await asyncio.gather(*(pipeline.ainvoke(PipelineRequest(question=r.prompt, context=r.context,
                                                                             tenant=r.tenant)) for r in chunk)))

    try:
        for first in range(0, len(missing), _BATCH):
            chunk = missing[first:first + _BATCH]
            began = time.perf_counter()
            results = asyncio.run(batch(chunk))
            each = (time.perf_counter() - began) / len(chunk)
            lines = []
            for request, result in zip(chunk, results, strict=True):
                answer = LiveAnswer(text=result.answer, seconds=each, output_tokens=result.usage.output_tokens,
                                    input_tokens=result.usage.input_tokens, truncated=result.truncated)
                answers[_key(request)] = answer
                lines.append(json.dumps({"key": _answer_key(identity, dtype, max_tokens, request), **served,
                                         "answer": asdict(answer)}, ensure_ascii=False) + "\n")
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as handle:
                    handle.writelines(lines)
            if progress is not None:  # a new description prints a line per batch when piped
                done = first + len(chunk)
                progress.update(task, completed=done, description=f"model: answered {done}/{len(missing)} "
                                f"({each:.2f} s per answer in this batch)")
    finally:
        engine.shutdown()  # type: ignore[attr-defined]
    return {"model": served["model_name"], "engine_dtype": served["engine_dtype"]}


# -- replay ---------------------------------------------------------------------------------------
def _build_cache(name: str, delta: float | None, directory: Path, *, embedder: Any, verifier: Any,
                 equivalence: Any, seed: int) -> Any:
    from lean_core.cache.response_cache import ResponseCache
    from lean_core.cache.sqlite_store import SQLiteCacheStore

    if name == "no_cache":
        return None
    store = SQLiteCacheStore(directory / f"{name}.sqlite3", max_entries=None)
    if name == "exact":
        return ResponseCache(store, mode="exact", embedder=embedder, verifier=verifier)
    if delta is None:
        return ResponseCache(store, mode="semantic", embedder=embedder, verifier=verifier)
    return ResponseCache(store, mode="semantic", embedder=embedder, verifier=verifier, max_error_rate=delta,
                         answer_equivalence=equivalence, seed=seed)


def replay_live(requests: Sequence[LiveRequest], answer: Callable[[LiveRequest], LiveAnswer], cache: Any, *,
                method: str, equivalent: Callable[[str, str], bool], max_error_rate: float | None = None,
                namespace_llm: str = "cache-live", progress: Any = None, task: Any = None) -> LiveMethodRow:
    """Replay ``requests`` in order through ``cache`` (a ``ResponseCache``, or None for no cache):
    a miss is a model call (``answer``) whose answer is stored; a hit is served. ``equivalent``
    scores each served hit against ``answer(request)``, the fresh answer (measurement only, not
    counted as a call or timed)."""
    group_of = {(r.tenant, normalize_prompt(r.prompt)): r.group for r in requests}
    labelled = any(r.group is not None for r in requests)
    calls = exact = semantic = equivalent_hits = not_equivalent = exact_wrong = 0
    other_group = lookalikes = paraphrases = gold_right = gold_graded = 0
    model_seconds = cache_seconds = 0.0
    lookup_seconds: list[float] = []
    by_kind: dict[str, dict[str, int]] = {}
    samples: list[tuple[bool, ServedSample]] = []
    for request in requests:
        tally = by_kind.setdefault(request.kind, dict.fromkeys(
            ("requests", "exact_hits", "semantic_hits", "semantic_not_equivalent", "explorations",
             "explorations_agreed"), 0))
        tally["requests"] += 1
        namespace = CacheNamespace(tenant=request.tenant, llm=namespace_llm)
        found = None
        if cache is not None:
            began = time.perf_counter()
            found = cache.lookup(request.prompt, namespace=namespace)
            lookup_seconds.append(time.perf_counter() - began)
            cache_seconds += lookup_seconds[-1]
        if found is None or found.entry is None:
            fresh = answer(request)
            calls += 1
            model_seconds += fresh.seconds
            returned = fresh.text
            if cache is not None:
                agreed = cache.stats.exploration_agreements
                began = time.perf_counter()
                cache.update(request.prompt, fresh.text, namespace=namespace, input_tokens=fresh.input_tokens,
                             output_tokens=fresh.output_tokens)
                cache_seconds += time.perf_counter() - began
                tally["explorations"] += bool(getattr(found, "exploration", False))
                tally["explorations_agreed"] += cache.stats.exploration_agreements - agreed
        else:
            returned = found.entry.payload
            fresh_text = answer(request).text  # offline: measurement only, neither counted nor timed
            same = bool(equivalent(returned, fresh_text))
            if found.kind == "exact":
                exact += 1
                tally["exact_hits"] += 1
                exact_wrong += not same
            else:
                semantic += 1
                tally["semantic_hits"] += 1
                equivalent_hits += same
                not_equivalent += not same
                tally["semantic_not_equivalent"] += not same
                served_group = group_of.get((request.tenant, normalize_prompt(found.entry.prompt)))
                other_group += labelled and served_group != request.group
                lookalikes += request.kind == "lookalike"
                paraphrases += request.kind == "paraphrase"
                samples.append((same, ServedSample(kind=request.kind, query=_short(request.prompt),
                                                   served_prompt=_short(found.entry.prompt),
                                                   served_answer=_short(returned), fresh_answer=_short(fresh_text))))
        if request.gold:
            from lean_benchmarks.demo.workload import answer_is_correct

            gold_graded += 1
            gold_right += answer_is_correct(returned, request.gold)
        if progress is not None:
            progress.advance(task)
    stats = getattr(cache, "stats", None)
    counters = _plain(stats) if stats is not None else {}
    samples.sort(key=lambda s: s[0])  # not-equivalent first
    return LiveMethodRow(
        method=method, max_error_rate=max_error_rate, requests=len(requests), model_calls=calls, hits=exact + semantic,
        exact_hits=exact, semantic_hits=semantic, explorations=counters.get("explorations", 0),
        audits=counters.get("audits", 0), exploration_agreements=counters.get("exploration_agreements", 0),
        exploration_disagreements=counters.get("exploration_disagreements", 0),
        semantic_equivalent=equivalent_hits, semantic_not_equivalent=not_equivalent,
        observed_error_rate=not_equivalent / semantic if semantic else None,
        error_upper_95=_wilson_upper(not_equivalent, semantic), exact_not_equivalent=exact_wrong,
        semantic_other_group=other_group if labelled else None, lookalikes_served=lookalikes if labelled else None,
        paraphrases_served=paraphrases if labelled else None,
        gold_accuracy=gold_right / gold_graded if gold_graded else None, by_kind=by_kind,
        model_seconds=model_seconds, cache_seconds=cache_seconds, wall_seconds=model_seconds + cache_seconds,
        p50_lookup_ms=percentile_ms(lookup_seconds, 50) if lookup_seconds else 0.0, cache_stats=counters,
        samples=[s for _, s in samples[:_MAX_SAMPLES]])


def _warm_up(directory: Path, *, embedder: Any, verifier: Any, measure: Any) -> None:
    """One throwaway write, lookup and answer check, so that no method's cache seconds carry the
    first-use costs (model loads, lazy imports) that every method shares."""
    cache = _build_cache("warm_up", None, directory, embedder=embedder, verifier=verifier, equivalence=None, seed=0)
    namespace = CacheNamespace(tenant="warm-up", llm="warm-up")
    try:
        cache.update("What is the capital of France?", "Paris.", namespace=namespace)
        cache.lookup("What's the capital city of France?", namespace=namespace)
        measure.equivalent("Paris is the capital.", "The capital is Paris.")
    finally:
        cache.close()


def _short(text: str) -> str:
    """A sample's text cut to a few lines: results keep excerpts for reading, not the data set."""
    return text if len(text) <= _SAMPLE_CHARS else text[:_SAMPLE_CHARS] + "..."


def _equivalence_name(check: Any) -> str:
    return "default_answer_equivalence(): normalised exact match, else (facts agree and MiniLM cosine >= 0.9)" \
        if check is None else type(check).__name__


def run_live_workload(workload: str, requests: Sequence[LiveRequest], answer: Callable[[LiveRequest], LiveAnswer],
                      *, deltas: Sequence[float] = DEFAULT_LIVE_DELTAS, seed: int = 0, model: str = "",
                      engine_dtype: str = "", max_tokens: int = 64, model_answer_seconds: float = 0.0,
                      embedder: Any = None, verifier: Any = None, answer_equivalence: Any = None,
                      out: Path | None = None, progress: Any = None) -> CacheLiveResult:
    """Replay one workload through every method of :func:`live_methods`; write JSON and PNG to ``out``."""
    from lean_core.cache.answer_equivalence import default_answer_equivalence

    started = time.perf_counter()
    plan = live_methods(deltas)
    if not requests:
        raise InvalidParameterError("requests", allowed="at least one request", received=0)
    if embedder is None:
        from lean_core.embeddings import default_embedder

        embedder = default_embedder()
    if verifier is None:
        from lean_core.cache.verifier import SemanticVerifier

        verifier = SemanticVerifier()
    measure = answer_equivalence or default_answer_equivalence(embedder=embedder)
    kinds: dict[str, int] = {}
    for r in requests:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    result = CacheLiveResult(
        benchmark="cache-live", workload=workload, model=model, engine_dtype=engine_dtype, max_tokens=max_tokens,
        requests=len(requests), distinct_prompts=len({_key(r) for r in requests}), kinds=kinds,
        answer_equivalence=_equivalence_name(answer_equivalence), model_answer_seconds=model_answer_seconds,
        seed=seed, deltas=[float(d) for d in deltas], device=_device(), date=time.strftime("%Y-%m-%d"))
    with tempfile.TemporaryDirectory(prefix="lean-cache-live-") as tmp:
        _warm_up(Path(tmp), embedder=embedder, verifier=verifier, measure=measure)
        for name, delta in plan:
            # The cache's own check (counted): a fresh default chain per method, sharing the embedder.
            oracle = LabelOracle(answer_equivalence or default_answer_equivalence(embedder=embedder))
            cache = _build_cache(name, delta, Path(tmp), embedder=embedder, verifier=verifier, equivalence=oracle,
                                 seed=seed)
            task = progress.add_task(f"{workload}: {name}", total=len(requests)) if progress is not None else None
            try:
                row = replay_live(requests, answer, cache, method=name, equivalent=measure.equivalent,
                                  max_error_rate=delta, namespace_llm=f"cache-live:{model}:{max_tokens}",
                                  progress=progress, task=task)
            finally:
                if cache is not None:
                    cache.close()
            result.rows.append(row)
    result.seconds = time.perf_counter() - started
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(result), indent=2, allow_nan=False, ensure_ascii=False) + "\n",
                       encoding="utf-8")
        _chart(result, out.with_suffix(".png"))
    return result


def run_cache_live_bench(workloads: Sequence[str] = LIVE_WORKLOADS, *, out_dir: str | Path = "benchmarks/results",
                         sharegpt: str | Path = DEFAULT_SHAREGPT, size: int = 240, demo_limit: int | None = None,
                         deltas: Sequence[float] = DEFAULT_LIVE_DELTAS, seed: int = 0, max_tokens: int = 64,
                         model: str | None = None, dtype: str | None = None,
                         answers_file: str | Path | None = None, show_progress: bool = True) -> list[CacheLiveResult]:
    """Build the chosen streams, answer every distinct prompt once with the bundled model, replay
    each stream through every method and write ``<out_dir>/cache_live_<workload>.json`` (and .png)."""
    if not workloads or any(w not in LIVE_WORKLOADS for w in workloads) or len(set(workloads)) != len(workloads):
        raise InvalidParameterError("workloads", allowed=f"distinct names among {LIVE_WORKLOADS}",
                                    received=list(workloads))
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= 4096:
        raise InvalidParameterError("max_tokens", allowed="an int in [1, 4096]", received=max_tokens)
    live_methods(deltas)
    from lean_core.embeddings import default_embedder

    embedder = default_embedder()
    streams: dict[str, list[LiveRequest]] = {}
    with bench_progress(show=show_progress) as progress:
        for workload in workloads:
            task = progress.add_task(f"building the {workload} stream", total=1)
            streams[workload] = (demo_requests(limit=demo_limit) if workload == "demo"
                                 else sharegpt_slice(sharegpt, size=size, seed=seed, embedder=embedder))
            progress.advance(task)
        everything = [r for w in workloads for r in streams[w]]
        answers, info = answer_with_engine(everything, max_tokens=max_tokens, model=model, dtype=dtype,
                                           answers_file=answers_file, progress=progress)
        results = []
        for workload in workloads:
            seconds = sum(answers[k].seconds for k in {_key(r) for r in streams[workload]})
            results.append(run_live_workload(
                workload, streams[workload], lambda r: answers[_key(r)], deltas=deltas, seed=seed,
                model=info["model"], engine_dtype=info["engine_dtype"], max_tokens=max_tokens,
                model_answer_seconds=seconds, embedder=embedder, out=Path(out_dir) / f"cache_live_{workload}.json",
                progress=progress))
    return results


# -- chart ----------------------------------------------------------------------------------------
def _chart(result: CacheLiveResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = result.rows
    series = (("model calls", [r.model_calls for r in rows], "#999999"),
              ("exact hits", [r.exact_hits for r in rows], "#4C72B0"),
              ("semantic hits", [r.semantic_hits for r in rows], "#55A868"),
              ("explorations", [r.explorations for r in rows], "#DD8452"),
              ("semantic hits not equivalent", [r.semantic_not_equivalent for r in rows], "#C44E52"))
    fig, ax = plt.subplots(figsize=(10, 4.2))
    x = np.arange(len(rows))
    width = 0.16
    for i, (label, values, color) in enumerate(series):
        bars = ax.bar(x + (i - 2) * width, values, width, label=label, color=color)
        ax.bar_label(bars, fontsize=6)
    ax.set_xticks(x, [r.method for r in rows])
    ax.set_ylabel("requests")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"cache-live, {result.workload}: {result.requests} requests ({result.distinct_prompts} distinct), "
                 f"{result.model} greedy, max {result.max_tokens} tokens; answer equivalence decides", fontsize=9)
    fig.text(0.5, 0.01, MEASUREMENT_NOTE, ha="center", fontsize=7, color="#444444")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
