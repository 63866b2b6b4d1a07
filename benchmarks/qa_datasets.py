"""The QA evaluation data the compression benchmark reads (SQuAD 2.0, NQ-open with BM25 hard
distractors, HotpotQA distractor, MiniLongBench), and gold-answer matching."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lean_benchmarks._bm25 import BM25
from lean_core.compression.base import ContextInput
from lean_core.errors import InvalidParameterError

__all__ = ["PASSAGE_SEPARATOR", "BenchItem", "DatasetKind", "Split", "build_nq_items", "contains_answer",
           "join_context", "load_items", "longbench_question", "normalize", "read_jsonl", "split_of"]

DatasetKind = Literal["squad", "nq", "hotpotqa", "longbench"]
Split = Literal["dev", "held_out", "all"]
SPLITS: tuple[Split, ...] = ("dev", "held_out", "all")


def split_of(kind: str, item_id: str) -> Split:
    """The half an item belongs to: "dev" (methods may be developed on it) or "held_out" (only
    reported), from a stable hash of its dataset kind and id, so every run and every machine
    agrees and the halves never depend on ``limit`` or file order."""
    digest = hashlib.sha256(f"{kind}:{item_id}".encode()).digest()
    return "dev" if digest[0] % 2 == 0 else "held_out"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise InvalidParameterError("split", allowed="'dev', 'held_out' or 'all'", received=split)
PASSAGE_SEPARATOR = "\n\n"


# -- data -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchItem:
    """One question with its context, as the compressors see it."""

    item_id: str
    context: str | tuple[str, ...]
    """One text, or passages whose boundaries matter."""
    question: str
    answers: tuple[str, ...]
    impossible: bool = False
    """SQuAD 2.0 ``is_impossible``: no answer exists in the context."""
    support: tuple[str, ...] = ()
    """HotpotQA supporting-fact sentences (must all survive)."""
    gold_position: int | None = None
    """NQ multi-passage contexts: index of the gold passage."""


# -- matching -------------------------------------------------------------------------------------
def normalize(text: str) -> str:
    """Lower-cased text with every whitespace run collapsed to one space."""
    return " ".join(text.lower().split())


def contains_answer(text: str, answers: Iterable[str]) -> bool:
    """True if any non-empty gold answer occurs in ``text`` (normalised), not inside a longer word.

    The word-boundary condition keeps short answers honest ("no" is not found in "north").
    """
    haystack = normalize(text)
    for answer in answers:
        needle = normalize(answer)
        if needle and re.search(rf"(?<![0-9a-z]){re.escape(needle)}(?![0-9a-z])", haystack):
            return True
    return False


def join_context(context: ContextInput) -> str:
    """The context as one text (passages separated by a blank line)."""
    return context if isinstance(context, str) else PASSAGE_SEPARATOR.join(context)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON Lines file (lines split at \\n only, so U+2028 inside a text is safe)."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _detect_kind(row: dict[str, Any], path: Path) -> DatasetKind:
    if "ctxs" in row:
        return "nq"
    if "supporting_facts" in row:
        return "hotpotqa"
    if "prompt" in row and "task" in row:
        return "longbench"
    if isinstance(row.get("context"), str) and "question" in row:
        return "squad"
    raise InvalidParameterError(
        "data file", allowed="SQuAD, NQ-open oracle, HotpotQA or MiniLongBench JSON Lines",
        received=f"{path} (fields {sorted(row)})")


def longbench_question(prompt: str) -> str:
    """The question of a LongBench prompt: the text after its last "Question:"/"Query:" marker
    (up to "Answer:"), else its last line that is not a bare label such as "Summary:"."""
    marker = max(prompt.rfind("Question:"), prompt.rfind("Query:"))
    if marker >= 0:
        tail = prompt[marker:].split(":", 1)[1]
        question = re.split(r"\n\s*Answer:", tail, maxsplit=1)[0].strip()
        if question:
            return question
    lines = [line.strip() for line in prompt.splitlines() if line.strip()]
    while lines and re.fullmatch(r"[A-Za-z ]{1,24}:", lines[-1]):
        lines.pop()
    return lines[-1] if lines else ""


def _squad_items(rows: list[dict[str, Any]]) -> list[BenchItem]:
    return [BenchItem(item_id=str(r.get("id", i)), context=r["context"], question=r["question"],
                      answers=tuple(a for a in r.get("answers", []) if a),
                      impossible=bool(r.get("is_impossible", False)))
            for i, r in enumerate(rows)]


def _hotpot_items(rows: list[dict[str, Any]]) -> list[BenchItem]:
    items = []
    for i, r in enumerate(rows):
        paragraphs = {title: sentences for title, sentences in r["context"]}
        support = tuple(paragraphs[title][k].strip() for title, k in r["supporting_facts"]
                        if title in paragraphs and 0 <= k < len(paragraphs[title])
                        and paragraphs[title][k].strip())
        items.append(BenchItem(
            item_id=str(r.get("_id", i)), question=r["question"], answers=(str(r["answer"]),),
            context=tuple(f"{title}: {''.join(sentences).strip()}" for title, sentences in r["context"]),
            support=support))
    return items


def _longbench_items(rows: list[dict[str, Any]]) -> list[BenchItem]:
    return [BenchItem(item_id=f"{r['task']}-{r['idx']}", context=r["prompt"],
                      question=longbench_question(r["prompt"]), answers=tuple(a for a in r["answers"] if a))
            for r in rows]


def _nq_passage(ctx: dict[str, Any]) -> str:
    return f"{ctx['title']}: {ctx['text']}".strip()


def _nq_gold(row: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in row["ctxs"] if c.get("isgold")), row["ctxs"][0])


def build_nq_items(rows: Sequence[dict[str, Any]], *, passages: int | None, limit: int | None = None,
                   seed: int = 0, split: Split = "all") -> list[BenchItem]:
    """NQ-open oracle items, one gold passage each; with ``passages=N``, N-passage contexts.

    Distractors for item i are the gold passages of the *other* items of ``rows`` (all of them,
    whatever ``limit``), ranked by BM25 against item i's question, skipping any that contains one
    of item i's gold answers (plain normalised substring, the strictest test) or repeats a passage
    already taken. The gold passage goes to position ``Random(seed * 1_000_003 + i).randrange(N)``.
    ``split`` keeps the items of one half (see :func:`split_of`) before ``limit`` applies; the
    distractor pool stays the whole file.
    """
    if passages is not None and passages < 1:
        raise InvalidParameterError("passages", allowed="a whole number >= 1", received=passages)
    _check_split(split)
    pool = [_nq_passage(_nq_gold(r)) for r in rows]
    wanted = [i for i in range(len(rows)) if split == "all" or split_of("nq", str(i)) == split]
    wanted = wanted if limit is None else wanted[:limit]
    index = BM25(pool) if passages is not None and passages > 1 else None
    items = []
    for i in wanted:
        row = rows[i]
        answers = tuple(a for a in row["answers"] if a)
        gold = pool[i]
        if index is None or passages is None:
            items.append(BenchItem(item_id=str(i), context=(gold,), question=row["question"],
                                   answers=answers, gold_position=0))
            continue
        needles = [normalize(a) for a in answers if normalize(a)]
        seen = {normalize(gold)}
        distractors: list[str] = []
        for j in index.rank(row["question"]):
            if len(distractors) == passages - 1:
                break
            text = normalize(pool[j])
            if j == i or text in seen or any(n in text for n in needles):
                continue
            seen.add(text)
            distractors.append(pool[j])
        position = random.Random(seed * 1_000_003 + i).randrange(len(distractors) + 1)
        context = (*distractors[:position], gold, *distractors[position:])
        items.append(BenchItem(item_id=str(i), context=context, question=row["question"],
                               answers=answers, gold_position=position))
    return items


def load_items(path: str | Path, *, passages: int | None = None, limit: int | None = None,
               seed: int = 0, split: Split = "all") -> tuple[DatasetKind, list[BenchItem]]:
    """The items of one data file (its kind detected from the fields); ``passages`` applies to
    NQ-style files only; ``split`` keeps one half by item id (:func:`split_of`), then ``limit``
    keeps the first N items."""
    _check_split(split)
    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError("data", allowed="an existing JSON Lines file", received=str(path))
    rows = read_jsonl(path)
    if not rows:
        raise InvalidParameterError("data", allowed="a non-empty JSON Lines file", received=str(path))
    kind = _detect_kind(rows[0], path)
    if kind == "nq":
        return kind, build_nq_items(rows, passages=passages, limit=limit, seed=seed, split=split)
    builders = {"squad": _squad_items, "hotpotqa": _hotpot_items, "longbench": _longbench_items}
    items = builders[kind](rows)
    if split != "all":
        items = [item for item in items if split_of(kind, item.item_id) == split]
    return kind, items if limit is None else items[:limit]


# -- the run --------------------------------------------------------------------------------------
