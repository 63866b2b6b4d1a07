"""LeanPipeline's single flight (sync and async alike), its cache port, and its typed savings events."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import pytest

from lean_core import CostLedger
from lean_core.cache import ResponseCache, SQLiteCacheStore
from lean_core.errors import InvalidParameterError
from lean_core.ledger_records import SavingsEvent
from lean_core.pipeline import (
    LeanPipeline,
    ModelCall,
    ModelReply,
    PipelineCache,
    PipelineRequest,
    PipelineResult,
    PipelineSettings,
)
from lean_core.pipeline._calls import savings_event
from lean_core.pipeline._single_flight import Flight, FlightKey, SingleFlight
from lean_core.usage import TokenUsage

QUESTION = "When does the museum open on Sundays?"
ANSWER = "It opens at 10:00."
_GUARD_S = 20.0
"""Upper bound on waiting for the gate: reached only when coalescing is broken (the test then fails)."""

Mode = Literal["sync", "async"]


class ModelDown(RuntimeError):
    """The first call's failure in the failure test."""


class GatedModel:
    """Holds every call until the gate opens (every expected follower has joined a flight), so
    identical requests are certainly in flight together. Thread-safe; sync and async."""

    model_name = "gated-model"

    def __init__(self, *, fail_first: bool = False) -> None:
        self.gate = threading.Event()
        self.fail_first = fail_first
        self.calls: list[ModelCall] = []
        self._lock = threading.Lock()

    def _enter(self, call: ModelCall) -> bool:
        with self._lock:
            self.calls.append(call)
            return len(self.calls) == 1

    def _reply(self, first: bool, opened: bool) -> ModelReply:
        if not opened:
            raise AssertionError("the identical requests never joined this call's flight")
        if first and self.fail_first:
            raise ModelDown("the model is down")
        return ModelReply(text=ANSWER, finish_reason="stop", usage=TokenUsage(input_tokens=40, output_tokens=5))

    def complete(self, call: ModelCall) -> ModelReply:
        first = self._enter(call)
        return self._reply(first, self.gate.wait(_GUARD_S))

    async def acomplete(self, call: ModelCall) -> ModelReply:
        first = self._enter(call)
        # The wait runs in a thread, so the loop keeps running the followers meanwhile.
        return self._reply(first, await asyncio.to_thread(self.gate.wait, _GUARD_S))


class WatchedFlights(SingleFlight[PipelineResult]):
    """Opens ``gate`` once ``followers`` requests have joined a flight in progress."""

    def __init__(self, followers: int, gate: threading.Event) -> None:
        super().__init__()
        self._expected, self._joined, self._gate = followers, 0, gate
        self._count_lock = threading.Lock()

    def join_or_lead(self, key: FlightKey) -> tuple[Flight[PipelineResult], bool]:
        flight, leading = super().join_or_lead(key)
        if not leading:
            with self._count_lock:
                self._joined += 1
                if self._joined == self._expected:
                    self._gate.set()
        return flight, leading


def _pipeline(tmp_path: Path, model: GatedModel, *, followers: int, ledger: CostLedger | None = None,
              cache: bool = True) -> LeanPipeline:
    settings = PipelineSettings(cache={"enabled": cache})  # type: ignore[arg-type]
    pipeline = LeanPipeline(model, settings=settings, ledger=ledger,
                            cache=ResponseCache(SQLiteCacheStore(tmp_path / "cache.sqlite3"), mode="exact"))
    pipeline._flights = WatchedFlights(followers, model.gate)
    return pipeline


def _ask_together(pipeline: LeanPipeline, requests: list[PipelineRequest],
                  mode: Mode) -> list[PipelineResult | BaseException]:
    """Every request at once: one thread each (sync) or one task each (async); failures returned."""
    if mode == "sync":
        with ThreadPoolExecutor(max_workers=len(requests)) as pool:
            futures = [pool.submit(pipeline.invoke, r) for r in requests]
            return [f.exception() or f.result() for f in futures]

    async def run() -> list[PipelineResult | BaseException]:
        return list(await asyncio.gather(*(pipeline.ainvoke(r) for r in requests), return_exceptions=True))

    return asyncio.run(run())


def _answers(results: list[PipelineResult | BaseException]) -> list[PipelineResult]:
    answers = [r for r in results if isinstance(r, PipelineResult)]
    assert len(answers) == len(results), [r for r in results if not isinstance(r, PipelineResult)]
    return answers


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_identical_requests_at_once_make_one_model_call(tmp_path: Path, mode: Mode) -> None:
    model = GatedModel()
    with CostLedger(tmp_path / "ledger.sqlite3") as ledger:
        pipeline = _pipeline(tmp_path, model, followers=4, ledger=ledger)
        results = _answers(_ask_together(pipeline, [PipelineRequest(question=QUESTION, tenant="acme")] * 5, mode))
        assert len(model.calls) == 1
        leaders = [r for r in results if r.cache_hit is None]
        followers = [r for r in results if r.cache_hit is not None]
        assert len(leaders) == 1 and len(followers) == 4
        assert all(r.answer == ANSWER and r.cache_hit == "exact" for r in followers)
        assert all("in flight" in (r.steps[0].note or "") for r in followers)
        assert len(pipeline._flights) == 0  # every flight landed
        # The ledger: one call with its per-layer events, and one cache hit per follower.
        (call,) = ledger.calls()
        events = ledger.savings()
        hits = [e for e in events if e.cache_hit]
        assert len(hits) == 4 and all(e.call_id is None and e.input_tokens_before > 0 for e in hits)
        own = [e for e in events if not e.cache_hit]
        assert {e.layer for e in own} == {"cache", "output"} and all(e.call_id == call.id for e in own)
        assert all(e.model == pipeline.settings.price_model for e in events)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_different_tenants_are_never_coalesced(tmp_path: Path, mode: Mode) -> None:
    model = GatedModel()
    tenants = ["acme", "globex", "acme", "globex", "acme"]
    pipeline = _pipeline(tmp_path, model, followers=3)  # two acme and one globex request follow
    results = _answers(_ask_together(pipeline, [PipelineRequest(question=QUESTION, tenant=t) for t in tenants],
                                     mode))
    assert len(model.calls) == 2
    assert sorted(r.tenant for r in results if r.cache_hit is None) == ["acme", "globex"]
    assert [r.tenant for r in results] == tenants


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_failed_call_is_not_served_to_its_followers(tmp_path: Path, mode: Mode) -> None:
    model = GatedModel(fail_first=True)
    pipeline = _pipeline(tmp_path, model, followers=3)
    results = _ask_together(pipeline, [PipelineRequest(question=QUESTION, tenant="acme")] * 4, mode)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1 and isinstance(failures[0], ModelDown)  # only the caller whose call failed
    answers = [r for r in results if isinstance(r, PipelineResult)]
    # The followers asked the model themselves (one call each), none got the failure as an answer.
    assert len(model.calls) == 4 and all(r.answer == ANSWER and r.cache_hit is None for r in answers)
    assert len(pipeline._flights) == 0


def test_a_sync_and_an_async_request_share_one_flight(tmp_path: Path) -> None:
    model = GatedModel()
    pipeline = _pipeline(tmp_path, model, followers=1)
    request = PipelineRequest(question=QUESTION, tenant="acme")
    with ThreadPoolExecutor(max_workers=2) as pool:
        sync = pool.submit(pipeline.invoke, request)
        asyn = pool.submit(asyncio.run, pipeline.ainvoke(request))
        results = [sync.result(), asyn.result()]
    assert len(model.calls) == 1 and sorted(str(r.cache_hit) for r in results) == ["None", "exact"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_without_the_cache_identical_requests_each_call_the_model(tmp_path: Path, mode: Mode) -> None:
    model = GatedModel()
    model.gate.set()  # nobody joins: coalescing is the cache's business, off here
    pipeline = _pipeline(tmp_path, model, followers=0, cache=False)
    _answers(_ask_together(pipeline, [PipelineRequest(question=QUESTION)] * 3, mode))
    assert len(model.calls) == 3


def test_a_follower_on_the_leaders_own_thread_does_not_wait_for_itself() -> None:
    flights: SingleFlight[str] = SingleFlight()
    flight, leading = flights.join_or_lead(("acme", "k"))
    assert leading and flights.join_or_lead(("acme", "k")) == (flight, False)
    assert flights.wait(flight) is None  # would block forever otherwise
    flights.land(flight, "answer")
    assert len(flights) == 0 and flights.lead(("acme", "k")) is not None


def test_response_cache_is_a_pipeline_cache(tmp_path: Path) -> None:
    # Type level: mypy checks this assignment (`mypy tests/unit/test_pipeline_single_flight.py`).
    cache: PipelineCache = ResponseCache(SQLiteCacheStore(tmp_path / "c.sqlite3"), mode="exact")
    assert isinstance(cache, PipelineCache)
    members = {name for name in vars(PipelineCache) if not name.startswith("_")}
    assert members == {"lookup", "alookup", "update", "aupdate"}
    for name in members:
        wanted = inspect.signature(getattr(PipelineCache, name)).parameters
        got = inspect.signature(getattr(ResponseCache, name)).parameters
        for param in wanted.values():
            assert param.name in got and got[param.name].kind == param.kind, (name, param.name)
        assert all(p.default is not p.empty for n, p in got.items() if n not in wanted), name
        assert inspect.iscoroutinefunction(getattr(ResponseCache, name)) == name.startswith("a")


def test_a_cache_missing_what_the_pipeline_needs_is_refused() -> None:
    class SyncOnlyCache:
        def lookup(self, prompt: str, **kwargs: object) -> None: ...

        def update(self, prompt: str, payload: str, **kwargs: object) -> None: ...

    with pytest.raises(InvalidParameterError, match="cache"):
        LeanPipeline(GatedModel(), cache=SyncOnlyCache())  # type: ignore[arg-type]


@pytest.mark.parametrize("form", [SavingsEvent, dict])
def test_layer_savings_are_priced_at_the_reference_model(form: Callable[..., object]) -> None:
    # Budget helpers return SavingsEvent objects (older ones record_savings keywords): both convert.
    fields = {"layer": "output", "model": "served-model", "tenant": "acme", "output_tokens_before": 90,
              "output_tokens_after": 30}
    event = savings_event(form(**fields), model="gpt-4o-mini")  # type: ignore[arg-type]
    assert isinstance(event, SavingsEvent)
    assert (event.model, event.layer, event.output_tokens_saved, event.tenant) == ("gpt-4o-mini", "output", 60, "acme")
    with pytest.raises(TypeError, match="SavingsEvent"):
        savings_event(("output", 90), model="gpt-4o-mini")  # type: ignore[arg-type]
