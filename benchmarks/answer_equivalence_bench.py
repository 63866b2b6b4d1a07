"""``lean-inference bench answer-equivalence``: how often each answer-equivalence check is wrong.

Labelled answer pairs (JSONL ``{cached, fresh, label, kind}``; label 1 = the same answer; default
the hand-written ``data/answer_equivalence_pairs.jsonl``: short answers with case/punctuation/
article changes and paraphrased sentences as positives, changed numbers, entities, negation,
antonyms/units/dates and unrelated answers as negatives) are judged by every check of
:mod:`lean_core.cache.answer_equivalence`. Per check:

* ``false_equivalence_rate``: label-0 pairs judged equivalent / label-0 pairs (the error that
  matters: it teaches an error-bounded cache to serve a wrong answer);
* ``false_difference_rate``: label-1 pairs judged different / label-1 pairs (costs exploration
  calls, never a wrong answer);
* per kind, the share judged equivalent.

A judge model is not measured here (no judge model is bundled); measure one by passing
``checks={"judge": JudgeEquivalence(model)}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from lean_core.cache.answer_equivalence import (
    AnswerEquivalence,
    EmbeddingEquivalence,
    FactsAgree,
    NormalizedExactMatch,
    default_answer_equivalence,
)
from lean_core.errors import InvalidParameterError

if TYPE_CHECKING:
    from lean_core.embeddings import Embedder

__all__ = ["AnswerPair", "EquivalenceRow", "answer_pairs_path", "load_answer_pairs", "run_answer_equivalence_bench"]


@dataclass(frozen=True)
class AnswerPair:
    cached: str
    fresh: str
    label: int
    kind: str


@dataclass
class EquivalenceRow:
    check: str
    pairs: int
    false_equivalence_rate: float
    false_equivalences: int
    negatives: int
    false_difference_rate: float
    false_differences: int
    positives: int
    mean_ms: float
    equivalent_share_by_kind: dict[str, float] = field(default_factory=dict)
    false_equivalence_samples: list[tuple[str, str, str]] = field(default_factory=list)


def answer_pairs_path() -> Path:
    """The hand-written answer pairs shipped with the benchmarks."""
    return Path(str(resources.files("lean_benchmarks") / "data" / "answer_equivalence_pairs.jsonl"))


def load_answer_pairs(path: str | Path) -> list[AnswerPair]:
    source = Path(path)
    if not source.is_file():
        raise InvalidParameterError("pairs", allowed="an existing JSONL file of answer pairs", received=str(path))
    pairs = []
    with source.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                pairs.append(AnswerPair(str(raw["cached"]), str(raw["fresh"]), int(raw["label"]),
                                        str(raw.get("kind", f"label_{raw['label']}"))))
            except (ValueError, KeyError, TypeError) as exc:
                raise InvalidParameterError("pairs", allowed="JSONL rows {cached, fresh, label[, kind]}",
                                            received=f"{source}:{number}: {exc}") from exc
    return pairs


def default_checks(embedder: Embedder | None = None) -> dict[str, AnswerEquivalence]:
    """The checks measured by default, by name."""
    return {"normalized_exact": NormalizedExactMatch(), "embedding_0.9": EmbeddingEquivalence(embedder=embedder),
            "embedding_0.8": EmbeddingEquivalence(threshold=0.8, embedder=embedder), "facts_agree": FactsAgree(),
            "default_chain": default_answer_equivalence(embedder=embedder),
            "default_chain_0.85": default_answer_equivalence(embedder=embedder, threshold=0.85),
            "default_chain_0.8": default_answer_equivalence(embedder=embedder, threshold=0.8)}


def run_answer_equivalence_bench(path: str | Path | None = None, *,
                                 checks: Mapping[str, AnswerEquivalence] | None = None,
                                 embedder: Embedder | None = None, out: Path | None = None) -> list[EquivalenceRow]:
    """Judge every pair with every check; rows in ``checks`` order, written to ``out`` (JSON) if given."""
    pairs = load_answer_pairs(path if path is not None else answer_pairs_path())
    chosen = dict(checks) if checks is not None else default_checks(embedder)
    rows = []
    for name, check in chosen.items():
        check.equivalent("warm-up", "warm up")  # loads what the first call would
        verdicts, seconds = [], 0.0
        for pair in pairs:
            started = time.perf_counter()
            verdicts.append(check.equivalent(pair.cached, pair.fresh))
            seconds += time.perf_counter() - started
        negatives = [v for p, v in zip(pairs, verdicts, strict=True) if p.label == 0]
        positives = [v for p, v in zip(pairs, verdicts, strict=True) if p.label == 1]
        kinds: dict[str, list[bool]] = {}
        for pair, verdict in zip(pairs, verdicts, strict=True):
            kinds.setdefault(pair.kind, []).append(verdict)
        rows.append(EquivalenceRow(
            check=name, pairs=len(pairs), false_equivalences=sum(negatives), negatives=len(negatives),
            false_equivalence_rate=sum(negatives) / len(negatives) if negatives else 0.0,
            false_differences=len(positives) - sum(positives), positives=len(positives),
            false_difference_rate=(len(positives) - sum(positives)) / len(positives) if positives else 0.0,
            mean_ms=1000.0 * seconds / max(len(pairs), 1),
            equivalent_share_by_kind={k: sum(v) / len(v) for k, v in sorted(kinds.items())},
            false_equivalence_samples=[(p.kind, p.cached, p.fresh) for p, v in zip(pairs, verdicts, strict=True)
                                       if p.label == 0 and v][:10]))
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"benchmark": "answer-equivalence", "pairs": str(path or answer_pairs_path()),
                                   "date": time.strftime("%Y-%m-%d"), "rows": [asdict(r) for r in rows]},
                                  indent=2) + "\n", encoding="utf-8")
    return rows
