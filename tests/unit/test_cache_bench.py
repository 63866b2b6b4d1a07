"""``bench cache``: argument validation, the duplicate ground truth, and a tiny end-to-end run.

The run uses a bag-of-words embedder and a hand-set calibration, so it needs no model and stays
fast; the real numbers come from ``lean-inference bench cache`` (see BENCHMARKS.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lean_benchmarks.cache_bench as cache_bench
from lean_benchmarks._cache_load import adversarial_pairs_path, percentile_ms
from lean_benchmarks.cache_bench import _Groups, run_cache_bench
from lean_cli import main
from lean_core.cache.calibrate import LabelledPair
from lean_core.cache.pair_features import FEATURE_NAMES
from lean_core.cache.verifier import Calibration, SemanticVerifier
from lean_core.embeddings import Embedder
from lean_core.errors import InvalidParameterError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROW_KEYS = {"dataset", "method", "pairs", "precision", "precision_judged", "recall", "false_hit_rate", "p50_lookup_ms",
            "p99_lookup_ms", "served", "served_true", "served_false", "exact_hits", "by_kind"}


class BagOfWords(Embedder):
    """Hashed bag-of-words vectors: shared words make prompts near, as a sentence embedder would."""

    dim = 64

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> Any:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, hashlib.sha256(word.encode()).digest()[0] % (self.dim - 1)] += 1.0
            out[i, -1] = 0.1
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _verifier(trained_on: tuple[str, ...] = ("qqp_pairs",)) -> SemanticVerifier:
    n = len(FEATURE_NAMES)
    weights = [0.0] * n
    weights[0] = 12.0  # serve on similarity alone (the vetoes still apply)
    return SemanticVerifier(Calibration(
        features=FEATURE_NAMES, mean=(0.0,) * n, scale=(1.0,) * n, weights=tuple(weights), intercept=-9.0,
        threshold=0.5, min_similarity=0.3, target_precision=0.95, embedding_model="bag-of-words",
        trained_on=trained_on))


def _write(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# -- validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["bench", "cache", "--out", "x.json"],  # nothing to run
    ["bench", "cache", "--pairs", "p.jsonl"],  # --out is required
    ["bench", "cache", "--pairs", "p.jsonl", "--split", "calibration", "--out", "x.json"],
    ["bench", "cache", "--pairs", "p.jsonl", "--method", "redis", "--out", "x.json"],
    ["bench", "cache", "--pairs", "p.jsonl", "--threshold", "1.5", "--out", "x.json"],
    ["bench", "cache", "--pairs", "p.jsonl", "--limit", "0", "--out", "x.json"],
    ["bench", "cache", "--entries", "1000", "--postgres-dsn", "postgresql://x", "--out", "x.json"],
    ["bench", "cache", "--pairs", "p.jsonl", "--store", "postgres", "--out", "x.json"],
    ["bench", "cache", "--entries", "-5", "--out", "x.json"],
])
def test_cli_rejects_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs", [
    {},  # nothing to run
    {"pairs": ["p.jsonl"], "methods": ["lean", "lean"]},
    {"pairs": ["p.jsonl"], "methods": ["redis"]},
    {"pairs": ["p.jsonl"], "split": "calibration"},
    {"pairs": ["p.jsonl"], "limit": 0},
    {"pairs": ["p.jsonl"], "threshold": 0.0},
    {"entries": [0]},
    {"entries": [10], "store": "redis"},
])
def test_run_rejects_bad_parameters(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameterError):
        run_cache_bench(embedder=BagOfWords(), verifier=_verifier(), show_progress=False, **kwargs)  # type: ignore[arg-type]


def test_missing_pairs_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="pairs"):
        run_cache_bench([tmp_path / "absent.jsonl"], embedder=BagOfWords(), verifier=_verifier(),
                        show_progress=False)


# -- ground truth and helpers ---------------------------------------------------------------------
def test_duplicate_groups_are_transitive_and_normalised() -> None:
    groups = _Groups([LabelledPair("How do I boil an egg?", "How to boil an egg?", 1),
                      LabelledPair("How to boil an egg?", "Egg boiling steps?", 1),
                      LabelledPair("How do I boil an egg?", "How do I fry an egg?", 0)])
    assert groups.same("Egg boiling steps?", "How do I boil an egg?")
    assert groups.same("How  do I boil an egg? ", "How do I boil an egg?")  # normalisation only
    assert not groups.same("How do I fry an egg?", "How do I boil an egg?")
    assert groups.labelled("How do I fry an egg?", "How do I boil an egg?")
    assert not groups.labelled("Egg boiling steps?", "How do I boil an egg?")


def test_percentiles() -> None:
    assert percentile_ms([], 50) == 0.0
    assert percentile_ms([0.001, 0.002, 0.003], 50) == pytest.approx(2.0)
    assert percentile_ms([0.001 * k for k in range(1, 101)], 99) == pytest.approx(99.01)


def test_adversarial_file_is_packaged_and_well_formed() -> None:
    rows = [json.loads(line) for line in adversarial_pairs_path().read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 200
    assert all(set(r) == {"text_a", "text_b", "label", "kind"} and r["label"] in (0, 1) for r in rows)
    assert sum(r["kind"] == "paraphrase" and r["label"] == 1 for r in rows) >= 80
    kinds = {r["kind"] for r in rows if r["label"] == 0}
    assert {"role_swap", "number", "entity", "entity_lowercase", "negation", "unit", "date"} <= kinds
    assert len({(r["text_a"], r["text_b"]) for r in rows}) == len(rows)


# -- a tiny run -----------------------------------------------------------------------------------
PAIRS: list[dict[str, Any]] = [
    {"text_a": "How do I boil an egg?", "text_b": "How do I boil an egg?", "label": 1, "kind": "paraphrase"},
    {"text_a": "What is the capital of France?", "text_b": "What is the capital of Germany?", "label": 0,
     "kind": "entity"},
    {"text_a": "Are cats afraid of tigers?", "text_b": "Are tigers afraid of cats?", "label": 0, "kind": "role_swap"},
    {"text_a": "What is 15% of 80?", "text_b": "What is 15% of 90?", "label": 0, "kind": "number"},
    {"text_a": "How can I reset my router quickly?", "text_b": "How can I quickly reset my router?", "label": 1,
     "kind": "paraphrase"},
    {"text_a": "Give me a recipe for pancakes.", "text_b": "Give me a recipe for pancakes please.", "label": 1,
     "kind": "paraphrase"},
    {"text_a": "Why is the sky blue?", "text_b": "Why is the ocean salty?", "label": 0, "kind": "topic"},
    {"text_a": "Suggest a name for a puppy.", "text_b": "Suggest a name for my puppy.", "label": 1,
     "kind": "paraphrase"},
]
FILLER: list[dict[str, Any]] = [{"text_a": f"Tell me fact number {k} about volcano {k * 7}.", "text_b": f"What is trivia item {k} "
           f"concerning glacier {k * 3}?", "label": 0, "kind": "topic"} for k in range(12)]


def test_tiny_run_writes_json_and_png(tmp_path: Path) -> None:
    data = _write(tmp_path / "tiny_pairs.jsonl", PAIRS + FILLER)
    out = tmp_path / "results" / "cache.json"
    embedder = BagOfWords()
    result = run_cache_bench([data], embedder=embedder, verifier=_verifier(), out=out, show_progress=False)

    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    saved = json.loads(out.read_text())
    assert saved["benchmark"] == "cache"
    assert saved["cosine_threshold"] == 0.9
    assert saved["methods"] == ["lean", "gptcache", "threshold"]
    [dataset] = saved["datasets"]
    assert dataset == {"dataset": "tiny_pairs", "path": str(data), "split": "all", "used_for_calibration": False,
                       "pairs": 20, "positives": 4, "negatives": 16, "cached_prompts": 20}
    rows = {r["method"]: r for r in saved["pairs"]}
    assert set(rows) == {"lean", "gptcache", "threshold"}
    for row in rows.values():
        assert ROW_KEYS <= set(row)
        assert row["pairs"] == 20
        assert 0.0 <= row["recall"] <= 1.0 and 0.0 <= row["false_hit_rate"] <= 1.0
        assert row["p99_lookup_ms"] >= row["p50_lookup_ms"] > 0.0
        assert row["served"] == row["served_true"] + row["served_false"]
        assert sum(k["pairs"] for k in row["by_kind"]) == 20
        assert row["exact_hits"] >= 1  # the identical pair
    lean = rows["lean"]
    # The vetoes hold whatever the similarity: no entity, role-swap or number false hit.
    kinds = {k["kind"]: k for k in lean["by_kind"]}
    assert kinds["entity"]["served_false"] == kinds["role_swap"]["served_false"] == 0
    assert kinds["number"]["served_false"] == 0
    assert kinds["paraphrase"]["label"] == 1 and kinds["topic"]["label"] == 0
    assert lean["rejected_candidates"] > 0 and lean["rejection_reasons"]
    # The threshold method serves the role swap (bag-of-words cosine 1.0): the harness sees it.
    assert {k["kind"]: k for k in rows["threshold"]["by_kind"]}["role_swap"]["served_false"] == 1
    assert any(s["query"] == "Are tigers afraid of cats?" for s in rows["threshold"]["false_hit_samples"])
    assert result.calibration is not None and result.calibration.trained_on == ["qqp_pairs"]


def test_calibration_corpora_default_to_the_held_out_half(tmp_path: Path) -> None:
    rows = PAIRS + FILLER
    data = _write(tmp_path / "qqp_pairs.jsonl", rows)
    result = run_cache_bench([data], methods=["threshold"], embedder=BagOfWords(), verifier=_verifier(),
                             show_progress=False)
    [dataset] = result.datasets
    assert dataset.used_for_calibration and dataset.split == "held_out"
    from lean_core.cache.calibrate import is_calibration_pair

    assert dataset.pairs == sum(not is_calibration_pair(r["text_a"], r["text_b"]) for r in rows)
    everything = run_cache_bench([data], methods=["threshold"], split="all", embedder=BagOfWords(),
                                 verifier=_verifier(), show_progress=False)
    assert everything.datasets[0].pairs == len(rows)


def test_stream_and_scale(tmp_path: Path) -> None:
    prompts = ["continue", "How do I boil an egg?", "continue", "How do I boil an egg ?", "Write a haiku.",
               "How do I boil an egg?"]
    stream = _write(tmp_path / "stream.jsonl", [{"conversation_id": str(i), "prompt": p} for i, p in enumerate(prompts)])
    out = tmp_path / "load.json"
    result = run_cache_bench(stream=stream, entries=[150], embedder=BagOfWords(), verifier=_verifier(),
                             out=out, show_progress=False)
    s = result.stream
    assert s is not None
    assert (s.lookups, s.exact_hits, s.semantic_hits, s.misses) == (6, 2, 1, 3)
    assert s.hit_rate == pytest.approx(0.5)
    [sample] = s.semantic_samples
    assert (sample.query, sample.served_prompt) == ("How do I boil an egg ?", "How do I boil an egg?")
    assert s.semantic_similarity_bands == {"0.9-1.0": 1}
    probes = {row.probe: row for row in result.scale}
    assert set(probes) == {"exact_hit", "paraphrase", "miss"}
    assert all(row.entries == 150 and row.store == "sqlite" for row in result.scale)
    assert probes["exact_hit"].exact_hits == probes["exact_hit"].lookups
    saved = json.loads(out.read_text())
    assert saved["stream"]["semantic_samples"][0]["served_prompt"] == "How do I boil an egg?"
    assert len(saved["scale"]) == 3
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC


def test_cli_runs_and_prints_a_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cache_bench, "run_cache_bench",
                        partial(run_cache_bench, embedder=BagOfWords(), verifier=_verifier(), show_progress=False))
    data = _write(tmp_path / "tiny_pairs.jsonl", PAIRS)
    out = tmp_path / "cli.json"
    assert main(["bench", "cache", "--pairs", str(data), "--method", "lean", "--method", "threshold",
                 "--threshold", "0.95", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tiny_pairs (all, 8 pairs" in printed and "lean" in printed and "threshold" in printed
    saved = json.loads(out.read_text())
    assert saved["methods"] == ["lean", "threshold"] and saved["cosine_threshold"] == 0.95
