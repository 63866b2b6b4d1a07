"""A prompt linter: what in a prompt costs tokens without instructing the model, and what it costs.

Rules (each finding carries the tokens it costs in the target model's tokenizer):

* ``filler``: politeness and emphasis that instruct nothing ("please", "thank you in advance",
  "It is very important that", "IMPORTANT:", "make sure that you"); the fix is to delete it.
* ``verbose_phrase``: a phrase with a shorter equivalent ("in order to" -> "to"); costs the
  difference.
* ``duplicate_instruction``: a sentence that repeats an earlier one (same content words, or
  nearly: Jaccard >= ``similarity``, or one's words contained in the other's); costs the repeat.
* ``variable_before_stable``: fixed instructions placed after the first ``{variable}``; they
  change position with every request, so no prefix cache can reuse them. Costs the fixed tokens
  that cannot be cached (not removable: move them before the variables).
* ``decorative_markup``: separator lines, bold markers, emoji, repeated "!!!"; costs the markup.

Costs are counted on each span alone, so they are close to (not exactly) what deleting it saves:
tokens can merge differently inside the full prompt. Lexical rules only: a rephrased repetition
with no shared words is not found.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from lean_core.errors import InvalidParameterError
from lean_core.templates.spec import _PLACEHOLDER
from lean_core.tokens import TokenCounter

__all__ = ["FindingKind", "LintFinding", "LintReport", "lint_prompt"]

FindingKind = Literal["filler", "verbose_phrase", "duplicate_instruction", "variable_before_stable",
                      "decorative_markup"]
_SHARED_COUNTER = TokenCounter()
_I = re.IGNORECASE

_FILLER = [re.compile(p, _I | re.MULTILINE) for p in (
    r"\b(?:could|would|can) you please\s+",
    r"\bplease\b,?\s*",
    r"\bkindly\s+",
    # only a sign-off: "thanks" as a word inside a rule ("greetings, thanks, ...") is content
    r"\bthank(?:s| you)(?: (?:so|very) much)?(?: in advance)?(?: for your (?:help|assistance|time))?"
    r"(?:[.!]+\s*|\s*$)",
    r"\bI would (?:really |greatly )?appreciate (?:it )?if you (?:could|would)\s+",
    r"\bI(?:'d| would) like you to\s+",
    r"\bI want you to\s+",
    r"(?<![\w{])(?:hello|hi)(?: there)?[!,.]+\s*",
    r"\bI hope you(?:'re| are) (?:doing )?well[.!]*\s*",
    r"\bfeel free to\s+",
    r"\bdo your (?:very )?best to\s+",
    r"\bto the best of your (?:ability|abilities|knowledge),?\s*",
    r"\btake a deep breath(?: and)?\s*",
    r"\bif (?:at all )?possible,?\s*",
    r"\b(?:always )?(?:remember|keep in mind|note) that\s+",
    r"\bremember to\s+",
    r"\bit is (?:very |extremely |really |super |absolutely |incredibly )?(?:important|crucial|essential|"
    r"critical|vital|imperative) (?:that you |for you to |that |to )",
    r"\bmake (?:absolutely )?sure (?:that )?(?:you )?(?:to )?",
    r"\b(?:really|extremely|absolutely|truly|incredibly) (?=\w)",
)] + [re.compile(r"\b(?:IMPORTANT|NOTE|CRITICAL|WARNING|REMEMBER)\s*[:!]+\s*")]

_VERBOSE: list[tuple[re.Pattern[str], str]] = [(re.compile(p, _I), r) for p, r in (
    (r"\bin order to\b", "to"),
    (r"\bdue to the fact that\b", "because"),
    (r"\bin spite of the fact that\b", "although"),
    (r"\bat this point in time\b", "now"),
    (r"\bin the event that\b", "if"),
    (r"\bfor the purpose of\b", "for"),
    (r"\bwith regards? to\b", "about"),
    (r"\bwith respect to\b", "about"),
    (r"\bin relation to\b", "about"),
    (r"\ba large number of\b", "many"),
    (r"\b(?:is|are) able to\b", "can"),
    (r"\b(?:has|have) the ability to\b", "can"),
    (r"\beach and every\b", "each"),
    (r"\bfirst and foremost\b", "first"),
    (r"\bprior to\b", "before"),
    (r"\bsubsequent to\b", "after"),
    (r"\bin the context of\b", "in"),
    (r"\bwith the exception of\b", "except"),
    (r"\bunder no circumstances should you\b", "never"),
    (r"\bunder no circumstances\b", "never"),
    (r"\bdo not ever\b", "never"),
    (r"\bat all times\b", "always"),
    (r"\bprovide (?:me )?(?:with )?(?:a|an|your) (?:response|answer|reply)\b", "answer"),
    (r"\bgive (?:me )?(?:a|an|your) (?:response|answer|reply)\b", "answer"),
    (r"\bmake a decision\b", "decide"),
    (r"\bin a (?:clear and )?concise (?:manner|way)\b", "concisely"),
    (r"\bit should be noted that\b", ""),
    (r"\bwhether or not\b", "whether"),
    (r"\buntil such time as\b", "until"),
    (r"\btake into (?:account|consideration)\b", "consider"),
    (r"\bthe information (?:that is |that has been )?(?:provided|given)\b", "the information"),
    (r"\bin (?:the|your) (?:final )?(?:response|answer|output) that you (?:give|provide|write)\b", "in the answer"),
)]

_DECORATIVE: list[tuple[re.Pattern[str], str | None]] = [
    (re.compile(r"^[ \t]*[=\-*#_~+]{3,}[ \t]*\n?", re.MULTILINE), None),  # separator lines
    (re.compile(r"\*\*([^*\n]+)\*\*"), r"\1"),  # bold
    (re.compile(r"[\U0001F300-\U0001FAFF\u2600-\u27BF]\uFE0F?\s?"), None),  # emoji
    (re.compile(r"([!?])\1+"), r"\1"),  # "!!!"
]

_UNIT = re.compile(r"[^\n.!?]+[.!?]*")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_WORD = re.compile(r"[a-z0-9']+")
_WEAK = frozenset(
    "a an the of in on at to for from by with and or is are be it its this that these you your i me my "
    "we our please always make sure very really important must should need do not will can remember how what which who when where why did does".split())
_MIN_WORDS = 3
_CONTAINMENT = 0.8
# Words that say the same thing in instructions ("output only the label" / "answer only the label").
_SAME = {"output": "answer", "respond": "answer", "response": "answer", "reply": "answer", "return": "answer",
         "write": "answer", "explanation": "explain", "explaining": "explain", "single": "one",
         "exactly": "one", "just": "only", "solely": "only", "using": "use"}
_MIN_UNCACHEABLE_TOKENS = 16  # below a KV block of the smallest engines, not worth a finding


class LintFinding(BaseModel):
    """One thing in the prompt that costs tokens without instructing the model."""

    model_config = ConfigDict(frozen=True)

    kind: FindingKind
    start: int
    """Character offset of ``text`` in the linted prompt."""
    end: int
    text: str
    suggestion: str | None
    """The replacement ("" = delete); None where the fix is a move, not an edit."""
    tokens: int
    """Tokens this costs: removable tokens for edits, uncacheable tokens for ``variable_before_stable``."""
    message: str


class LintReport(BaseModel):
    """Every finding of one prompt, in text order, and their totals."""

    model_config = ConfigDict(frozen=True)

    model: str
    total_tokens: int
    """Tokens of the whole prompt."""
    findings: tuple[LintFinding, ...]
    removable_tokens: int
    """Tokens the edit findings cost, overlaps counted once (a filler inside a duplicate
    sentence is part of the duplicate)."""
    uncacheable_tokens: int
    """Fixed instruction tokens after the first variable (0 when the variables come last)."""

    def by_kind(self) -> dict[str, int]:
        """Tokens per finding kind."""
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.kind] = out.get(f.kind, 0) + f.tokens
        return out


def _words(text: str) -> frozenset[str]:
    words = (w.removesuffix("s") if len(w) > 3 else w for w in _WORD.findall(text.lower()))
    return frozenset(_SAME.get(w, w) for w in words if w not in _WEAK)


def _duplicates(text: str, similarity: float) -> list[tuple[int, int, str]]:
    seen: list[tuple[frozenset[str], str]] = []
    out: list[tuple[int, int, str]] = []
    for match in _UNIT.finditer(text):
        raw = match.group(0)
        bullet = _BULLET.match(raw)
        start = match.start() + (bullet.end() if bullet else 0)
        sentence = text[start:match.end()].strip()
        if not sentence or _PLACEHOLDER.search(sentence):
            continue
        start = text.index(sentence, start)
        words = _words(sentence)
        if len(words) < _MIN_WORDS:
            continue
        for earlier_words, earlier in seen:
            overlap = len(words & earlier_words)
            if (overlap / len(words | earlier_words) >= similarity
                    or overlap / min(len(words), len(earlier_words)) >= _CONTAINMENT):
                out.append((start, start + len(sentence), earlier))
                break
        else:
            seen.append((words, sentence))
    return out


def lint_prompt(text: str, *, model: str = "gpt-4o", similarity: float = 0.7,
                counter: TokenCounter | None = None) -> LintReport:
    """Findings for ``text`` (a prompt or a template with ``{variables}``), costs in ``model``'s tokens.

    ``similarity`` in (0, 1]: the word-set Jaccard at which two sentences count as one
    instruction said twice.
    """
    if not isinstance(text, str):
        raise InvalidParameterError("text", allowed="a str", received=type(text).__name__)
    if isinstance(similarity, bool) or not isinstance(similarity, int | float) or not 0.0 < similarity <= 1.0:
        raise InvalidParameterError("similarity", allowed="a number in (0, 1]", received=similarity)
    counter = counter or _SHARED_COUNTER

    def tokens(s: str) -> int:
        return counter.count(s, model).tokens if s else 0

    findings: list[LintFinding] = []
    for start, end, earlier in _duplicates(text, similarity):
        findings.append(LintFinding(kind="duplicate_instruction", start=start, end=end, text=text[start:end],
                                    suggestion="", tokens=tokens(text[start:end]),
                                    message=f"repeats an earlier instruction: {earlier!r}"))
    for pattern in _FILLER:
        for m in pattern.finditer(text):
            findings.append(LintFinding(kind="filler", start=m.start(), end=m.end(), text=m.group(0),
                                        suggestion="", tokens=tokens(m.group(0)),
                                        message="politeness or emphasis: instructs nothing"))
    for pattern, replacement in _VERBOSE:
        for m in pattern.finditer(text):
            saved = tokens(m.group(0)) - tokens(replacement)
            if saved > 0:
                findings.append(LintFinding(kind="verbose_phrase", start=m.start(), end=m.end(), text=m.group(0),
                                            suggestion=replacement, tokens=saved,
                                            message=f"say {replacement!r}" if replacement else "delete it"))
    for pattern, replacement_template in _DECORATIVE:
        for m in pattern.finditer(text):
            replacement = m.expand(replacement_template) if replacement_template else ""
            cost = tokens(m.group(0)) - tokens(replacement)
            if cost > 0:
                findings.append(LintFinding(kind="decorative_markup", start=m.start(), end=m.end(),
                                            text=m.group(0), suggestion=replacement, tokens=cost,
                                            message="markup the model does not need"))
    uncacheable = _variable_first(text, tokens, findings)
    findings.sort(key=lambda f: (f.start, -(f.end - f.start)))
    removable, covered_until = 0, -1
    for f in sorted((f for f in findings if f.kind != "variable_before_stable"),
                    key=lambda f: (f.start, -(f.end - f.start))):
        if f.end <= covered_until:
            continue  # inside a span already counted (e.g. "please" in a duplicate sentence)
        removable += f.tokens
        covered_until = max(covered_until, f.end)
    return LintReport(model=model, total_tokens=tokens(text), findings=tuple(findings),
                      removable_tokens=removable, uncacheable_tokens=uncacheable)


def _variable_first(text: str, tokens: Callable[[str], int], findings: list[LintFinding]) -> int:
    first = _PLACEHOLDER.search(text)
    if first is None:
        return 0
    fixed_after = _PLACEHOLDER.sub("", text[first.end():]).strip()
    count = tokens(fixed_after)
    if count < _MIN_UNCACHEABLE_TOKENS:
        return 0
    findings.append(LintFinding(
        kind="variable_before_stable", start=first.start(), end=len(text), text=text[first.start():],
        suggestion=None, tokens=count,
        message=f"{count} tokens of fixed text follow the variable {first.group(0)}: no prefix cache can "
                "reuse them; put fixed instructions before every variable"))
    return count
