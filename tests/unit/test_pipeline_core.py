"""LeanPipeline with a scripted model: what each layer sends, serves and records."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from lean_core import CostLedger
from lean_core.cache import ResponseCache, SQLiteCacheStore
from lean_core.errors import InvalidParameterError
from lean_core.pipeline import (
    LeanPipeline,
    ModelCall,
    ModelReply,
    PipelineRequest,
    PipelineSettings,
)
from lean_core.usage import TokenUsage

_FILLER = tuple(
    f"Passage {i}. The harbour ferry number {100 + i} leaves pier {i} at {7 + i % 5}:15 every weekday morning. "
    f"Tickets for route {100 + i} cost {2 + i} euros and are sold at kiosk K-{i}. " * 3
    for i in range(8)
)
PASSAGES = (*_FILLER, "The museum opens at 10:00 on Sundays and the entry fee is 12 euros for adults.")
QUESTION = "When does the museum open on Sundays?"


class ScriptedModel:
    """Answers from a script and remembers every call (finish reason and text per call)."""

    model_name = "scripted-model"

    def __init__(self, replies: list[tuple[str, str]] | None = None) -> None:
        self.calls: list[ModelCall] = []
        self.replies = list(replies or [])

    def complete(self, call: ModelCall) -> ModelReply:
        self.calls.append(call)
        text, finish = self.replies.pop(0) if self.replies else ("It opens at 10:00.", "stop")
        return ModelReply(text=text, finish_reason=finish,
                          usage=TokenUsage(input_tokens=50 * len(call.messages), output_tokens=len(text.split())))

    async def acomplete(self, call: ModelCall) -> ModelReply:
        return self.complete(call)


def _pipeline(tmp_path: Path, model: ScriptedModel, ledger: CostLedger | None = None,
              **settings: object) -> LeanPipeline:
    cache = ResponseCache(SQLiteCacheStore(tmp_path / "cache.sqlite3"), mode="exact")
    return LeanPipeline(model, settings=PipelineSettings(**settings), ledger=ledger, cache=cache)  # type: ignore[arg-type]


def test_all_layers_shape_the_call_and_the_cache_serves_repeats_per_tenant(tmp_path: Path) -> None:
    model = ScriptedModel()
    with CostLedger(tmp_path / "ledger.sqlite3") as ledger:
        pipeline = _pipeline(tmp_path, model, ledger, budget={"brevity": True})
        first = pipeline.invoke(PipelineRequest(question=QUESTION, context=PASSAGES, tenant="acme"))
        assert first.cache_hit is None and len(model.calls) == 1
        call = model.calls[0]
        assert call.messages[0]["role"] == "system"  # stable instructions first
        user = call.messages[-1]["content"]
        assert "10:00" in user and "12 euros" in user  # the relevant passage survived compression
        assert user.rstrip().endswith("Answer in one short sentence.")  # brevity at the end of the prompt
        assert call.max_tokens < 256 and call.early_stop is not None
        steps = {s.layer: s for s in first.steps}
        assert steps["compression"].input_tokens_after < steps["compression"].input_tokens_before / 2
        assert steps["template"].input_tokens_after < steps["template"].input_tokens_before
        assert first.reference_usage.input_tokens < first.baseline_reference_usage.input_tokens / 2
        again = pipeline.invoke(PipelineRequest(question=f"  {QUESTION}\n", context=PASSAGES, tenant="acme"))
        assert again.cache_hit == "exact" and again.answer == first.answer and len(model.calls) == 1
        other = pipeline.invoke(PipelineRequest(question=QUESTION, context=PASSAGES, tenant="globex"))
        assert other.cache_hit is None and len(model.calls) == 2  # never another tenant's answer
        layers = {e.layer for e in ledger.savings()}
        assert layers == {"cache", "compression", "template", "output"}
        assert len(ledger.calls()) == 2 and all(c.model == "scripted-model" for c in ledger.calls())
        assert any(e.layer == "cache" and e.cache_hit for e in ledger.savings())


def test_layers_off_sends_the_baseline_prompt_and_default_budget(tmp_path: Path) -> None:
    model = ScriptedModel()
    settings = PipelineSettings().with_layers(cache=False, template=False, compression=False, budget=False)
    pipeline = LeanPipeline(model, settings=settings)
    result = pipeline.invoke(PipelineRequest(question=QUESTION, context=PASSAGES))
    (call,) = model.calls
    assert len(call.messages) == 1 and call.messages[0]["content"].startswith("You are a helpful")
    assert call.max_tokens == 256 and call.stop == () and call.early_stop is None
    assert all(p[:40] in call.messages[0]["content"] for p in PASSAGES)  # nothing dropped
    assert result.steps == () and result.reference_usage.input_tokens == result.baseline_reference_usage.input_tokens


class SentenceStoppedModel(ScriptedModel):
    """Answers as the local engine does when early stopping ended the answer after a sentence."""

    def complete(self, call: ModelCall) -> ModelReply:
        return super().complete(call).model_copy(update={"early_stop": "sentences"})


def test_one_fact_questions_get_a_one_sentence_limit_and_its_stop_is_reported(tmp_path: Path) -> None:
    model = SentenceStoppedModel()
    result = _pipeline(tmp_path, model).invoke(PipelineRequest(question=QUESTION, context=PASSAGES))
    early_stop = model.calls[0].early_stop
    assert early_stop is not None and early_stop.sentences == 1
    output = next(s for s in result.steps if s.layer == "output")
    assert output.note.endswith(", early_stop=sentences") and not result.truncated
    off = ScriptedModel()
    _pipeline(tmp_path, off, budget={"fact_sentences": None}).invoke(
        PipelineRequest(question=QUESTION, context=PASSAGES))
    assert off.calls[0].early_stop is not None and off.calls[0].early_stop.sentences is None


def test_auto_compression_keeps_at_most_max_tokens_of_many_relevant_passages(tmp_path: Path) -> None:
    # Forty passages that all speak of the museum's hours: auto's relevance criterion keeps them
    # all, so only the ceilings bound the context (35 % of ~2,000 tokens, or 400 tokens).
    passages = tuple(f"Note {i}. The city museum opens at {8 + i % 4}:00 on Sundays in season {i}, and on "
                     f"public holidays it opens at {9 + i % 3}:30; guided tours of wing {i} start at noon "
                     f"and cost {5 + i} euros for adults." for i in range(40))

    def kept(**compression: object) -> tuple[int, int]:
        result = _pipeline(tmp_path, ScriptedModel(), cache={"enabled": False}, compression=compression).invoke(
            PipelineRequest(question=QUESTION, context=passages))
        step = next(s for s in result.steps if s.layer == "compression")
        return step.input_tokens_before, step.input_tokens_after

    before, after = kept()
    assert before > 1500 and after <= 400
    assert 400 < kept(max_tokens=None)[1] <= 0.35 * before
    assert kept(max_tokens=200)[1] <= 200
    with pytest.raises(ValueError, match="max_tokens"):
        PipelineSettings(compression={"max_tokens": 0})


def test_truncated_answer_is_reported_and_not_cached(tmp_path: Path) -> None:
    model = ScriptedModel([("It opens at", "length"), ("It opens at 10:00.", "stop")])
    pipeline = _pipeline(tmp_path, model)
    cut = pipeline.invoke(QUESTION)
    assert cut.truncated and cut.finish_reason == "length"
    again = pipeline.invoke(QUESTION)
    assert again.cache_hit is None and again.answer == "It opens at 10:00." and not again.truncated


def test_continue_policy_asks_once_more(tmp_path: Path) -> None:
    model = ScriptedModel([("It opens", "length"), (" at 10:00.", "stop")])
    pipeline = _pipeline(tmp_path, model, budget={"on_truncation": "continue"}, cache={"enabled": False})
    result = pipeline.invoke(QUESTION)
    assert result.answer == "It opens at 10:00." and not result.truncated and len(model.calls) == 2
    assert model.calls[1].messages[-2] == {"role": "assistant", "content": "It opens"}
    # Both calls' usage is summed into the one reply the pipeline reports, timed across both.
    assert result.usage.output_tokens == 2 + 2 and result.finish_reason == "stop" and result.model_seconds > 0


def test_async_matches_sync(tmp_path: Path) -> None:
    sync_model, async_model = ScriptedModel(), ScriptedModel()
    request = PipelineRequest(question=QUESTION, context=PASSAGES)
    sync = _pipeline(tmp_path / "a", sync_model, cache={"enabled": False}).invoke(request)
    asyn = asyncio.run(_pipeline(tmp_path / "b", async_model, cache={"enabled": False}).ainvoke(request))
    assert sync_model.calls == async_model.calls and sync.answer == asyn.answer
    assert [s.layer for s in sync.steps] == [s.layer for s in asyn.steps]


def test_settings_from_file_and_bad_input(tmp_path: Path) -> None:
    toml = tmp_path / "lean.toml"
    toml.write_text('price_model = "gpt-4o-mini"\n[compression]\nratio = 0.25\n[cache]\nenabled = false\n')
    settings = PipelineSettings.from_file(toml, tenant="acme")
    assert settings.compression.ratio == 0.25 and not settings.cache.enabled and settings.tenant == "acme"
    as_json = tmp_path / "lean.json"
    as_json.write_text(json.dumps({"budget": {"brevity": True}}))
    assert PipelineSettings.from_file(as_json).budget.brevity is True
    (tmp_path / "bad.toml").write_text("[compression]\nratio = 2.0\n")
    with pytest.raises(InvalidParameterError, match="ratio"):
        PipelineSettings.from_file(tmp_path / "bad.toml")
    with pytest.raises(InvalidParameterError, match="path"):
        PipelineSettings.from_file(tmp_path / "lean.yaml")
    with pytest.raises(ValueError, match="ratio"):
        PipelineSettings(compression={"ratio": 0})  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="layers"):
        PipelineSettings().with_layers(pruning=False)
    with pytest.raises(InvalidParameterError, match="model"):
        LeanPipeline(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="question"):
        PipelineRequest(question="   ")


def test_default_compression_is_auto_under_the_old_fixed_share(tmp_path: Path) -> None:
    """Default: ratio "auto" with a 0.35 ceiling. Many passages of which one answers: auto keeps far
    less than 35 %; a few passages that all bear on the question: the ceiling binds, as the old
    fixed 0.35 did; an explicit fixed ratio is still honoured as a share; max_ratio is validated."""
    assert PipelineSettings().compression.ratio == "auto" and PipelineSettings().compression.max_ratio == 0.35

    def kept_share(context: tuple[str, ...], **compression: object) -> float:
        model = ScriptedModel()
        result = _pipeline(tmp_path, model, cache={"enabled": False}, template={"enabled": False},
                           compression=compression).invoke(PipelineRequest(question=QUESTION, context=context))
        step = next(s for s in result.steps if s.layer == "compression")
        assert "10:00" in model.calls[0].messages[-1]["content"]  # the answer is always kept
        return step.input_tokens_after / step.input_tokens_before

    assert kept_share(PASSAGES) < 0.2  # one relevant passage of nine: dropped whole, far under the ceiling
    museum = tuple(f"Museum notice {i}. The museum opens at 10:00 on Sundays; on Sunday {i} of each month "
                   f"the museum also opens its roof garden and guided tours start at {11 + i}:00 sharp."
                   for i in range(4))
    assert kept_share(museum, ratio=1.0) == 1.0
    uncapped = kept_share(museum, max_ratio=1.0)
    capped = kept_share(museum)
    assert capped <= 0.35 * 1.2 and capped < uncapped  # all relevant: the ceiling binds
    assert 0.2 <= kept_share(PASSAGES, ratio=0.3) <= 0.36  # a fixed share is a share, not auto
    for bad in (0, 1.5, "auto"):
        with pytest.raises(ValueError, match="max_ratio"):
            PipelineSettings(compression={"max_ratio": bad})  # type: ignore[arg-type]


def test_cache_identity_follows_settings_and_scope(tmp_path: Path) -> None:
    model = ScriptedModel()
    store = SQLiteCacheStore(tmp_path / "c.sqlite3")
    # An explicit settings tenant: without one, requests are not cached at all (issue 22).
    v1 = LeanPipeline(model, settings=PipelineSettings(cache={"scope": "kb-v1"}, tenant="acme"),
                      cache=ResponseCache(store, mode="exact"))
    v1.invoke(QUESTION)
    v2 = LeanPipeline(model, settings=PipelineSettings(cache={"scope": "kb-v2"}, tenant="acme"),
                      cache=ResponseCache(store, mode="exact"))
    assert v2.invoke(QUESTION).cache_hit is None  # a re-indexed knowledge base is a new cache
    assert v1.invoke(QUESTION).cache_hit == "exact"


class SlowModel(ScriptedModel):
    """Holds every call until released, so identical requests overlap in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.waiting = 0

    async def acomplete(self, call: ModelCall) -> ModelReply:
        self.waiting += 1
        await self.release.wait()
        return self.complete(call)


class CountingCache(ResponseCache):
    """Counts finished async lookups (after one, ``ainvoke`` joins or starts a flight at once)."""

    looked_up = 0

    async def alookup(self, prompt: str, **kwargs: Any) -> Any:
        found = await super().alookup(prompt, **kwargs)
        self.looked_up += 1
        return found


def test_identical_requests_in_flight_share_one_model_call(tmp_path: Path) -> None:
    model = SlowModel()
    cache = CountingCache(SQLiteCacheStore(tmp_path / "cache.sqlite3"), mode="exact")
    pipeline = LeanPipeline(model, cache=cache)
    tenants = ("acme", "acme", "globex", "acme")

    async def run() -> list[Any]:
        tasks = [asyncio.create_task(pipeline.ainvoke(PipelineRequest(question=QUESTION, tenant=t))) for t in tenants]
        while not (cache.looked_up == len(tenants) and model.waiting >= 2):
            await asyncio.sleep(0)  # yield to the tasks until every one has looked up and two reached the model
        model.release.set()
        return list(await asyncio.gather(*tasks))

    first, second, other, third = asyncio.run(run())
    assert len(model.calls) == 2  # one per tenant: never shared across tenants
    assert first.cache_hit is None and other.cache_hit is None
    assert second.cache_hit == "exact" and third.cache_hit == "exact" and second.answer == first.answer
    assert "in flight" in second.steps[0].note


class SaltedScriptedModel(ScriptedModel):
    """A scripted model with an engine prefix cache partitioned by ``cache_salt`` (as the local vLLM one)."""

    def __init__(self) -> None:
        super().__init__()
        self.cache_salt: str | None = None
        self.salts: list[str | None] = []

    def complete(self, call: ModelCall) -> ModelReply:
        self.salts.append(self.cache_salt)
        return super().complete(call)


def test_layer_study_measures_every_row_and_isolates_their_prefix_caches(tmp_path: Path) -> None:
    from lean_benchmarks.demo.study import CUMULATIVE_ROWS, StudyItem, run_layer_study

    model = SaltedScriptedModel()
    items = [StudyItem(question=QUESTION, context=PASSAGES, answers=("10:00",), tenant="acme"),
             StudyItem(question=QUESTION, context=PASSAGES, answers=("10:00",), tenant="acme")]
    study = run_layer_study(model, items, is_correct=lambda answer, gold: any(g in answer for g in gold),
                            cache_dir=tmp_path)
    assert [row.name for row in study.rows] == [name for name, _ in CUMULATIVE_ROWS]
    # Every row but the cached one calls the model for both requests; the cache serves the repeat.
    assert [row.model_calls for row in study.rows] == [2, 2, 2, 2, 1]
    assert study.rows[-1].cache_hits == 1 and study.rows[0].cost_reduction == 0.0
    assert study.rows[2].input_tokens < study.rows[0].input_tokens  # compression cut the context
    # One salt per row, so no row reuses prompts an earlier row left in the engine's prefix cache.
    per_row = [model.salts[0:2], model.salts[2:4], model.salts[4:6], model.salts[6:8], model.salts[8:9]]
    assert all(len(set(salts)) == 1 and salts[0] is not None for salts in per_row)
    assert len({salts[0] for salts in per_row}) == len(CUMULATIVE_ROWS)
