"""How much answer retention whole-unit selection can reach at a given budget, at best.

A selector that keeps whole sentences (or clauses) can keep an answer only if some sentence
(clause) that holds the answer fits in the budget. This module measures that ceiling with the
answers in hand (an oracle no compressor has): for each answerable item, the smallest unit
holding a gold answer, counted in the target model's tokens, against ``target_ratio`` x the
context's tokens, widened by the ±20 % band that fixed ratios are honoured within. A retention
target above the ceiling cannot be met by choosing better units; only cutting inside them can.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from lean_benchmarks.qa_datasets import Split, load_items
from lean_core.compression.segment import Unit, split_clauses, split_sentences
from lean_core.errors import InvalidParameterError
from lean_core.tokens import count_tokens

__all__ = ["CeilingRow", "unit_ceiling"]

Granularity = Literal["sentence", "clause"]
_SPLITTERS = {"sentence": split_sentences, "clause": split_clauses}
_BAND = 1.2
"""A fixed ratio is honoured within ±20 %: the most a selector may keep is 1.2 x the share."""


@dataclass(frozen=True)
class CeilingRow:
    """The ceiling of one (dataset, granularity, target ratio)."""

    dataset: str
    granularity: Granularity
    target_ratio: float
    answerable_items: int
    reachable_items: int
    """Items whose smallest answer-holding unit fits in ``target_ratio`` x 1.2 of the context."""
    ceiling: float
    """``reachable_items / answerable_items``: the best answer retention whole units allow."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _smallest_answer_unit(units: Sequence[Unit], answers: Sequence[str], model: str) -> int | None:
    sizes = [count_tokens(u.text, model).tokens for u in units if any(a and a in u.text for a in answers)]
    return min(sizes, default=None)


def unit_ceiling(path: str | Path, *, ratios: Sequence[float] = (0.33, 0.2), split: Split = "all",
                 limit: int | None = None, target_model: str = "gpt-4o",
                 granularities: Sequence[Granularity] = ("sentence", "clause")) -> list[CeilingRow]:
    """The whole-unit retention ceiling of each ratio and granularity on one QA file (the items
    the compression bench scores with the same ``split`` and ``limit``)."""
    for ratio in ratios:
        if not 0.0 < ratio <= 1.0:
            raise InvalidParameterError("ratios", allowed="shares in (0, 1]", received=ratio)
    for granularity in granularities:
        if granularity not in _SPLITTERS:
            raise InvalidParameterError("granularities", allowed=sorted(_SPLITTERS), received=granularity)
    _, items = load_items(path, split=split, limit=limit)
    answerable = [item for item in items if not item.impossible and item.answers]
    dataset = Path(path).stem
    rows = []
    for granularity in granularities:
        smallest: list[tuple[int, int | None]] = []
        for item in answerable:
            context = item.context if isinstance(item.context, str) else "\n\n".join(item.context)
            units = _SPLITTERS[granularity](context, [])
            smallest.append((count_tokens(context, target_model).tokens,
                             _smallest_answer_unit(units, item.answers, target_model)))
        for ratio in ratios:
            reachable = sum(1 for total, size in smallest if size is not None and size <= ratio * _BAND * total)
            rows.append(CeilingRow(dataset=dataset, granularity=granularity, target_ratio=ratio,
                                   answerable_items=len(answerable), reachable_items=reachable,
                                   ceiling=reachable / len(answerable) if answerable else 0.0))
    return rows
