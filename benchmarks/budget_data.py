"""Query sets for the output-budget benchmark and the length predictor's fit.

Reads ../shared/data files as they are (NQ-open, GSM8K, ShareGPT first prompts, MS MARCO queries)
and splits every set by a hash of the query text: the predictor is fitted on the "fit" half and
benchmarked on the "eval" half, so no benchmark query was ever seen by the fit.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["BudgetQuery", "Split", "gold_in_answer", "load_budget_queries", "split_of"]

Split = Literal["fit", "eval"]
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True, slots=True)
class BudgetQuery:
    question: str
    gold: tuple[str, ...]
    """Accepted answers (NQ aliases, GSM8K's final number); empty when the gold is unknown."""
    kind: Literal["short_answer", "math", "open"]
    source: str


def split_of(question: str) -> Split:
    digest = hashlib.sha256(question.strip().lower().encode("utf-8")).digest()
    return "fit" if digest[0] < 128 else "eval"


def _gsm8k_gold(answer: str) -> str:
    return answer.rsplit("####", 1)[-1].strip().replace(",", "")


def load_budget_queries(path: str | Path, *, split: Split | None = None, limit: int | None = None) -> list[BudgetQuery]:
    """Queries of one data file (format recognised from its name and rows), optionally one split."""
    path = Path(path)
    rows: list[BudgetQuery] = []
    if path.suffix == ".tsv":
        for line in path.read_text(encoding="utf-8").split("\n"):
            parts = line.split("\t", 1)
            if len(parts) == 2 and parts[1].strip():
                rows.append(BudgetQuery(parts[1].strip(), (), "open", path.stem))
    else:
        # split("\n"), not splitlines(): JSON strings may hold U+2028 and other line separators.
        for line in path.read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            item = json.loads(line)
            if "prompt" in item:  # ShareGPT first prompts
                text = str(item["prompt"]).strip()
                if text and len(text) < 4000:
                    rows.append(BudgetQuery(text, (), "open", path.stem))
            elif isinstance(item.get("answer"), str) and "####" in item["answer"]:
                rows.append(BudgetQuery(item["question"], (_gsm8k_gold(item["answer"]),), "math", path.stem))
            else:
                answers = item.get("answer") or item.get("answers") or []
                rows.append(BudgetQuery(item["question"], tuple(str(a) for a in answers), "short_answer", path.stem))
    if split is not None:
        rows = [r for r in rows if split_of(r.question) == split]
    return rows[:limit] if limit is not None else rows


def _normalise(text: str) -> str:
    text = text.lower().replace(",", "")
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(re.sub(r"[^\w\s.]", " ", text).split())


def gold_in_answer(query: BudgetQuery, answer: str) -> bool:
    """Short answers: a gold alias appears in the answer (normalised). Math: the last number of
    the answer equals the gold number (GSM8K's convention of a final numeric answer)."""
    if not query.gold:
        return False
    if query.kind == "math":
        numbers = _NUMBER.findall(answer.replace("$", ""))
        if not numbers:
            return False
        try:
            return float(numbers[-1].replace(",", "").rstrip(".")) == float(query.gold[0])
        except ValueError:
            return False
    text = _normalise(answer)
    return any(_normalise(g) and f" {_normalise(g)} " in f" {text} " for g in query.gold)
