"""Query-aware relevance of sentences: MiniLM similarity, BM25 overlap, answer-type cues and the
strength of the passage a sentence sits in, combined on a common (z-score) scale."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lean_core.compression.segment import Unit
from lean_core.embeddings import Embedder, default_embedder
from lean_core.errors import InvalidParameterError

__all__ = ["AutoPolicy", "RelevanceScorer", "passage_bm25", "question_terms"]

_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset(
    "a an the of in on at to for from by with and or is are was were be been being what which who whom "
    "whose when where why how do does did this that these those it its as into than then there their "
    "they he she his her we you your i me my our not no yes can could would should will shall may might "
    "has have had about over under after before between during also such".split()
)
_YEAR_OR_DATE = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b|\b(January|February|March|April|May|June|July|August|"
                           r"September|October|November|December)\b|\b\d{1,2}(st|nd|rd|th)\b", re.I)
_NUMBER = re.compile(r"\d")
_NAME = re.compile(r"\b[A-Z][\w'-]+")
_PROPER = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][a-z]+")
# A sentence that opens with a pronoun ("It was written by ...", "As an adult, she ...") is about
# its passage's subject, which it does not name: it is embedded with the passage's heading.
_PRONOUN_LED = re.compile(r"(?:[^,.]{0,25},\s*)?(?:it|its|he|his|she|her|they|their|this|these)\b", re.I)


def _terms(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


question_terms = _terms
"""The content words of a text (lower case, stopwords removed), as the scorer matches them."""


def passage_bm25(question: str, texts: Sequence[str], passage: Sequence[str]) -> list[float]:
    """BM25 of the question's words in each of ``texts`` (pieces of one passage, e.g. the clauses
    of a sentence), each word weighted by its rarity among the ``passage``'s sentences: a word that
    many sentences share names the passage's topic, one found in a single sentence locates it."""
    return _bm25(_terms(question), [_terms(t) for t in texts], idf_docs=[_terms(t) for t in passage])


def _zscore(values: Sequence[float]) -> list[float]:
    if not values:
        return []
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / len(values)
    std = math.sqrt(var) or 1.0
    return [(v - mean) / std for v in values]


def _bm25(query: list[str], docs: list[list[str]], k1: float = 1.2, b: float = 0.75, *,
          idf_docs: list[list[str]] | None = None) -> list[float]:
    """BM25 of ``query`` in each of ``docs``; word rarity (idf) is counted over ``idf_docs`` when
    given (a larger collection the docs are pieces of), else over ``docs`` themselves."""
    if not query or not docs:
        return [0.0] * len(docs)
    avg = sum(len(d) for d in docs) / len(docs) or 1.0
    collection = docs if idf_docs is None else idf_docs
    n = len(collection)
    df = Counter(t for d in collection for t in set(d))
    scores = []
    for doc in docs:
        tf = Counter(doc)
        score = 0.0
        for term in set(query):
            if tf[term]:
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                score += idf * tf[term] * (k1 + 1) / (tf[term] + k1 * (1 - b + b * len(doc) / avg))
        scores.append(score)
    return scores


def _answer_type(question: str) -> str | None:
    q = question.lower()
    if re.search(r"\b(when|what year|which year|what date|what century|how long ago)\b", q):
        return "date"
    if re.search(r"\b(how many|how much|how long|how old|how far|how big|how tall|percentage|population|number of)\b", q):
        return "number"
    if re.search(r"\b(who|whom|whose)\b", q):
        return "person"
    if re.search(r"\b(where|which country|which city)\b", q):
        return "place"
    return None


def _type_match(kind: str | None, text: str) -> float:
    if kind == "date":
        return 1.0 if _YEAR_OR_DATE.search(text) else 0.0
    if kind == "number":
        return 1.0 if _NUMBER.search(text) else 0.0
    if kind in ("person", "place"):
        return 1.0 if _PROPER.search(text) else 0.0
    return 0.0


def _plain(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def _title_key(heading: str | None) -> str | None:
    """A title as it would be written in running text: lower case, words only, without a
    parenthetical qualifier ("On My Mind (Ellie Goulding song)" -> "on my mind"); None when too
    short or too common to be evidence of a mention."""
    if not heading:
        return None
    key = _plain(re.sub(r"\([^)]*\)", " ", heading))
    return key if len(key) >= 4 and any(w not in _STOPWORDS for w in key.split()) else None


def _mentions(text: str, title: str) -> bool:
    return f" {title} " in f" {text} "


def _resolve_pronouns(keys: list[tuple[int, int]], sentence_text: dict[tuple[int, int], str],
                      headings: Sequence[str | None]) -> list[str]:
    """Each sentence's text for embedding: pronoun-led sentences after the first of their passage
    get the passage's heading in front (the first sentence already carries it)."""
    seen: set[int] = set()
    out = []
    for passage, sentence in keys:
        text = sentence_text[(passage, sentence)]
        heading = headings[passage] if passage < len(headings) else None
        if passage in seen and heading and _PRONOUN_LED.match(text):
            text = f"{heading}: {text}"
        seen.add(passage)
        out.append(text)
    return out


class RelevanceScorer:
    """Scores units for a question (or, without one, for centrality to the whole context).

    The weights scale z-scored signals: ``semantic`` (MiniLM cosine to the question), ``lexical``
    (BM25), ``type`` (the unit holds the kind of thing asked for: a date, a number, a name),
    ``passage`` (the passage's strength, see below) and ``neighbour`` (adjacent relevant pieces).
    With several passages, a passage's strength adds ``lead_weight`` x the question's overlap with
    its first ``lead_terms`` words and ``hop_weight`` x a bridge hop from the strongest passage;
    ``expansion_weight`` scales a sentence-level bridge round. ``embed_clauses=False`` embeds whole
    sentences only (clauses inherit their sentence's similarity): about twice as fast, and no
    less accurate on the shared SQuAD/HotpotQA/NQ data. Given passage ``headings`` (titles), a
    sentence that opens with a pronoun is embedded as "heading: sentence", a light coreference
    step (HotpotQA at 3x: all supporting facts kept 88.3 % -> 90.0 %; SQuAD and NQ unchanged).
    ``title_weight`` adds to the strength of a passage whose title the question names (both sides
    of a comparison) or the strongest passage's best sentences name (a bridge entity). Off by
    default: on the dev half of HotpotQA it changed nothing at 3x (25/28 either way) and lost one
    item at 5x (18 -> 17 of 28), so it is not evidence that it generalises.
    ``bridge_gap`` (None: off) is a second hop by entity link, as multi-hop retrievers follow
    hyperlinks: the passage whose title the best passage's highest-ranked sentences name, and the
    question does not, is the bridge of a two-hop question; it is lifted so that its best unit
    scores within ``bridge_gap`` standard deviations of the best unit (a fixed budget then keeps
    its lead, and ``AutoPolicy`` keeps it whole). Needs passage titles (``headings``).
    ``redundancy_weight`` (0: off) and ``redundancy_floor`` control redundancy across passages
    (maximal marginal relevance by passage): a unit whose passage is a look-alike (cosine of mean
    embeddings above the floor) of a passage already drawn from, best first, loses ``weight`` sd per
    unit of excess similarity; passages linked by title are exempt. HotpotQA dev half at 5x: both
    facts 21 -> 23 of 28; 3x, auto, SQuAD and NQ-20 unchanged on the dev half.
    """

    def __init__(self, embedder: Embedder | None = None, *, semantic_weight: float = 1.0,
                 lexical_weight: float = 0.8, type_weight: float = 0.35, passage_weight: float = 0.6,
                 neighbour_weight: float = 0.25, max_embedded_units: int = 1024,
                 expansion_weight: float = 0.5, lead_weight: float = 1.0, hop_weight: float = 1.0,
                 lead_terms: int = 8, embed_clauses: bool = False, title_weight: float = 0.0,
                 bridge_gap: float | None = 1.0, redundancy_weight: float = 3.0,
                 redundancy_floor: float = 0.55) -> None:
        self._embedder = embedder
        self.semantic_weight = semantic_weight
        self.lexical_weight = lexical_weight
        self.type_weight = type_weight
        self.passage_weight = passage_weight
        self.neighbour_weight = neighbour_weight
        self.max_embedded_units = max_embedded_units
        self.expansion_weight = expansion_weight
        self.lead_weight = lead_weight
        self.hop_weight = hop_weight
        self.lead_terms = lead_terms
        self.embed_clauses = embed_clauses
        self.title_weight = title_weight
        if bridge_gap is not None and not (isinstance(bridge_gap, int | float) and 0 <= bridge_gap < math.inf):
            raise InvalidParameterError("bridge_gap", allowed="a finite number >= 0, or None (off)",
                                        received=bridge_gap)
        self.bridge_gap = bridge_gap
        if not (isinstance(redundancy_weight, int | float) and 0 <= redundancy_weight < math.inf):
            raise InvalidParameterError("redundancy_weight", allowed="a finite number >= 0 (0: off)",
                                        received=redundancy_weight)
        if not (isinstance(redundancy_floor, int | float) and -1 <= redundancy_floor <= 1):
            raise InvalidParameterError("redundancy_floor", allowed="a cosine similarity in [-1, 1]",
                                        received=redundancy_floor)
        self.redundancy_weight = redundancy_weight
        self.redundancy_floor = redundancy_floor

    @property
    def embedder(self) -> Embedder:
        return self._embedder or default_embedder()

    def score(self, units: Sequence[Unit], *, question: str | None,
              headings: Sequence[str | None] | None = None) -> list[float]:
        """One score per unit; higher is more relevant. Units of one passage share its prior.

        ``headings``: one title (or None) per passage, used to resolve pronoun-led sentences.
        """
        if not units:
            return []
        texts = [u.text for u in units]
        # Clauses are short and their own scores are noisy: blend each with its whole sentence.
        sentence_of = [(u.passage, u.sentence) if u.sentence >= 0 else (u.passage, -1 - i)
                       for i, u in enumerate(units)]
        sentence_text: dict[tuple[int, int], str] = {}
        for key, text in zip(sentence_of, texts, strict=True):
            sentence_text[key] = f"{sentence_text[key]} {text}" if key in sentence_text else text
        keys = list(sentence_text)
        all_texts = texts + [sentence_text[k] for k in keys]
        query = _terms(question) if question else []
        lexical_all = _bm25(query, [_terms(t) for t in all_texts]) if question else [0.0] * len(all_texts)
        position = {k: len(texts) + j for j, k in enumerate(keys)}
        rows: Any = None  # one embedding per sentence (or clause), for the look-alike discount
        row_passage: list[int] = []
        if not self.semantic_weight:
            semantic = [0.0] * len(texts)
        elif self.embed_clauses:
            sentences = _resolve_pronouns(keys, sentence_text, headings) if headings else all_texts[len(texts):]
            semantic_all, rows = self._semantic(texts + sentences, question, lexical_all)
            rows, row_passage = rows[: len(texts)], [u.passage for u in units]
            semantic = [0.5 * semantic_all[i] + 0.5 * semantic_all[position[k]] for i, k in enumerate(sentence_of)]
        else:  # one embedding per sentence; its clauses differ by their lexical and type scores
            embedded = _resolve_pronouns(keys, sentence_text, headings) if headings else all_texts[len(texts):]
            per_sentence, rows = self._semantic(embedded, question, lexical_all[len(texts):])
            row_passage = [k[0] for k in keys]
            semantic = [per_sentence[position[k] - len(texts)] for k in sentence_of]
        lexical = [0.5 * lexical_all[i] + 0.5 * lexical_all[position[k]] for i, k in enumerate(sentence_of)]
        kind = _answer_type(question) if question else None
        typed = [_type_match(kind, u.text) for u in units]
        combined = [self.semantic_weight * s + self.lexical_weight * lx + self.type_weight * t
                    for s, lx, t in zip(_zscore(semantic), _zscore(lexical), typed, strict=True)]
        best_in_passage: dict[int, float] = {}
        for unit, value in zip(units, combined, strict=True):
            best_in_passage[unit.passage] = max(best_in_passage.get(unit.passage, -math.inf), value)
        strength = (self._passage_strength(units, question, best_in_passage, combined, headings)
                    if question and len(best_in_passage) > 1 else best_in_passage)
        scores = []
        for i, (unit, value) in enumerate(zip(units, combined, strict=True)):
            score = value + self.passage_weight * strength[unit.passage]
            for j in (i - 1, i + 1):  # continuation pieces ("It ...", ", which ...") ride along
                if 0 <= j < len(units) and units[j].passage == unit.passage and combined[j] > 0:
                    same_sentence = unit.sentence >= 0 and units[j].sentence == unit.sentence
                    score += self.neighbour_weight * (2 if same_sentence else 1) * combined[j]
            scores.append(score)
        if question and self.expansion_weight and len({u.passage for u in units}) > 1:
            scores = self._expand(units, texts, question, scores)
        if question and headings and self.bridge_gap is not None and len(best_in_passage) > 1:
            scores = self._bridge(units, scores, headings, question, self.bridge_gap)
        if question and self.redundancy_weight and rows is not None and len(best_in_passage) > 1:
            scores = self._discount_lookalikes(units, scores, _passage_vectors(rows, row_passage), headings)
        return scores

    def _discount_lookalikes(self, units: Sequence[Unit], scores: list[float], vectors: dict[int, Any],
                             headings: Sequence[str | None] | None) -> list[float]:
        """Redundancy control across passages (maximal marginal relevance, by passage): units are
        drawn best first, and a unit whose passage is a look-alike of a passage already drawn from
        (cosine of the passages' mean embeddings above ``redundancy_floor``) is discounted by
        ``redundancy_weight`` standard deviations per unit of excess similarity. Many near-duplicate
        passages ("<team> season" pages) then do not spend a fixed budget on one kind of fact.
        Passages that name each other's titles are hops of one chain, not look-alikes: exempt."""
        titles = {p: _title_key(headings[p]) if headings and p < len(headings) else None for p in vectors}
        text: dict[int, list[str]] = {p: [] for p in vectors}
        queue: dict[int, list[int]] = {p: [] for p in vectors}
        for i in sorted(range(len(units)), key=lambda i: -scores[i]):
            text[units[i].passage].append(units[i].text)
            queue[units[i].passage].append(i)
        plain = {p: _plain(" ".join(t)) for p, t in text.items()}

        def linked(a: int, b: int) -> bool:
            title_a, title_b = titles[a], titles[b]
            return bool((title_b and _mentions(plain[a], title_b)) or (title_a and _mentions(plain[b], title_a)))

        step = self.redundancy_weight * (_std(scores) or 1.0)
        redundancy = dict.fromkeys(vectors, 0.0)  # similarity to the closest passage drawn from
        drawn: set[int] = set()
        adjusted = list(scores)
        while any(queue.values()):
            value, passage = max((scores[q[0]] - step * max(0.0, redundancy[p] - self.redundancy_floor), p)
                                 for p, q in queue.items() if q)
            adjusted[queue[passage].pop(0)] = value
            if passage not in drawn:
                drawn.add(passage)
                for other in vectors:
                    if other != passage and not linked(passage, other):
                        similarity = float(vectors[passage] @ vectors[other])
                        redundancy[other] = max(redundancy[other], similarity)
        return adjusted

    @staticmethod
    def _bridge(units: Sequence[Unit], scores: list[float], headings: Sequence[str | None], question: str,
                gap: float) -> list[float]:
        """Second hop by entity link: of the passages whose title the best passage names (and the
        question does not: a named one is a first hop, found by the question itself), the one
        named in its highest-ranked sentence, then the best scoring, is lifted to ``gap`` standard
        deviations below the best unit, all its units alike (its evidence need not be its lead)."""
        order = sorted(range(len(units)), key=lambda i: -scores[i])
        top = units[order[0]].passage
        evidence = [_plain(units[i].text) for i in order if units[i].passage == top]
        asked = _plain(question)
        best_in: dict[int, float] = {}
        for unit, value in zip(units, scores, strict=True):
            best_in[unit.passage] = max(best_in.get(unit.passage, -math.inf), value)
        candidates = []
        for passage, best in best_in.items():
            title = _title_key(headings[passage]) if passage != top and passage < len(headings) else None
            if not title or _mentions(asked, title):
                continue
            rank = next((k for k, text in enumerate(evidence) if _mentions(text, title)), None)
            if rank is not None:
                candidates.append((rank, -best, passage))
        if not candidates:
            return scores
        bridge = min(candidates)[2]
        lift = max(0.0, max(scores) - gap * (_std(scores) or 1.0) - best_in[bridge])
        return [v + lift * (u.passage == bridge) for u, v in zip(units, scores, strict=True)]

    def _passage_strength(self, units: Sequence[Unit], question: str, best_in_passage: dict[int, float],
                          combined: Sequence[float] | None = None,
                          headings: Sequence[str | None] | None = None) -> dict[int, float]:
        """How strongly each passage answers the question, over two hops.

        Hop one: its best sentence, plus the question's overlap with the passage's lead (its first
        words: a title or the entity it is about). Hop two: names that the strongest passage
        mentions and the question does not are looked up in the other passages' leads; a passage
        *about* such a name is the bridge of a multi-hop question (Wikipedia-style corpora link
        entities this way).
        """
        passages = list(best_in_passage)
        words: dict[int, list[str]] = {p: [] for p in passages}
        raw: dict[int, list[str]] = {p: [] for p in passages}
        for unit in units:
            if len(words[unit.passage]) < self.lead_terms:
                words[unit.passage].extend(_terms(unit.text))
            raw[unit.passage].append(unit.text)
        leads = [words[p][: self.lead_terms] for p in passages]
        first = _zscore([best_in_passage[p] for p in passages])
        lead_match = _zscore(_bm25(_terms(question), leads))
        strength = {p: f + self.lead_weight * m for p, f, m in zip(passages, first, lead_match, strict=True)}
        titles = {p: _title_key(headings[p]) for p in passages if headings and p < len(headings)}
        if self.title_weight and titles:
            # A passage whose title the question names is evidence for it however its sentences
            # score: both sides of "which is older, A or B?" and the subject of "Which A ...".
            asked_text = _plain(question)
            for p, title in titles.items():
                if title and _mentions(asked_text, title):
                    strength[p] += self.title_weight
        if not self.hop_weight:
            return strength
        top = max(passages, key=strength.__getitem__)
        if self.title_weight and titles and combined is not None:
            # Bridge by title: a passage named in the strongest passage's best sentences is the
            # second hop of a multi-hop question (the entity the first hop's evidence points to).
            best_units = sorted((i for i, u in enumerate(units) if u.passage == top), key=lambda i: -combined[i])[:2]
            evidence = _plain(" ".join(units[i].text for i in best_units))
            for p, title in titles.items():
                if p != top and title and _mentions(evidence, title):
                    strength[p] += self.title_weight
        asked = set(_terms(question))
        names = {w.lower() for text in raw[top] for w in _NAME.findall(text)} - asked - _STOPWORDS
        others = [p for p in passages if p != top]
        if names and others:
            hop = _zscore(_bm25(sorted(names), [leads[passages.index(p)] for p in others]))
            for p, h in zip(others, hop, strict=True):
                strength[p] += self.hop_weight * h
        return strength

    def _expand(self, units: Sequence[Unit], texts: list[str], question: str, scores: list[float]) -> list[float]:
        """Second hop: names in the two best sentences that the question does not mention become
        extra query terms (the bridge entity of a multi-hop question), rescored lexically."""
        top = sorted(range(len(units)), key=lambda i: -scores[i])[:2]
        asked = set(_terms(question))
        names = {w.lower() for i in top for w in _NAME.findall(texts[i])} - asked - _STOPWORDS
        if not names:
            return scores
        second = _zscore(_bm25(sorted(names), [_terms(t) for t in texts]))
        top_passages = {units[i].passage for i in top}
        return [s + self.expansion_weight * x * (units[i].passage not in top_passages)
                for i, (s, x) in enumerate(zip(scores, second, strict=True))]

    def _semantic(self, texts: list[str], question: str | None, lexical: list[float]) -> tuple[list[float], Any]:
        """Each text's similarity to the question (or the centroid), and its embedding (a zero row
        for a text left unembedded)."""
        import numpy as np

        # Very long contexts: embed the lexically most promising units (or an even sample without
        # a question) so a 1M-character context stays bounded in time.
        indices = list(range(len(texts)))
        if len(texts) > self.max_embedded_units:
            if question:
                indices = sorted(sorted(indices, key=lambda i: -lexical[i])[: self.max_embedded_units])
            else:
                step = len(texts) / self.max_embedded_units
                indices = sorted({int(k * step) for k in range(self.max_embedded_units)})
        # A sentence that is its own only unit appears twice in ``texts``: embed each text once, and
        # the question in the same batch (one model call per compression).
        unique = list(dict.fromkeys(texts[i] for i in indices))
        row = {text: k for k, text in enumerate(unique)}
        vectors: Any = self.embedder.encode([*unique, question] if question else unique)
        anchor = vectors[-1] if question else vectors.mean(axis=0)
        sims = vectors[: len(unique)] @ anchor
        out = [float(np.min(sims)) if len(sims) else 0.0] * len(texts)
        embedded = np.zeros((len(texts), vectors.shape[1]))
        for i in indices:
            out[i] = float(sims[row[texts[i]]])
            embedded[i] = vectors[row[texts[i]]]
        return out, embedded


@dataclass(frozen=True, slots=True)
class AutoPolicy:
    """How ``CompressionBudget(ratio="auto")`` decides how much to keep, from the scorer's own
    relevance scores; gaps are in standard deviations of the context's unit scores, so the rule
    reads the same on a 5-sentence passage and on 20 retrieved passages.

    One passage: keep the units within ``sentence_gap`` of the best (the evidence sentences; the
    rest of a short passage goes). Several passages: keep whole every passage whose best unit is
    within ``passage_gap`` of the overall best (the passage the answer sits in, with its context),
    plus any unit of another passage within ``evidence_gap`` of the best (a second hop's fact);
    passages with neither are dropped whole. The values were chosen on the dev half of the shared
    SQuAD / NQ / HotpotQA files (``lean-inference bench compression``'s split), not per example.
    """

    sentence_gap: float = 1.5
    """One passage: keep units scoring within this many standard deviations of the best, >= 0."""
    passage_gap: float = 1.5
    """Several passages: keep whole the passages whose best unit is this close to the best, >= 0."""
    evidence_gap: float = 2.5
    """Several passages: also keep single units this close to the best, >= 0."""

    def keep(self, units: Sequence[Unit], scores: Sequence[float]) -> list[int]:
        """Indices of the units the criterion keeps (never empty for a non-empty context)."""
        if not units:
            return []
        best = max(scores)
        spread = _std(scores) or 1.0
        best_in: dict[int, float] = {}
        for unit, value in zip(units, scores, strict=True):
            best_in[unit.passage] = max(best_in.get(unit.passage, -math.inf), value)
        if len(best_in) == 1:
            return [i for i, v in enumerate(scores) if v >= best - self.sentence_gap * spread]
        whole = {p for p, v in best_in.items() if v >= best - self.passage_gap * spread}
        return [i for i, (unit, v) in enumerate(zip(units, scores, strict=True))
                if unit.passage in whole or v >= best - self.evidence_gap * spread]


def _passage_vectors(rows: Any, row_passage: Sequence[int]) -> dict[int, Any]:
    """Each passage's direction: the normalised sum of its sentences' embeddings."""
    import numpy as np

    out: dict[int, Any] = {}
    for passage in dict.fromkeys(row_passage):
        total = rows[[k for k, p in enumerate(row_passage) if p == passage]].sum(axis=0)
        norm = float(np.linalg.norm(total))
        out[passage] = total / norm if norm else total
    return out


def _std(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
