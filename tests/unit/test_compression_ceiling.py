"""The whole-unit ceiling of the compression bench: an oracle bound computed from gold answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lean_benchmarks.compression_ceiling import unit_ceiling
from lean_core.errors import InvalidParameterError

_FILLER = " ".join(f"Sentence number {i} talks about the weather and the harbour in some detail." for i in range(9))


def _squad(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    path = tmp_path / "squad.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return path


def test_a_short_answer_sentence_fits_and_a_long_one_does_not(tmp_path: Path) -> None:
    short = f"The mayor is Ada. {_FILLER}"
    long = f"{_FILLER.replace('.', ',')} and the mayor, after a long and contested election, is Ada."
    path = _squad(tmp_path, [
        {"id": "a", "context": short, "question": "Who is the mayor?", "answers": ["Ada"], "is_impossible": False},
        {"id": "b", "context": long, "question": "Who is the mayor?", "answers": ["Ada"], "is_impossible": False},
        {"id": "c", "context": short, "question": "Who is king?", "answers": [], "is_impossible": True},
    ])
    rows = {(r.granularity, r.target_ratio): r for r in unit_ceiling(path, ratios=(0.2,))}
    sentence = rows[("sentence", 0.2)]
    assert sentence.answerable_items == 2  # the impossible item is not counted
    assert sentence.reachable_items == 1  # item b's only sentence is the whole context
    assert sentence.ceiling == pytest.approx(0.5)
    # Clauses split item b at its commas: the clause holding "Ada" is short enough.
    assert rows[("clause", 0.2)].reachable_items == 2


def test_bad_ratio_and_granularity_are_named(tmp_path: Path) -> None:
    path = _squad(tmp_path, [{"id": "a", "context": "x.", "question": "q?", "answers": ["x"]}])
    with pytest.raises(InvalidParameterError, match="ratios"):
        unit_ceiling(path, ratios=(1.5,))
    with pytest.raises(InvalidParameterError, match="granularities"):
        unit_ceiling(path, granularities=("word",))  # type: ignore[arg-type]
