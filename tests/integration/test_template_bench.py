"""`bench template` on a slice of the bundled templates against the real local vLLM engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lean_benchmarks.template_bench import run_template_bench

pytestmark = pytest.mark.integration

SLICE = ["ticket_classifier", "review_sentiment", "intent_router"]


def test_stable_first_rendering_hits_the_prefix_cache_and_naive_does_not(tmp_path: Path) -> None:
    out, png = tmp_path / "template.json", tmp_path / "template.png"
    data = run_template_bench(names=SLICE, requests=12, outputs=False, out=out, png=png, show_progress=False)
    assert json.loads(out.read_text()) == data  # JSON-able, written as returned
    assert png.read_bytes()[:4] == b"\x89PNG"
    stable, naive = data["cache"]
    assert (stable["order"], naive["order"]) == ("stable_first", "naive")
    assert stable["measured_requests"] == naive["measured_requests"]
    # each template's first request and exact repeats are not measured
    assert 12 - len(SLICE) <= stable["measured_requests"] + stable["repeats_not_measured"] < 12
    # Stable-first: every repeat of a template is served its system prompt from the cache, up to
    # the whole blocks the engine can cache; naive ordering shares (almost) nothing.
    assert stable["cached_share_mean"] > naive["cached_share_mean"]
    assert stable["cached_share_mean"] >= 0.95 * stable["block_ceiling_mean"] > 0.5
    assert naive["cached_share_mean"] < 0.3
    for row in data["rows"]:
        assert row["tokens"][0]["template_reduction"] >= 0.3
        assert row["engine_prompt_tokens_lean_mean"] is None  # outputs were skipped


def test_outputs_compare_verbose_lean_and_a_meaningless_change(tmp_path: Path) -> None:
    data = run_template_bench(names=["spam_filter"], requests=1, outputs=True, out=tmp_path / "t.json",
                              png=tmp_path / "t.png", show_progress=False)
    row = data["rows"][0]
    assert 0.0 <= row["same_output_rate"] <= 1.0 and 0.0 <= row["same_output_rate_control"] <= 1.0
    assert all({"verbose", "lean", "verbose_spaced"} <= set(o) for o in row["outputs"])
    assert row["engine_prompt_tokens_lean_mean"] < row["engine_prompt_tokens_verbose_mean"]
    assert "deterministic_same_output_rate_control" in data["summary"]
