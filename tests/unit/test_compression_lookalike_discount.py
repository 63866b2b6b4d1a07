"""Redundancy control across passages (``RelevanceScorer(redundancy_weight=..., redundancy_floor=...)``):
once a passage is drawn from, its look-alikes are discounted, so a fixed budget is not spent on
near-duplicates; passages that name each other's titles are hops of one chain and are exempt."""

from __future__ import annotations

import numpy as np
import pytest

from lean_core import InvalidParameterError
from lean_core.compression.segment import Unit, passage_heading, split_sentences
from lean_core.compression.select import RelevanceScorer

QUESTION = "Who was the head coach of the Harbourside Rovers during their 1998 season?"
SEASONS = [f"{year} Harbourside Rovers season: The {year} Harbourside Rovers season was the club's {nth} season in "
           f"the Coastal League. The Rovers finished {place} in the league table and played their home games at "
           "Gull Park." for year, nth, place in ((1998, "twelfth", "third"), (1999, "thirteenth", "fifth"),
                                                 (2000, "fourteenth", "second"), (2001, "fifteenth", "seventh"),
                                                 (1997, "eleventh", "fourth"))]
COACH = ("Ines Calloway: Ines Calloway is a former defender from Portmere. "
         "She was head coach of the Harbourside Rovers from 1996 to 1999, and later ran a sailing school.")
FILLER = [f"Lighthouse {k}: Lighthouse {k} stands on a rocky cape. Its lamp was electrified in the {k}0s." for k in (3, 4, 5)]
PASSAGES = [SEASONS[0], SEASONS[1], FILLER[0], SEASONS[2], COACH, SEASONS[3], FILLER[1], SEASONS[4], FILLER[2]]
COACH_INDEX = PASSAGES.index(COACH)
LOOK_ALIKES = [PASSAGES.index(s) for s in SEASONS[1:]]


def _units(passages: list[str]) -> list[Unit]:
    return [u for index, passage in enumerate(passages) for u in split_sentences(passage, [], passage=index)]


def _lead_score(units: list[Unit], scores: list[float], passage: int) -> float:
    return next(v for u, v in zip(units, scores, strict=True) if u.passage == passage)


def test_look_alike_passages_fall_below_a_distinct_passage_once_one_of_them_is_drawn() -> None:
    units = _units(PASSAGES)
    headings = [passage_heading(p) for p in PASSAGES]
    on = RelevanceScorer().score(units, question=QUESTION, headings=headings)
    off = RelevanceScorer(redundancy_weight=0.0).score(units, question=QUESTION, headings=headings)
    coach_lead_on, coach_lead_off = _lead_score(units, on, COACH_INDEX), _lead_score(units, off, COACH_INDEX)
    # Without the discount the other season pages' leads outrank the coach's own lead sentence ...
    assert all(_lead_score(units, off, p) > coach_lead_off for p in LOOK_ALIKES)
    # ... with it, every one of them falls below it; the best passage and the coach's lead are untouched.
    assert all(_lead_score(units, on, p) < coach_lead_on for p in LOOK_ALIKES)
    assert max(on) == max(off)
    assert coach_lead_on == pytest.approx(coach_lead_off)


def test_passages_that_name_each_other_are_not_look_alikes() -> None:
    passages = ["Alpha Works: Alpha Works makes clocks.", "Beta Works: Beta Works makes clocks too.",
                "Gamma Works: Gamma Works makes clocks, like Alpha Works."]
    units = _units(passages)
    headings = [passage_heading(p) for p in passages]
    same = np.ones(4) / 2.0  # three passages with one direction: look-alikes by their embeddings
    scores = [3.0, 2.0, 1.0]
    out = RelevanceScorer()._discount_lookalikes(units, scores, {0: same, 1: same, 2: same}, headings)
    assert out[0] == 3.0
    assert out[1] < 2.0  # a look-alike of the passage drawn first
    assert out[2] > out[1]  # Gamma names Alpha: a link, exempt from Alpha's look-alike discount
    off = RelevanceScorer(redundancy_weight=0.0).score(units, question="Who makes clocks?", headings=headings)
    assert len(off) == len(units)


@pytest.mark.parametrize(("kwargs", "parameter"), [
    ({"redundancy_weight": -1.0}, "redundancy_weight"), ({"redundancy_weight": float("inf")}, "redundancy_weight"),
    ({"redundancy_floor": 1.5}, "redundancy_floor"), ({"redundancy_floor": "high"}, "redundancy_floor"),
])
def test_bad_redundancy_settings_name_the_parameter(kwargs: dict[str, object], parameter: str) -> None:
    with pytest.raises(InvalidParameterError, match=parameter):
        RelevanceScorer(**kwargs)  # type: ignore[arg-type]
