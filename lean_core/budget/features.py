"""Query features that predict how long an answer will be.

Question type (who/when/how many/why/...), the answer form it implies (a fact, a number, an
explanation, a list, code, long-form writing), what the user asked for (brevity, detail, "in 200
words", "5 ideas"), and the query's own size. Only these numbers are kept (in the ledger's length
history too), never the query text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["FEATURE_NAMES", "FEATURE_VERSION", "QueryFeatures", "extract_features", "requested_length_tokens"]

FEATURE_VERSION = "1"
"""Bumped whenever the feature vector changes, so stored histories are never mixed across versions."""

_QTYPES = ("who", "when", "where", "which", "what", "how_many", "why", "how", "yes_no", "imperative")
_FORMS = ("number", "word_problem", "explanation", "list", "code", "long_form", "summary", "translation")
FEATURE_NAMES: tuple[str, ...] = (
    "bias", "log_words", "log_numbers", "log_lines", "question_mark", "brevity_asked", "detail_asked",
    "log_items_asked", "brevity_instruction",
    *(f"q_{q}" for q in _QTYPES), *(f"form_{f}" for f in _FORMS),
    # A brevity instruction shortens a fact far more than a worked solution: one factor per form.
    "brevity_fact", *(f"brevity_{f}" for f in _FORMS),
)

_FACT_QTYPES = ("who", "when", "where", "which", "what")
_YES_NO = ("is", "are", "was", "were", "do", "does", "did", "can", "could", "will", "would", "should",
           "has", "have", "had", "shall", "may", "am")
_IMPERATIVE = ("write", "explain", "describe", "list", "give", "create", "generate", "make", "tell",
               "summarize", "summarise", "translate", "compose", "draft", "provide", "suggest", "design",
               "compare", "analyze", "analyse", "rewrite", "implement", "show", "help", "plan", "outline")
_FORM_WORDS: dict[str, tuple[str, ...]] = {
    "explanation": ("why", "explain", "describe", "how does", "how do", "how can", "difference between",
                    "compare", "what is the meaning", "pros and cons"),
    "list": ("list", "ideas", "examples", "steps", "tips", "ways", "options", "names of", "what are"),
    "code": ("code", "function", "python", "javascript", "sql", "script", "program", "regex", "class ",
             "implement", "bash", "java", "c++", "html", "css", "api"),
    "long_form": ("essay", "story", "article", "blog", "email", "letter", "poem", "report", "speech",
                  "cover letter", "script for", "lyrics", "outline"),
    "summary": ("summarize", "summarise", "summary", "tl;dr", "tldr"),
    "translation": ("translate", "translation", "in french", "in spanish", "in german", "in chinese"),
}
_BREVITY = ("brief", "briefly", "short", "concise", "one word", "one sentence", "in a sentence",
            "few words", "tl;dr", "just the", "only the")
_DETAIL = ("in detail", "detailed", "step by step", "step-by-step", "comprehensive", "thorough", "elaborate",
           "in depth", "in-depth", "full", "complete")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"\w+")
_MATH = re.compile(r"\b(?:how many|how much|how long|how old|how far|what percent|calculate|total|cost)\b")
_WORDS_ASKED = re.compile(r"\b(\d{2,5})\s*(?:-\s*)?words?\b")
_ITEMS_ASKED = re.compile(
    r"\b(\d{1,3})\s+(?:\w+\s+)?(?:sentences|paragraphs|bullet points|bullets|points|ideas|items|examples|"
    r"tips|ways|steps|questions|reasons|names|options|lines)\b")
_TOKENS_PER_WORD = 1.4
_WORD_PROBLEM_WORDS = 15
_TOKENS_PER_PARAGRAPH = 90


@dataclass(frozen=True, slots=True)
class QueryFeatures:
    """The feature vector of one query (see ``FEATURE_NAMES``) and the length it asks for, if any."""

    values: tuple[float, ...]
    requested_tokens: int | None
    """Tokens an explicit length request implies ("in 300 words", "3 paragraphs"); None if none."""

    def as_dict(self) -> dict[str, float]:
        return dict(zip(FEATURE_NAMES, self.values, strict=True))


def _has(text: str, words: tuple[str, ...]) -> bool:
    return any(re.search(r"(?<!\w)" + re.escape(w), text) for w in words)


def _question_type(text: str, first: str) -> str | None:
    if _MATH.search(text) and _NUMBER.search(text):
        return "how_many"
    for q in ("who", "when", "where", "which", "why"):
        if first == q or first.startswith(q + "'") or re.search(rf"\b{q}\b", text[:60]):
            return q
    if re.search(r"\bhow (?:many|much|long|old|far|often|big|tall)\b", text[:80]):
        return "how_many"
    if first == "how" or re.search(r"\bhow\b", text[:40]):
        return "how"
    if first == "what" or re.search(r"\bwhat\b", text[:40]):
        return "what"
    if first in _YES_NO:
        return "yes_no"
    if first in _IMPERATIVE or first in ("please", "can", "could"):
        return "imperative"
    return None


def requested_length_tokens(text: str) -> int | None:
    """Tokens implied by an explicit length request in ``text``, or None."""
    lowered = text.lower()
    match = _WORDS_ASKED.search(lowered)
    if match:
        return int(int(match.group(1)) * _TOKENS_PER_WORD)
    match = re.search(r"\b(\d{1,2})\s+paragraphs?\b", lowered)
    if match:
        return int(match.group(1)) * _TOKENS_PER_PARAGRAPH
    return None


def extract_features(query: str, *, brevity_instruction: bool = False) -> QueryFeatures:
    """Features of ``query`` (the last user turn); ``brevity_instruction``: whether the prompt asks
    for a brief answer on the user's behalf (the policy's brevity option)."""
    text = query.strip().lower()
    words = _WORD.findall(text)
    first = words[0] if words else ""
    qtype = _question_type(text, first)
    items = _ITEMS_ASKED.search(text)
    forms = {form: _has(text, kws) for form, kws in _FORM_WORDS.items()}
    forms["number"] = qtype == "how_many"
    forms["word_problem"] = forms["number"] and len(words) >= _WORD_PROBLEM_WORDS
    values = [
        1.0,
        math.log1p(len(words)),
        math.log1p(len(_NUMBER.findall(text))),
        math.log1p(text.count("\n")),
        1.0 if "?" in text else 0.0,
        1.0 if _has(text, _BREVITY) else 0.0,
        1.0 if _has(text, _DETAIL) else 0.0,
        math.log1p(int(items.group(1))) if items else 0.0,
        1.0 if brevity_instruction else 0.0,
        *(1.0 if qtype == q else 0.0 for q in _QTYPES),
        *(1.0 if forms[f] else 0.0 for f in _FORMS),
        1.0 if brevity_instruction and qtype in _FACT_QTYPES else 0.0,
        *(1.0 if brevity_instruction and forms[f] else 0.0 for f in _FORMS),
    ]
    return QueryFeatures(values=tuple(values), requested_tokens=requested_length_tokens(text))
