"""``bench cache-live`` replay logic, with a deterministic fake model (the real model runs in the bench).

The real path (SmolLM2 on the local vLLM engine, MiniLM, the default answer equivalence) takes
minutes to start and answer, so it is exercised by the benchmark run itself
(``benchmarks/results/cache_live_*.json``), not by a test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import lean_benchmarks.cache_live as cache_live
import lean_core.embeddings
from lean_benchmarks._cache_live_streams import LiveRequest, sharegpt_slice
from lean_benchmarks.cache_live import (
    LiveAnswer,
    _build_cache,
    live_methods,
    replay_live,
    run_live_workload,
)
from lean_cli import main
from lean_core.cache.answer_equivalence import NormalizedExactMatch
from lean_core.errors import InvalidParameterError
from tests.unit.test_cache_bench import BagOfWords, _verifier

# (prompt, group, kind): paraphrases share their group's answer, the look-alike has its own.
STREAM = [
    ("How long is a refund window for anytime tickets?", "refund", "new"),
    ("What is the fare for two zones?", "fare", "new"),
    ("How long is a refund  window for anytime tickets? ", "refund", "repeat"),
    ("How long is the refund window for anytime tickets?", "refund", "paraphrase"),
    ("What is the fare for three zones?", "fare3", "lookalike"),
    ("What is the fare for two zones?", "fare", "repeat"),
    ("How long is the refund window for anytime tickets please?", "refund", "paraphrase"),
]
ANSWERS = {"refund": "28 days.", "fare": "3.90 pounds", "fare3": "4.80 pounds"}


class FakeModel:
    """Greedy stand-in: the answer is a function of the question's group; each call is one second."""

    def __init__(self, reword: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.reword = reword  # prompts whose answer is worded differently (not equivalent by exact match)
        self.asked: list[str] = []

    def __call__(self, request: LiveRequest) -> LiveAnswer:
        self.asked.append(request.prompt)
        text = ANSWERS[request.group or ""]
        return LiveAnswer(text=f"It is {text}" if request.prompt in self.reword else text, seconds=1.0,
                          output_tokens=3)


def _requests() -> list[LiveRequest]:
    return [LiveRequest(prompt=p, tenant="acme", source="demo", kind=k, group=g, gold=(ANSWERS[g].split()[0],))
            for p, g, k in STREAM]


def _cache(name: str, delta: float | None, tmp_path: Path, equivalence: Any = None) -> Any:
    return _build_cache(name, delta, tmp_path, embedder=BagOfWords(), verifier=_verifier(),
                        equivalence=equivalence or NormalizedExactMatch(), seed=0)


def test_no_cache_and_exact_count_calls_hits_and_model_seconds(tmp_path: Path) -> None:
    requests, model = _requests(), FakeModel()
    none = replay_live(requests, model, None, method="no_cache", equivalent=NormalizedExactMatch().equivalent)
    assert (none.model_calls, none.hits, none.model_seconds) == (7, 0, 7.0)
    assert none.cache_stats == {} and none.gold_accuracy == 1.0
    exact = replay_live(requests, model, _cache("exact", None, tmp_path), method="exact",
                        equivalent=NormalizedExactMatch().equivalent)
    assert (exact.exact_hits, exact.semantic_hits, exact.model_calls, exact.model_seconds) == (2, 0, 5, 5.0)
    assert exact.exact_not_equivalent == 0 and exact.by_kind["repeat"]["exact_hits"] == 2


def test_served_semantic_hits_are_scored_against_the_fresh_answer(tmp_path: Path) -> None:
    paraphrase = STREAM[3][0]
    model = FakeModel(reword={paraphrase})  # the model words this paraphrase's answer differently
    row = replay_live(_requests(), model, _cache("static", None, tmp_path), method="static",
                      equivalent=NormalizedExactMatch().equivalent)
    assert row.semantic_hits >= 1 and row.model_calls + row.hits == 7
    # Every served hit asked the model offline for its fresh answer, without counting a call.
    assert len(model.asked) == row.model_calls + row.hits
    assert row.semantic_equivalent + row.semantic_not_equivalent == row.semantic_hits
    assert row.semantic_not_equivalent == 1 and row.observed_error_rate == pytest.approx(1 / row.semantic_hits)
    assert row.samples[0].query == paraphrase and row.samples[0].fresh_answer.startswith("It is")
    assert row.paraphrases_served is not None and row.semantic_other_group is not None


def test_the_error_budget_explores_with_answer_equivalence(tmp_path: Path) -> None:
    checks: list[tuple[str, str]] = []

    def equivalence(cached: str, fresh: str) -> bool:
        checks.append((cached, fresh))
        return NormalizedExactMatch().equivalent(cached, fresh)

    row = replay_live(_requests(), FakeModel(), _cache("budget_0.05", 0.05, tmp_path, equivalence), method="budget_0.05",
                      equivalent=NormalizedExactMatch().equivalent, max_error_rate=0.05)
    assert row.explorations >= 1 and row.explorations == len(checks)  # the cache compared real answers
    assert row.exploration_agreements + row.exploration_disagreements == row.explorations
    assert row.explorations == row.cache_stats["explorations"] == sum(k["explorations"] for k in row.by_kind.values())
    assert sum(k["explorations_agreed"] for k in row.by_kind.values()) == row.exploration_agreements
    assert row.semantic_hits == 0  # too few audits to certify any basis at δ = 0.05 on 7 requests


def test_workload_writes_json_and_chart(tmp_path: Path) -> None:
    out = tmp_path / "cache_live_x.json"
    result = run_live_workload("demo", _requests(), FakeModel(), deltas=(0.02,), embedder=BagOfWords(),
                               verifier=_verifier(), answer_equivalence=NormalizedExactMatch(), out=out)
    data = json.loads(out.read_text())
    assert [r["method"] for r in data["rows"]] == ["no_cache", "exact", "static", "budget_0.02"]
    assert "offline" in data["measurement"] and data["requests"] == 7 and out.with_suffix(".png").stat().st_size
    assert [r.model_calls for r in result.rows][:2] == [7, 5]
    with pytest.raises(InvalidParameterError):
        live_methods([0.7])


def test_sharegpt_slice_is_seeded_and_keeps_repeats(tmp_path: Path) -> None:
    rows = [{"conversation_id": f"c{i}_0", "prompt": f"alpha{i} beta{i} gamma{i}"} for i in range(60)]
    rows += [{"conversation_id": f"r{i}_0", "prompt": "Explain quantum computing in simple terms"} for i in range(5)]
    rows += [{"conversation_id": "late_3", "prompt": "continue"}, {"conversation_id": "long_0", "prompt": "x" * 400}]
    path = tmp_path / "sharegpt.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    first = sharegpt_slice(path, size=24, seed=3, embedder=BagOfWords())
    assert first == sharegpt_slice(path, size=24, seed=3, embedder=BagOfWords())
    assert len(first) == 24 and {r.kind for r in first} >= {"first", "repeat"}
    assert all(r.prompt not in ("continue", "x" * 400) for r in first)  # openers only, short only
    with pytest.raises(InvalidParameterError):
        sharegpt_slice(path, size=1)


def test_cli_cache_live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(lean_core.embeddings, "default_embedder", BagOfWords)

    def engine(requests: Any, **_: Any) -> tuple[dict[tuple[str, str], LiveAnswer], dict[str, Any]]:
        answers = {(r.source, r.prompt): LiveAnswer(text=r.gold[0], seconds=0.5) for r in requests}
        return answers, {"model": "fake", "engine_dtype": "none", "seconds": 1.0}

    monkeypatch.setattr(cache_live, "answer_with_engine", engine)
    assert main(["bench", "cache-live", "--workload", "demo", "--demo-limit", "12", "--delta", "0.05",
                 "--out-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "budget_0.05" in printed and "no_cache" in printed
    data = json.loads((tmp_path / "cache_live_demo.json").read_text())
    assert data["requests"] == 12 and data["rows"][0]["model_calls"] == 12
    with pytest.raises(SystemExit):
        main(["bench", "cache-live", "--delta", "0.7"])


def test_answers_file_is_reused_without_starting_an_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import asdict

    requests = _requests()
    path = tmp_path / "answers.jsonl"
    rows = [{"key": cache_live._answer_key("bundled SmolLM2-135M-Instruct", "float32", 64, r), "model_name": "m",
             "engine_dtype": "float32", "answer": asdict(LiveAnswer(text=f"a{i}", seconds=0.5))}
            for i, r in enumerate(requests)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    def no_engine(*_: Any, **__: Any) -> Any:
        raise AssertionError("every answer was in the file: no engine may start")

    monkeypatch.setattr(cache_live, "_generate", no_engine)
    answers, info = cache_live.answer_with_engine(requests, dtype="float32", answers_file=path)
    assert answers[("demo", STREAM[0][0])].text == "a0" and info["model"] == "m"
    assert info["seconds"] == pytest.approx(0.5 * len({r.prompt for r in requests}))
    with pytest.raises(AssertionError, match="no engine"):  # another max_tokens is another answer
        cache_live.answer_with_engine(requests, dtype="float32", max_tokens=32, answers_file=path)
