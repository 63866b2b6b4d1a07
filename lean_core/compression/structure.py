"""Find the retrieved context inside a prompt, so only the context is compressed.

RAG templates put instructions, the context and the question in one text (often the last user
turn): "Use the following pieces of context...\\n\\n{context}\\n\\nQuestion: {question}". Compressing
that text whole drops instruction and question sentences; keeping it whole compresses nothing.
:func:`find_context` reads the template's structure instead and returns the context *regions*
(split into passages) and the question; everything outside the regions is kept byte for byte.

What is recognised, most explicit first (a later rule only looks where no earlier one matched):

1. XML-ish tags: ``<context>``, ``<documents>``, ``<document>``, ``<sources>``, ``<passages>``,
   ``<search_results>``, ``<retrieved_...>`` ... (nested leaf tags such as ``<document_content>``
   become the passages; ``<source>``/``<title>`` leaves stay verbatim).
2. Delimited blocks: a block between two identical rule lines (``-----``, ``=====``, ``\"\"\"``,
   fences) right after a line that names the context ("Context information is below.").
3. Headings: "Context:", "CONTEXT:", "## Documents", "**Sources:**", "[Passages]", "Retrieved
   context:", ... up to the next label line ("Question:", "Query:", "Answer:", "Instructions:" ...).
4. An introducing sentence ("Use the following pieces of context to answer...", "The documents
   are below.") followed by the context, up to the next label line or a trailing question.
5. Numbered sources on their own lines: "[1] ...", "Document 1:", "Source 2 (Title: X):".

The question comes from the text itself: a "Question:"/"Query:" segment, else the last sentence
ending in "?" after the context, else the non-context remainder. Within a region, passages are
the nested tags, else numbered sources, else blank-line paragraphs; a passage's marker ("[2] ")
and the tags and separators between passages stay verbatim when the passage keeps any text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "ContextRegion",
    "NothingToCompress",
    "Passage",
    "PromptLayout",
    "find_context",
    "splice",
    "warn_nothing_compressed",
]

_LOG = logging.getLogger("lean_core.compression")


class NothingToCompress(StrEnum):
    """Why a call left its input as it was (the input is returned unchanged)."""

    NO_TEXT = "no_text"
    """There is no text at all (no messages, documents or nodes, or only empty/non-text ones)."""
    NO_CONTEXT_FOUND = "no_context_found"
    """Text exists but none of it is context: only instructions (system prompts) and the question,
    with no history, tool result or recognisable context section (see ``find_context``)."""

    @property
    def explanation(self) -> str:
        """One sentence for logs and reports."""
        if self is NothingToCompress.NO_TEXT:
            return "there is no text to compress"
        return ("no context was found: system prompts and the question are kept verbatim, and no "
                "history, tool result, 'Context:' heading, <context> tag, delimited block or numbered "
                "source was recognised; pass the context explicitly (LeanCompress(...).wrap(prompt) or "
                "a dict input with context_key)")


def warn_nothing_compressed(reason: NothingToCompress, seen: set[NothingToCompress], *, where: str) -> None:
    """Log ``reason`` once per ``seen`` set (the caller's instance or the process): a chain that
    compresses nothing on every call should say so, but not on every call."""
    if reason not in seen:
        seen.add(reason)
        _LOG.warning("%s compressed nothing: %s", where, reason.explanation)


@dataclass(frozen=True, slots=True)
class Passage:
    """One passage of a region: ``text[start:end]`` is compressed; ``text[marker:start]`` is its
    marker ("[2] ", "Document 2:"), kept verbatim with it."""

    marker: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class ContextRegion:
    """A stretch of context ``[start, end)`` and its passages (offsets into the whole text)."""

    start: int
    end: int
    passages: tuple[Passage, ...]
    rule: str
    """Which rule found it: "tags" (nested leaf tags are the passages), "tag", "delimited", "heading", "intro", "numbered" or "whole"."""


@dataclass(frozen=True, slots=True)
class PromptLayout:
    """The context regions of one text and the question it asks (None: none found)."""

    text: str
    regions: tuple[ContextRegion, ...]
    question: str | None

    @property
    def passages(self) -> list[str]:
        """Every passage's text, in order."""
        return [self.text[p.start:p.end] for r in self.regions for p in r.passages]


# -- vocabulary ---------------------------------------------------------------------------------
_CONTEXT_WORDS = (r"(?:(?:retrieved|relevant|provided|supporting|reference|source|background|search|extracted)"
                  r"[ \t_-]+)?(?:context(?:[ \t]+information)?|contexts|documents?|docs|sources|passages?|"
                  r"search[ \t_-]+results|results|references|excerpts?|extracts|snippets|knowledge(?:[ \t]+base)?|"
                  r"background(?:[ \t]+information)?|information|articles?|evidence|facts|chunks|notes|"
                  r"(?:reference|source|input|retrieved)[ \t]+text)")
_QUESTION_WORDS = (r"(?:(?:user|user's|input|the|follow[ -]?up|standalone)[ \t]+)?(?:question|query|q)")
_END_WORDS = (_QUESTION_WORDS + r"|(?:helpful[ \t]+|final[ \t]+|your[ \t]+)?(?:answer|response|output)|a|"
              r"instructions?|task|rules|guidelines|format|chat[ \t]+history|conversation|history")
_LABEL_PREFIX = r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?\[?"
_LABEL_SUFFIX = r"\]?(?:\*\*|__)?"
# "Context:" / "## Documents" / "**Sources:**" / "[Passages]" / "CONTEXT" alone in capitals.
_CONTEXT_HEADING = re.compile(
    _LABEL_PREFIX + r"(?P<label>" + _CONTEXT_WORDS + r")" + _LABEL_SUFFIX
    + r"(?:[ \t]*(?:[:：]|\*\*:|[-–—](?=[ \t]))(?:\*\*)?[ \t]*|(?<=\])[ \t]*$|(?<=\*\*)[ \t]*$|[ \t]*$)",
    re.I | re.M)
_QUESTION_LABEL = re.compile(_LABEL_PREFIX + _QUESTION_WORDS + _LABEL_SUFFIX
                             + r"[ \t]*(?:[:：](?:\*\*)?[ \t]*|\n)", re.I | re.M)
_END_LABEL = re.compile(_LABEL_PREFIX + r"(?:" + _END_WORDS + r")" + _LABEL_SUFFIX
                        + r"[ \t]*(?:[:：]|\*\*:|\]|$)", re.I | re.M)
# An unlabelled instruction after the context ("Answer the question using the passages above.")
# opens with an imperative and refers to the context: it ends the context, it is not part of it.
_INSTRUCTION = re.compile(
    r"^[ \t]*(?:answer|use|using|based[ \t]+on|given|respond|reply|remember|now|please|only|do[ \t]+not|don't|"
    r"if[ \t]+you|if[ \t]+the|cite|write|according[ \t]+to)\b[^\n]*\b(?:" + _CONTEXT_WORDS + r"|above)\b",
    re.I | re.M)
_RULE_LINE = re.compile(r"^[ \t]*(?P<rule>([-=*_~#])\2{2,}|\"\"\"|'''|```+|~~~+)[ \t]*\w*[ \t]*$", re.M)
_INTRO = re.compile(
    r"\b(?:following|below|provided|given|these|attached|retrieved)\b[^\n.?!]{0,60}?\b" + _CONTEXT_WORDS + r"\b"
    r"|\b" + _CONTEXT_WORDS + r"\b[^\n.?!]{0,40}?\b(?:is|are)[ \t]+(?:below|(?:provided|given|listed|shown)"
    r"(?:[ \t]+below)?|as[ \t]+follows)\b"
    r"|\b" + _CONTEXT_WORDS + r"[ \t]+(?:(?:provided|given|listed|shown|included)[ \t]+)?(?:below|above)\b", re.I)
_CUE = re.compile(r"\b(?:" + _CONTEXT_WORDS + r"|text|delimited|quotes|below)\b", re.I)
_TAG_NAMES = (r"context|contexts|documents?|docs?|sources|passages?|search_results?|results?|retrieved_?\w*|"
              r"information|knowledge|references?|excerpts?|background|evidence|snippets?|chunks?")
_TAG = re.compile(r"<(?P<name>" + _TAG_NAMES + r")(?:\s[^<>]*)?>(?P<body>.*?)</(?P=name)\s*>", re.I | re.S)
_LEAF = re.compile(r"<(?P<name>[A-Za-z][\w-]*)(?:\s[^<>]*)?>(?P<body>[^<]*)</(?P=name)\s*>")
_META_TAGS = frozenset({"source", "title", "url", "id", "index", "metadata", "date", "author", "filename",
                        "name", "link", "score", "page"})
_MARKER = re.compile(
    r"^[ \t]*(?:\[\d{1,3}\]|\(\d{1,3}\)|(?:document|doc|source|passage|context|chunk|excerpt|snippet|result|"
    r"article|reference)[ \t]*#?[ \t]*\[?\d{1,3}\]?(?:[ \t]*\([^)\n]{0,200}\))?[ \t]*[:.)\]-]?)[ \t]*",
    re.I | re.M)
_MAX_QUESTION_CHARS = 400
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


# -- public API ---------------------------------------------------------------------------------
def find_context(text: str, *, whole_if_unstructured: bool = False) -> PromptLayout:
    """The context regions and the question of ``text`` (see the module docstring).

    ``whole_if_unstructured``: with no recognised structure, read the text as context in full
    (less a trailing "...?" paragraph, then the question); otherwise find no region. Callers pass
    True for text that is context by its position (chat history, tool results, a bare string)
    and False for text that holds instructions or the question (system prompts, the last turn).
    """
    regions = _find_regions(text)
    if not regions and whole_if_unstructured and text.strip():
        trailing = _trailing_question(text, 0)
        end = trailing[0] if trailing else len(text)
        if text[:end].strip():
            passage = Passage(0, 0, len(text)) if trailing is None else _trimmed(text, 0, end)
            regions = [ContextRegion(0, end, (passage,), "whole")]
    return PromptLayout(text=text, regions=tuple(regions), question=_question(text, regions))


def splice(layout: PromptLayout, kept: Sequence[str]) -> str:
    """``layout.text`` with each passage replaced by its kept text (one per passage, ``""`` where
    nothing was kept); everything outside the passages is copied byte for byte. A dropped passage
    takes its marker and the separator before it along, except between tags, which all stay so
    the markup remains balanced."""
    text, out, cursor, k = layout.text, [], 0, 0
    for region in layout.regions:
        out.append(text[cursor:region.passages[0].marker])
        previous_kept = False
        for i, passage in enumerate(region.passages):
            piece = kept[k]
            k += 1
            if region.rule == "tags":
                out.append(text[region.passages[i - 1].end:passage.start] if i else "")
                out.append(piece)
                continue
            if not piece:
                continue
            if previous_kept:
                out.append(text[region.passages[i - 1].end:passage.marker])
            out.append(text[passage.marker:passage.start])
            out.append(piece)
            previous_kept = True
        cursor = region.passages[-1].end
    out.append(text[cursor:])
    return "".join(out)


# -- regions ------------------------------------------------------------------------------------
def _find_regions(text: str) -> list[ContextRegion]:
    regions: list[ContextRegion] = []
    for finder in (_tag_regions, _delimited_regions, _heading_regions):
        for region in finder(text):
            if region.passages and not any(r.start < region.end and region.start < r.end for r in regions):
                regions.append(region)
    if not regions:  # weaker evidence: only where nothing explicit was found
        for finder in (_intro_regions, _numbered_regions):
            regions = [r for r in finder(text) if r.passages]
            if regions:
                break
    return sorted(regions, key=lambda r: r.start)


def _tag_regions(text: str) -> list[ContextRegion]:
    out = []
    for match in _TAG.finditer(text):
        start, end = match.span("body")
        leaves = [m for m in _LEAF.finditer(text, start, end)
                  if m.group("name").lower() not in _META_TAGS and m.group("body").strip()]
        if leaves:
            passages = tuple(_trimmed(text, *m.span("body")) for m in leaves)
            out.append(ContextRegion(start, end, passages, "tags"))
        else:
            out.append(ContextRegion(start, end, _split_passages(text, start, end), "tag"))
    return out


def _delimited_regions(text: str) -> list[ContextRegion]:
    out = []
    rules = list(_RULE_LINE.finditer(text))
    i = 0
    while i + 1 < len(rules):
        opening, closing = rules[i], rules[i + 1]
        same = opening.group("rule")[:3] == closing.group("rule")[:3]
        line = text.rfind("\n", 0, max(0, opening.start() - 1))
        before = text[max(0, text.rfind("\n", 0, max(0, line)) + 1):opening.start()]
        if same and _CUE.search(before):
            start, end = opening.end() + 1, closing.start()
            if start < end:
                out.append(ContextRegion(start, end, _split_passages(text, start, end), "delimited"))
            i += 2
        else:
            i += 1
    return out


def _heading_regions(text: str) -> list[ContextRegion]:
    out = []
    for match in _CONTEXT_HEADING.finditer(text):
        line_end = text.find("\n", match.start())
        line_end = len(text) if line_end < 0 else line_end
        label_only = not text[match.end():line_end].strip()
        bare = match.group(0).strip().rstrip("*_").strip()
        # A bare word on its own line counts only in capitals ("CONTEXT") or marked up ("## Context").
        if label_only and bare == match.group("label") and not bare.isupper():
            continue
        start = match.end()
        end = _region_end(text, start)
        if text[start:end].strip():
            out.append(ContextRegion(start, end, _split_passages(text, start, end), "heading"))
    return out


def _intro_regions(text: str) -> list[ContextRegion]:
    for match in _INTRO.finditer(text):
        line_end = text.find("\n", match.end())
        if line_end < 0 or _QUESTION_LABEL.match(text, text.rfind("\n", 0, match.start()) + 1):
            continue
        start = line_end + 1
        end = _region_end(text, start)
        if text[start:end].strip():
            return [ContextRegion(start, end, _split_passages(text, start, end), "intro")]
    return []


def _numbered_regions(text: str) -> list[ContextRegion]:
    markers = [m for m in _MARKER.finditer(text) if m.end() > m.start() and text[m.start():m.end()].strip()]
    if len(markers) < 2:
        return []
    start = markers[0].start()
    end = _region_end(text, markers[-1].end())
    return [ContextRegion(start, end, _split_passages(text, start, end), "numbered")]


def _region_end(text: str, start: int) -> int:
    """Where context that starts at ``start`` ends: the next label or rule line, a closing tag of
    its own, or a trailing question paragraph; else the end of the text."""
    end = len(text)
    for pattern in (_END_LABEL, _INSTRUCTION, _RULE_LINE, _CONTEXT_HEADING):
        # A rule line or heading right at the start opens the context, it does not close it.
        match = pattern.search(text, start + 1)
        while match is not None and pattern in (_RULE_LINE, _CONTEXT_HEADING) and not text[start:match.start()].strip():
            match = pattern.search(text, match.end() + 1)
        if match is not None and pattern is _CONTEXT_HEADING:
            continue  # a second context heading inside the context is part of it
        if match is not None and match.start() < end:
            end = match.start()
    trailing = _trailing_question(text[:end], start)
    return trailing[0] if trailing else end


def _trailing_question(text: str, start: int) -> tuple[int, str] | None:
    """(offset, text) of a last paragraph after ``start`` that is one short question."""
    body = text.rstrip()
    cut = body.rfind("\n\n")
    if cut < start:
        return None
    last = body[cut:].strip()
    if last.endswith("?") and len(last) <= _MAX_QUESTION_CHARS and "\n" not in last:
        return body.index(last, cut), last
    return None


def _split_passages(text: str, start: int, end: int) -> tuple[Passage, ...]:
    """Numbered sources when the region has two or more, else blank-line paragraphs."""
    markers = [m for m in _MARKER.finditer(text, start, end) if text[m.start():m.end()].strip()]
    if len(markers) >= 2 or (markers and not text[start:markers[0].start()].strip()):
        bounds = [*(m.start() for m in markers), end]
        lead = text[start:markers[0].start()]
        passages = [_trimmed(text, start, markers[0].start())] if lead.strip() else []
        for m, stop in zip(markers, bounds[1:], strict=True):
            body = _trimmed(text, m.end(), stop)
            first = m.start() + len(text[m.start():m.end()]) - len(text[m.start():m.end()].lstrip())
            passages.append(Passage(first, body.start, body.end) if body.end > body.start
                            else Passage(first, m.end(), m.end()))
        return tuple(p for p in passages if p.end > p.start)
    passages = []
    for para in re.finditer(r"(?:(?!\n[ \t]*\n)[\s\S])+", text[start:end]):
        piece = _trimmed(text, start + para.start(), start + para.end())
        if piece.end > piece.start:
            passages.append(piece)
    return tuple(passages)


def _trimmed(text: str, start: int, end: int) -> Passage:
    piece = text[start:end]
    first = start + len(piece) - len(piece.lstrip())
    last = start + len(piece.rstrip())
    return Passage(first, first, max(first, last))


# -- the question -------------------------------------------------------------------------------
def _question(text: str, regions: Sequence[ContextRegion]) -> str | None:
    def outside(pos: int) -> bool:
        return not any(r.start <= pos < r.end for r in regions)

    for match in _QUESTION_LABEL.finditer(text):
        if outside(match.start()):
            stops = (_END_LABEL.search(text, match.end()), _CONTEXT_HEADING.search(text, match.end()),
                     _RULE_LINE.search(text, match.end()), re.compile(r"\n[ \t]*\n").search(text, match.end()))
            end = min([len(text), *(m.start() for m in stops if m is not None),
                       *(r.start for r in regions if r.start >= match.end())])
            question = text[match.end():end].strip()
            if question:
                return question
    after = regions[-1].end if regions else 0
    tail = _RULE_LINE.sub("", text[after:])
    sentences = [s.strip() for line in tail.splitlines() for s in _SENTENCE_END.split(line) if s.strip()]
    asked = [s for s in sentences if s.endswith("?")]
    if asked and len(asked[-1]) <= _MAX_QUESTION_CHARS:
        return asked[-1]
    if not regions:
        return text.strip() or None
    cursor, rest = 0, []
    for region in regions:
        rest.append(text[cursor:region.start])
        cursor = region.end
    rest.append(text[cursor:])
    remainder = " ".join(" ".join(rest).split())
    return remainder or None
