"""Wrong types and values on the ledger and usage API: each raises InvalidParameterError naming the
parameter (what it accepts, what it got), never a pydantic error about an internal class, and
nothing is stored."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lean_core import CostLedger, TokenUsage
from lean_core.call_tracker import CallTracker
from lean_core.errors import InvalidParameterError
from lean_core.ledger_records import CallRecord, OutputLengthRecord, SavingsEvent


def _raises(parameter: str, action: Callable[[], object]) -> InvalidParameterError:
    with pytest.raises(InvalidParameterError) as info:
        action()
    error = info.value
    assert error.parameter == parameter, str(error)
    assert f"invalid {parameter}" in str(error) and "expected" in str(error)
    assert isinstance(error, ValueError)
    return error


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[CostLedger]:
    with CostLedger(tmp_path / "ledger.sqlite3") as opened:
        yield opened
        # Nothing a refused call passed reached the file.
        assert opened.calls() == [] and opened.savings() == [] and opened.output_lengths() == []


# -- CostLedger(...) ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["", "   ", 3, 2.5, b"ledger.sqlite3", ["a"], "bad\0name"])
def test_ledger_path_must_be_a_usable_file_path(path: object, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    # Were "" taken as "the default ledger", the test would open this file instead of failing.
    monkeypatch.setenv("LEAN_INFERENCE_LEDGER", str(tmp_path / "default.sqlite3"))
    error = _raises("path", lambda: CostLedger(path))  # type: ignore[arg-type]
    assert error.received == path
    assert not (tmp_path / "default.sqlite3").exists()


def test_ledger_path_may_not_be_a_directory(tmp_path: Path) -> None:
    for read_only in (False, True):
        error = _raises("path", lambda: CostLedger(tmp_path, read_only=read_only))  # noqa: B023
        assert "directory" in error.allowed


@pytest.mark.parametrize(("keyword", "value"), [("read_only", "yes"), ("read_only", 1), ("pricer", "genai")])
def test_ledger_options_are_checked(tmp_path: Path, keyword: str, value: object) -> None:
    _raises(keyword, lambda: CostLedger(tmp_path / "l.sqlite3", **{keyword: value}))  # type: ignore[arg-type]
    assert not (tmp_path / "l.sqlite3").exists()  # refused before any I/O


# -- record_call ----------------------------------------------------------------------------------
GOOD_CALL: dict[str, Any] = {"model": "gpt-4o-mini", "usage": TokenUsage(input_tokens=10, output_tokens=2)}

BAD_CALLS: list[tuple[str, object]] = [
    ("model", None), ("model", ""), ("model", 3), ("model", b"gpt-4o"),
    ("usage", None), ("usage", {"input_tokens": 3}), ("usage", 12),
    ("provider", 7), ("provider", ""),
    ("latency_s", -0.5), ("latency_s", math.nan), ("latency_s", math.inf), ("latency_s", "1.5"),
    ("latency_s", True),
    ("tenant", 3), ("tenant", ""), ("tenant", ["acme"]),
    ("tags", "rag"), ("tags", [1, 2]), ("tags", ["ok", None]), ("tags", 5), ("tags", b"rag"),
    ("run_id", 42), ("run_id", ""),
    ("timestamp", "2026-01-01"), ("timestamp", 1_700_000_000),
]


@pytest.mark.parametrize(("parameter", "value"), BAD_CALLS)
def test_record_call_names_the_bad_parameter(ledger: CostLedger, parameter: str, value: object) -> None:
    error = _raises(parameter, lambda: ledger.record_call(**{**GOOD_CALL, parameter: value}))
    assert "CallRecord" not in str(error)  # the caller never built one


@pytest.mark.parametrize(("parameter", "value"), BAD_CALLS[:6])
async def test_arecord_call_checks_the_same(ledger: CostLedger, parameter: str, value: object) -> None:
    with pytest.raises(InvalidParameterError) as info:
        await ledger.arecord_call(**{**GOOD_CALL, parameter: value})
    assert info.value.parameter == parameter


def test_record_call_refuses_a_usage_that_skipped_validation(ledger: CostLedger) -> None:
    forged = TokenUsage.model_construct(input_tokens=-7, cached_input_tokens=0, cache_write_tokens=0,
                                        output_tokens=0, reasoning_tokens=0, source="provider")
    _raises("input_tokens", lambda: ledger.record_call(model="gpt-4o", usage=forged))


# -- TokenUsage -----------------------------------------------------------------------------------
COUNT_FIELDS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")


@pytest.mark.parametrize("field", COUNT_FIELDS)
@pytest.mark.parametrize("value", [-7, -1, True, False, 1.0, 2.5, "3", None, 2**63])
def test_token_counts_are_whole_numbers_from_zero(field: str, value: object) -> None:
    error = _raises(field, lambda: TokenUsage(**{field: value}))
    assert error.received == value and "int" in error.allowed


def test_token_usage_names_the_rest() -> None:
    _raises("source", lambda: TokenUsage(source="guess"))  # type: ignore[arg-type]
    _raises("prompt_tokens", lambda: TokenUsage(prompt_tokens=3))  # type: ignore[call-arg]
    _raises("cached_input_tokens", lambda: TokenUsage(input_tokens=5, cached_input_tokens=6))
    _raises("cached_input_tokens", lambda: TokenUsage(input_tokens=5, cached_input_tokens=3, cache_write_tokens=3))
    _raises("reasoning_tokens", lambda: TokenUsage(output_tokens=1, reasoning_tokens=2))
    _raises("input_tokens", lambda: TokenUsage.model_validate({"input_tokens": -7}))


def test_token_usage_update_is_validated_not_clamped() -> None:
    usage = TokenUsage(input_tokens=10, output_tokens=3)
    _raises("input_tokens", lambda: usage.model_copy(update={"input_tokens": -7}))
    _raises("reasoning_tokens", lambda: usage.model_copy(update={"reasoning_tokens": 4}))
    assert usage.model_copy(update={"output_tokens": 5}).output_tokens == 5
    assert usage.model_copy() == usage


# -- savings and output lengths -------------------------------------------------------------------
def test_record_takes_only_a_savings_event(ledger: CostLedger) -> None:
    for value in (None, {"layer": "cache", "model": "gpt-4o"}, "cache", 3):
        _raises("event", lambda: ledger.record(value))  # type: ignore[arg-type]  # noqa: B023


async def test_arecord_takes_only_a_savings_event(ledger: CostLedger) -> None:
    with pytest.raises(InvalidParameterError, match="event"):
        await ledger.arecord({"layer": "cache"})  # type: ignore[arg-type]


@pytest.mark.parametrize(("keyword", "value"), [
    ("layer", "magic"), ("layer", None), ("model", ""), ("model", None), ("input_tokens_before", -3),
    ("input_tokens_after", 1.5), ("output_tokens_before", True), ("unknown_field", 1),
])
def test_record_savings_names_the_bad_keyword(ledger: CostLedger, keyword: str, value: object) -> None:
    fields = {"layer": "compression", "model": "gpt-4o", keyword: value}
    error = _raises(keyword, lambda: ledger.record_savings(**fields))
    assert "SavingsEvent" not in error.parameter


def test_records_built_directly_name_the_field() -> None:
    _raises("model", lambda: SavingsEvent(layer="cache", model=""))
    _raises("layer", lambda: SavingsEvent(layer="nope", model="m"))  # type: ignore[arg-type]
    _raises("latency_s", lambda: CallRecord(model="m", usage=TokenUsage(), latency_s=math.nan))
    _raises("cost_usd", lambda: CallRecord(model="m", usage=TokenUsage(), priced=True))
    _raises("output_tokens", lambda: OutputLengthRecord(model="m", feature_version="1", features=(),
                                                        output_tokens=-1))


def test_record_output_length_takes_only_its_record(ledger: CostLedger) -> None:
    _raises("record", lambda: ledger.record_output_length({"model": "m"}))  # type: ignore[arg-type]


# -- reads ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("keyword", "value"), [
    ("tenant", 3), ("tenant", ""), ("tenant", ["acme"]), ("since", "2026-01-01"), ("until", 1_700_000_000),
    ("skip_bad_rows", "yes"), ("skip_bad_rows", None),
])
@pytest.mark.parametrize("method", ["summary", "calls", "savings", "output_lengths"])
def test_reads_check_their_filters(ledger: CostLedger, method: str, keyword: str, value: object) -> None:
    _raises(keyword, lambda: getattr(ledger, method)(**{keyword: value}))


def test_good_filters_still_read(ledger: CostLedger) -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    assert ledger.summary(tenant="acme", since=since, until=datetime(2027, 1, 1)).calls == 0
    assert ledger.summary().skipped_rows == 0


# -- CallTracker ----------------------------------------------------------------------------------
def test_call_tracker_checks_at_construction_and_start(ledger: CostLedger) -> None:
    _raises("ledger", lambda: CallTracker("ledger.sqlite3"))  # type: ignore[arg-type]
    _raises("token_counter", lambda: CallTracker(ledger, token_counter="cl100k"))  # type: ignore[arg-type]
    _raises("default_tenant", lambda: CallTracker(ledger, default_tenant=5))  # type: ignore[arg-type]
    tracker = CallTracker(ledger)
    _raises("run_id", lambda: tracker.start(None, model="m", provider=None))  # type: ignore[arg-type]
    _raises("model", lambda: tracker.start("r", model=3, provider=None))  # type: ignore[arg-type]
    _raises("provider", lambda: tracker.start("r", model="m", provider=["openai"]))  # type: ignore[arg-type]
    _raises("tenant", lambda: tracker.start("r", model="m", provider=None, tenant=7))  # type: ignore[arg-type]
    _raises("tags", lambda: tracker.start("r", model="m", provider=None, tags="rag"))
    _raises("prompt_texts", lambda: tracker.start("r", model="m", provider=None, prompt_texts="hello"))
    assert tracker.pending_calls == 0
