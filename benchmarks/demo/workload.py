"""The built-in demo workload: a small knowledge base and a question stream in arrival order.

The knowledge base is the passenger handbook of Kestrel Coast Rail, a fictional regional rail
company (24 documents with repeated disclaimers). The stream mixes new questions, repeats,
paraphrases and lookalikes (same words, different fact) from two tenants, so that retrieval,
compression and a verified semantic cache all have real work. ``answer_is_correct`` scores a
model's answer against the short gold strings.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lean_core.errors import InvalidParameterError

__all__ = [
    "DEFAULT_PASSAGES",
    "DEFAULT_QUESTIONS",
    "KnowledgeDoc",
    "QuestionKind",
    "StreamQuestion",
    "WorkloadFileError",
    "answer_is_correct",
    "builtin_kb_path",
    "builtin_questions_path",
    "expected_cache_hits",
    "load_demo_kb",
    "load_demo_questions",
]

DEFAULT_QUESTIONS = 64
"""The demo asks the first 64 questions of the built-in stream by default (about 5 minutes on a
2-core CPU, every kind of question included); ``limit=None`` (CLI ``--limit all``) asks all 92
(8-11 minutes)."""
DEFAULT_PASSAGES = 3
"""Retrieved passages per question. A fourth adds a gold answer to 1 of the 92 questions' contexts
(89 vs 88; none among the first 64) and a third more prompt tokens to every row."""

QuestionKind = Literal["new", "repeat", "paraphrase", "lookalike"]
"""How a question relates to the stream before it: ``new`` and ``lookalike`` start a group
(a lookalike shares most words with an earlier question but asks another fact); ``repeat`` (same
text up to case, punctuation and spacing) and ``paraphrase`` (reworded) reuse an earlier group."""


class WorkloadFileError(InvalidParameterError):
    """A row of a workload file is malformed; the message names the file, line and field."""

    def __init__(self, path: Path, *, line: int, field: str, allowed: str, received: object) -> None:
        self.path = path
        self.line = line
        self.field = field
        super().__init__(f"{path.name} line {line} field {field!r}", allowed=allowed, received=received)


class KnowledgeDoc(BaseModel):
    """One knowledge-base document."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    """Stable document id, e.g. ``kb-07``; questions cite it in ``doc_ids``."""
    title: str = Field(min_length=1)
    text: str = Field(min_length=1)
    """Plain text, paragraphs separated by a blank line."""


class StreamQuestion(BaseModel):
    """One question of the stream, with the gold answers and the documents that hold them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answers: tuple[str, ...] = Field(min_length=1)
    """Acceptable short answers; the first appears verbatim in a ``doc_ids`` document."""
    doc_ids: tuple[str, ...] = Field(min_length=1)
    group: str = Field(min_length=1)
    """Questions of one group have the same answer; a correct cache may serve one from another."""
    kind: QuestionKind
    tenant: str = Field(min_length=1)
    """Who asks; a cache must never serve one tenant's answer to another."""


_Row = TypeVar("_Row", KnowledgeDoc, StreamQuestion)


def builtin_kb_path() -> Path:
    """The bundled knowledge base (JSON Lines, one ``KnowledgeDoc`` per line)."""
    return Path(str(resources.files("lean_benchmarks.demo") / "data" / "demo_kb.jsonl"))


def builtin_questions_path() -> Path:
    """The bundled question stream (JSON Lines, one ``StreamQuestion`` per line, arrival order)."""
    return Path(str(resources.files("lean_benchmarks.demo") / "data" / "demo_questions.jsonl"))


def load_demo_kb(path: str | os.PathLike[str] | None = None) -> list[KnowledgeDoc]:
    """Read a knowledge-base file (default: the bundled one); document ids must be unique."""
    file = Path(path) if path is not None else builtin_kb_path()
    return [doc for _, doc in _read_rows(file, KnowledgeDoc)]


def load_demo_questions(
    path: str | os.PathLike[str] | None = None, *, limit: int | None = None
) -> list[StreamQuestion]:
    """Read a question stream (default: the bundled one) in arrival order.

    The whole file is checked: ids are unique, ``new``/``lookalike`` rows start a group and
    ``repeat``/``paraphrase`` rows reuse an earlier one. ``limit`` (>= 1, or None for all) keeps the
    first N rows; the bundled stream has repeats, paraphrases and lookalikes within its first 24.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidParameterError("limit", allowed="an integer >= 1 or None", received=limit)
    file = Path(path) if path is not None else builtin_questions_path()
    rows = _read_rows(file, StreamQuestion)
    seen: set[str] = set()
    for line, question in rows:
        starts_group = question.kind in ("new", "lookalike")
        if starts_group == (question.group in seen):
            allowed = ("a group not used earlier in the stream" if starts_group
                       else "a group that appears earlier in the stream")
            raise WorkloadFileError(file, line=line, field="group",
                                    allowed=f"for kind {question.kind!r}, {allowed}", received=question.group)
        seen.add(question.group)
    return [question for _, question in rows[:limit]]


def expected_cache_hits(questions: Sequence[StreamQuestion]) -> list[bool]:
    """For each question, whether a correct cache could serve it: True when an earlier question of
    the same tenant belongs to the same group (a tenant's first ask of a group must miss)."""
    seen: set[tuple[str, str]] = set()
    hits = []
    for question in questions:
        key = (question.tenant, question.group)
        hits.append(key in seen)
        seen.add(key)
    return hits


def answer_is_correct(answer: str, gold: Sequence[str]) -> bool:
    """True when one gold string occurs in ``answer`` as a whole run of normalised tokens.

    Normalisation ignores case, punctuation, spacing and the articles a/an/the; numbers are whole
    tokens compared by value ("1,300" equals "1300", "£9.00" equals "9", "05:42" equals "5:42"),
    so "130" does not match "1300" and "4.80" does not match "14.80".
    """
    tokens = _tokens(answer)
    for expected in gold:
        want = _tokens(expected)
        if want and any(tokens[i:i + len(want)] == want for i in range(len(tokens) - len(want) + 1)):
            return True
    return False


_ARTICLES = frozenset({"a", "an", "the"})
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[^\W\d_]+")


def _tokens(text: str) -> list[str]:
    text = _THOUSANDS.sub("", unicodedata.normalize("NFKC", text).casefold())
    return [_number(t) if t[0].isdigit() else t for t in _TOKEN.findall(text) if t not in _ARTICLES]


def _number(token: str) -> str:
    whole, _, fraction = token.partition(".")
    whole, fraction = whole.lstrip("0") or "0", fraction.rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


def _read_rows(file: Path, model: type[_Row]) -> list[tuple[int, _Row]]:
    """Validated rows with their 1-based line numbers; blank lines are skipped."""
    if not file.is_file():
        raise InvalidParameterError("workload file", allowed="an existing JSON Lines file", received=str(file))
    rows: list[tuple[int, _Row]] = []
    ids: set[str] = set()
    for line, text in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            row = model.model_validate(json.loads(text))
        except json.JSONDecodeError as exc:
            raise WorkloadFileError(file, line=line, field="<row>", allowed="a JSON object",
                                    received=text[:120]) from exc
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"]) or "<row>"
            received = "(missing)" if error["type"] == "missing" else error.get("input")
            raise WorkloadFileError(file, line=line, field=field, allowed=error["msg"].lower(),
                                    received=received) from exc
        if row.id in ids:
            raise WorkloadFileError(file, line=line, field="id", allowed="an id not used on an earlier line",
                                    received=row.id)
        ids.add(row.id)
        rows.append((line, row))
    if not rows:
        raise InvalidParameterError("workload file", allowed="at least one row", received=str(file))
    return rows

