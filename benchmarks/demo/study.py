"""Layer study: one workload through the baseline and the layers added one by one, measured.

What ``lean-inference demo`` and ``lean-inference bench pipeline`` report. Each row runs the whole
workload with its own (empty) response cache, so rows are independent; costs are the reference
model's price (genai-prices) for tokens counted in its tokenizer, and ``cost_per_mtok`` is the
row's cost per million tokens *of the baseline's work* (so the ratio of two rows is the ratio of
their costs).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from lean_core.errors import InvalidParameterError
from lean_core.ledger import CostLedger
from lean_core.pipeline.runner import LeanPipeline
from lean_core.pipeline.settings import PipelineSettings
from lean_core.pipeline.types import (
    PipelineModel,
    PipelineRequest,
    PipelineResult,
    SaltedPrefixCacheModel,
)
from lean_core.pricing import price_usage
from lean_core.usage import TokenUsage

__all__ = ["CUMULATIVE_ROWS", "LayerStudy", "StudyItem", "StudyRow", "cumulative_settings", "run_layer_study"]

CUMULATIVE_ROWS: tuple[tuple[str, dict[str, bool]], ...] = (
    ("baseline", {"cache": False, "template": False, "compression": False, "budget": False}),
    ("+ template", {"cache": False, "template": True, "compression": False, "budget": False}),
    ("+ compression", {"cache": False, "template": True, "compression": True, "budget": False}),
    ("+ output budget", {"cache": False, "template": True, "compression": True, "budget": True}),
    ("+ cache (all layers)", {"cache": True, "template": True, "compression": True, "budget": True}),
)
"""The seeds' table: the baseline, then each layer added on top of the ones before."""


class StudyItem(BaseModel):
    """One request of the workload, with what counts as a correct answer."""

    model_config = ConfigDict(frozen=True)

    question: str
    context: tuple[str, ...] = ()
    answers: tuple[str, ...] = ()
    tenant: str | None = None


class StudyRow(BaseModel):
    """One configuration's measured totals over the workload."""

    model_config = ConfigDict(frozen=True)

    name: str
    requests: int
    model_calls: int
    cache_hits: int
    semantic_hits: int
    input_tokens: int
    """Prompt tokens sent, in the reference model's tokenizer (0 for cache hits)."""
    output_tokens: int
    local_input_tokens: int
    """Prompt tokens as the served model counted them."""
    local_output_tokens: int
    prefix_cached_tokens: int
    """Prompt tokens the served model read from its prefix cache (vLLM), when it reports them."""
    cost_usd: float
    cost_per_mtok: float
    cost_reduction: float
    """1 - cost / the baseline's cost."""
    engine_seconds: float
    """Sum of the requests' model-call seconds (with requests in flight together, more than the
    wall time: see ``wall_seconds``)."""
    graded: int
    """Requests with gold answers (accuracy and agreement are over these)."""
    accuracy: float
    """Share of graded answers containing a gold answer."""
    agreement: float
    """Share of graded requests whose correctness equals the baseline's (1.0 for the baseline)."""
    truncated: int
    wall_seconds: float


class LayerStudy(BaseModel):
    """All rows, the reference model, and the per-request answers."""

    model_config = ConfigDict(frozen=True)

    price_model: str
    served_model: str
    rows: tuple[StudyRow, ...]
    answers: dict[str, tuple[str, ...]]
    """Row name → answers in workload order."""


def cumulative_settings(base: PipelineSettings | None = None) -> list[tuple[str, PipelineSettings]]:
    """The rows of :data:`CUMULATIVE_ROWS` applied to ``base`` (default settings)."""
    base = base or PipelineSettings()
    return [(name, base.with_layers(**layers)) for name, layers in CUMULATIVE_ROWS]


def _price(usage: TokenUsage, model: str) -> float:
    quote = price_usage(usage, model)
    if not quote.priced or quote.total_cost_usd is None:
        raise InvalidParameterError("price_model", allowed="a model genai-prices knows (e.g. gpt-4o)",
                                    received=f"{model}: {quote.unpriced_reason}")
    return float(quote.total_cost_usd or Decimal(0))


def run_layer_study(model: PipelineModel, items: Sequence[StudyItem], *,
                    rows: Sequence[tuple[str, PipelineSettings]] | None = None,
                    is_correct: Callable[[str, Sequence[str]], bool],
                    ledger: CostLedger | None = None, cache_dir: str | Path | None = None,
                    progress: Callable[[str, int, int], None] | None = None,
                    concurrency: int = 1) -> LayerStudy:
    """Run ``items`` through every row (default :func:`cumulative_settings`) and measure each.

    Up to ``concurrency`` requests are in flight at once (the local engine batches them), started
    in stream order, as a server would see them: a repeat is a cache hit when its original has
    finished by the time the repeat arrives, and joins its original's model call when that is
    still in flight (the pipeline's single flight; also reported as an exact hit).

    ``progress(row_name, done, total)`` is called after every request (for a progress bar).
    ``cache_dir`` holds each row's fresh cache file (default: a temporary directory).
    """
    if not items:
        raise InvalidParameterError("items", allowed="at least one workload item", received=0)
    rows = list(rows or cumulative_settings())
    prices = {s.price_model for _, s in rows}
    if len(prices) != 1:
        raise InvalidParameterError("rows", allowed="one price_model for every row", received=sorted(prices))
    price_model = prices.pop()
    measured: list[StudyRow] = []
    answers: dict[str, tuple[str, ...]] = {}
    baseline_correct: list[bool] | None = None
    baseline_cost = baseline_tokens = None
    with tempfile.TemporaryDirectory(prefix="lean-study-") as tmp:
        root = Path(cache_dir or tmp)
        for index, (name, settings) in enumerate(rows):
            cache = None
            if settings.cache.enabled:
                from lean_core.cache import ResponseCache, SQLiteCacheStore

                path = root / f"row{index}-cache.sqlite3"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
                cache = ResponseCache(SQLiteCacheStore(path), mode=settings.cache.mode, ttl_s=settings.cache.ttl_s)
            if isinstance(model, SaltedPrefixCacheModel):
                # A row must not reuse prompts an earlier row left in the engine's prefix cache.
                model.cache_salt = f"lean-study-row-{index}"
            pipeline = LeanPipeline(model, settings=settings, ledger=ledger, cache=cache)
            started = time.perf_counter()
            requests = [PipelineRequest(question=i.question, context=i.context, tenant=i.tenant) for i in items]
            if concurrency <= 1:
                results: list[PipelineResult] = []
                for done, request in enumerate(requests, 1):
                    results.append(pipeline.invoke(request))
                    if progress is not None:
                        progress(name, done, len(items))
            else:
                results = asyncio.run(_concurrently(pipeline, requests, concurrency, name, progress))
            wall = time.perf_counter() - started
            if cache is not None:
                cache.close()
            correct = [is_correct(r.answer, item.answers) for r, item in zip(results, items, strict=True)
                       if item.answers]
            usage = TokenUsage(input_tokens=sum(r.reference_usage.input_tokens for r in results),
                               output_tokens=sum(r.reference_usage.output_tokens for r in results))
            cost = _price(usage, price_model)
            if baseline_cost is None:
                baseline_cost, baseline_tokens, baseline_correct = cost, usage.input_tokens + usage.output_tokens, correct
            assert baseline_tokens is not None and baseline_correct is not None
            measured.append(StudyRow(
                name=name, requests=len(results), model_calls=sum(r.cache_hit is None for r in results),
                cache_hits=sum(r.cache_hit is not None for r in results),
                semantic_hits=sum(r.cache_hit == "semantic" for r in results),
                input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                local_input_tokens=sum(r.usage.input_tokens for r in results),
                local_output_tokens=sum(r.usage.output_tokens for r in results),
                prefix_cached_tokens=sum(r.usage.cached_input_tokens for r in results),
                cost_usd=cost, cost_per_mtok=cost / max(baseline_tokens, 1) * 1e6,
                cost_reduction=1 - cost / baseline_cost if baseline_cost else 0.0,
                engine_seconds=sum(r.model_seconds for r in results),
                graded=len(correct), accuracy=sum(correct) / max(len(correct), 1),
                agreement=sum(a == b for a, b in zip(correct, baseline_correct, strict=True)) / max(len(correct), 1),
                truncated=sum(r.truncated for r in results), wall_seconds=wall))
            answers[name] = tuple(r.answer for r in results)
    return LayerStudy(price_model=price_model, served_model=model.model_name, rows=tuple(measured), answers=answers)


async def _concurrently(pipeline: LeanPipeline, requests: list[PipelineRequest], limit: int, name: str,
                        progress: Callable[[str, int, int], None] | None) -> list[PipelineResult]:
    gate = asyncio.Semaphore(limit)
    done = 0

    async def one(request: PipelineRequest) -> PipelineResult:
        nonlocal done
        async with gate:
            result = await pipeline.ainvoke(request)
        done += 1
        if progress is not None:
            progress(name, done, len(requests))
        return result

    return list(await asyncio.gather(*(one(r) for r in requests)))
