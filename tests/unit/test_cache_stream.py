"""``bench cache-stream``: the labelled stream builder and the replay, on tiny files.

A bag-of-words embedder and a hand-set calibration keep it fast and model-free (as in
test_cache_bench.py); the error-bounded cache is the real ``ResponseCache(max_error_rate=...)``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import lean_core.embeddings
from lean_benchmarks._cache_methods import build_method
from lean_benchmarks.cache_stream import (
    HARD_VETO_KINDS,
    LabelOracle,
    build_labelled_stream,
    replay_stream,
    run_cache_stream_bench,
)
from lean_cli import main
from lean_core.cache.normalize import normalize_prompt
from lean_core.errors import InvalidParameterError
from tests.unit.test_cache_bench import BagOfWords, _verifier

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PAIRS = [
    {"text_a": "How do I boil an egg?", "text_b": "What is the way to boil an egg?", "label": 1, "kind": "paraphrase"},
    {"text_a": "What is the way to boil an egg?", "text_b": "How can I boil an egg?", "label": 1, "kind": "paraphrase"},
    {"text_a": "How do I boil 2 eggs at once?", "text_b": "How do I boil 3 eggs at once?", "label": 0, "kind": "number"},
    {"text_a": "Is black coffee bad for your teeth?", "text_b": "Is black coffee not bad for your teeth?", "label": 0,
     "kind": "negation"},
    {"text_a": "What is the capital city of France?", "text_b": "What is the capital city of Germany?", "label": 0,
     "kind": "entity"},
    {"text_a": "Where can I buy cheap train tickets?", "text_b": "Where do I buy cheap train tickets?", "label": 1,
     "kind": "paraphrase"},
]


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS), encoding="utf-8")
    return path


def test_stream_is_seeded_and_clusters_follow_the_labels(pairs_file: Path) -> None:
    first = build_labelled_stream([pairs_file], seed=3, occurrences=(3, 6))
    again = build_labelled_stream([pairs_file], seed=3, occurrences=(3, 6))
    other = build_labelled_stream([pairs_file], seed=4, occurrences=(3, 6))
    assert first.prompts == again.prompts
    assert [p.prompt for p in other.prompts] != [p.prompt for p in first.prompts]
    cluster = {normalize_prompt(p.prompt): p.cluster for p in first.prompts}
    # Duplicates share a cluster, transitively; look-alikes never do.
    assert cluster["How do I boil an egg?"] == cluster["What is the way to boil an egg?"] == \
        cluster["How can I boil an egg?"]
    assert cluster["How do I boil 2 eggs at once?"] != cluster["How do I boil 3 eggs at once?"]
    assert cluster["What is the capital city of France?"] != cluster["What is the capital city of Germany?"]
    assert len(cluster) == 11 and first.clusters == 8
    counts = Counter(p.cluster for p in first.prompts)
    members = Counter(cluster.values())
    assert all(max(3, members[c]) <= n <= max(6, members[c]) for c, n in counts.items())
    assert first.look_alikes[("How do I boil 3 eggs at once?", "How do I boil 2 eggs at once?")] == "number"
    assert {p.kind for p in first.prompts} == {"duplicate", "number", "negation", "entity"}


def test_calibration_corpora_give_their_held_out_half(tmp_path: Path) -> None:
    from lean_core.cache.calibrate import is_calibration_pair

    rows: list[dict[str, Any]] = [{"text_a": f"Question number {i} about topic {i}?", "text_b": f"Asking about topic {i}, question {i}?",
             "label": i % 2} for i in range(40)]
    path = tmp_path / "qqp_pairs.jsonl"  # the stem of a calibration corpus
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    stream = build_labelled_stream([path], pairs_per_file=5)
    assert stream.sources[0].split == "held_out" and stream.sources[0].pairs == 5
    held_out = {t for r in rows if not is_calibration_pair(r["text_a"], r["text_b"]) for t in (r["text_a"], r["text_b"])}
    assert {p.prompt for p in stream.prompts} <= held_out


def test_builder_validates_and_copies_nothing(pairs_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    build_labelled_stream([pairs_file])
    assert sorted(tmp_path.rglob("*")) == before  # built in memory: no file written
    with pytest.raises(InvalidParameterError, match="occurrences"):
        build_labelled_stream([pairs_file], occurrences=(4, 2))
    with pytest.raises(InvalidParameterError, match="pairs"):
        build_labelled_stream([])
    with pytest.raises(InvalidParameterError, match="split"):
        build_labelled_stream([pairs_file], split="train")


def test_replay_counts_hits_errors_and_near_misses(pairs_file: Path) -> None:
    stream = build_labelled_stream([pairs_file], seed=1, occurrences=(4, 4))
    embedder = BagOfWords()
    method, cleanup = build_method("threshold", embedder=embedder, threshold=0.6)
    try:
        import numpy as np

        method.fill([], np.zeros((0, BagOfWords.dim), dtype=np.float32))
        row, curve = replay_stream(stream, method, name="threshold")
    finally:
        cleanup()
    assert row.lookups == len(stream.prompts) == curve.positions[-1]
    assert row.hits == row.exact_hits + row.semantic_hits == curve.hits[-1]
    assert row.semantic_hits == row.semantic_correct + row.semantic_wrong
    assert row.semantic_wrong > 0 and row.observed_error_rate == pytest.approx(row.semantic_wrong / row.semantic_hits)
    # A raw cosine serves look-alikes of the hard kinds; they are counted as such.
    assert row.hard_veto_near_misses_served > 0
    assert set(row.wrong_by_kind) <= HARD_VETO_KINDS | {"unlabelled", "look-alike"}
    assert row.explorations == 0


def test_side_by_side_run_with_the_error_bounded_cache(pairs_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache_stream_tiny.json"
    stream = build_labelled_stream([pairs_file], seed=2, occurrences=(5, 8))
    result = run_cache_stream_bench(stream=stream, deltas=(0.05,), methods=("lean_static", "threshold"),
                                    threshold=0.6, embedder=BagOfWords(), verifier=_verifier(),
                                    out=out, show_progress=False)
    rows = {r.method: r for r in result.rows}
    assert list(rows) == ["lean_delta_0.05", "lean_static", "threshold"]
    ours = rows["lean_delta_0.05"]
    assert ours.max_error_rate == 0.05
    assert ours.hard_veto_near_misses_served == 0 and rows["lean_static"].hard_veto_near_misses_served == 0
    assert ours.explorations == result.curves[0].explorations[-1]
    assert ours.cache_stats["lookups"] == len(stream.prompts)
    assert result.targets["hard_veto_near_misses_served"] == {"lean_delta_0.05": 0}
    assert result.semantic_opportunities == 3  # the two other egg questions, the other ticket question
    data = json.loads(out.read_text())
    assert data["benchmark"] == "cache-stream" and len(data["curves"]) == 3
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    # Only a few wrong-hit samples quote the data, never the stream itself.
    quoted = sum(out.read_text().count(json.dumps(p.prompt)) for p in stream.prompts)
    assert quoted <= sum(len(r.wrong_samples) * 2 for r in result.rows) * 8


def test_label_oracle_counts_comparisons() -> None:
    oracle = LabelOracle()
    assert oracle("c1", "c1") and not oracle.equivalent("c1", "c2")
    assert (oracle.calls, oracle.not_equivalent) == (2, 1)


def test_cli_cache_stream(pairs_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(lean_core.embeddings, "default_embedder", BagOfWords)
    out = tmp_path / "cli.json"
    written = tmp_path / "stream.jsonl"
    assert main(["bench", "cache-stream", "--pairs", str(pairs_file), "--delta", "0.02", "--method", "threshold",
                 "--occurrences", "2-3", "--seed", "5", "--write-stream", str(written), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "lean_delta_0.02" in printed and "threshold" in printed
    rows = [json.loads(line) for line in written.read_text().splitlines()]
    assert {"prompt", "cluster", "source", "kind"} <= set(rows[0])
    assert [r["method"] for r in json.loads(out.read_text())["rows"]] == ["lean_delta_0.02", "threshold"]
    with pytest.raises(SystemExit):
        main(["bench", "cache-stream", "--delta", "0.7", "--out", str(out)])


def test_real_answers_and_a_real_equivalence_check_can_replace_the_labels(pairs_file: Path) -> None:
    from lean_core.cache.answer_equivalence import NormalizedExactMatch

    stream = build_labelled_stream([pairs_file], seed=2, occurrences=(5, 8))
    asked: list[str] = []

    def model(item: Any) -> str:  # stands in for a model call: one answer per cluster, reworded by case
        asked.append(item.prompt)
        return f"The answer of {item.cluster}." if len(asked) % 2 else f"the ANSWER of {item.cluster}"

    result = run_cache_stream_bench(stream=stream, deltas=(0.05,), methods=("threshold",), threshold=0.6,
                                    embedder=BagOfWords(), verifier=_verifier(), answer=model,
                                    answer_equivalence=NormalizedExactMatch(), show_progress=False)
    distinct = {normalize_prompt(p.prompt) for p in stream.prompts}
    assert len(asked) == len(set(asked)) <= len(distinct)  # each prompt answered once, shared by the methods
    ours, threshold = result.rows
    assert ours.explorations == ours.cache_stats["explorations"]
    assert ours.hard_veto_near_misses_served == 0 and threshold.hard_veto_near_misses_served > 0
