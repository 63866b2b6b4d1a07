"""Answer equivalence: would serving the cached answer have been right, given the fresh one?

An error-bounded cache (``ResponseCache(max_error_rate=...)``) learns where it may serve from
exploration: a candidate hit is sent to the model anyway and the fresh answer is compared with the
cached one. The comparison is this module's job. Every check takes two payloads (as adapters
store them, or plain answers: see :func:`answer_text`) and says whether they give the same answer:

* :class:`NormalizedExactMatch`: equal after folding case, whitespace, punctuation and articles
  (short answers: "Paris." / "paris");
* :class:`EmbeddingEquivalence`: cosine of the two answers' MiniLM embeddings above a threshold;
* :class:`FactsAgree`: the same numbers, named entities and negation, read by the cache's
  own near-miss vetoes (:func:`lean_core.cache.pair_features`), so "1889" / "1887" and
  "Paris" / "Lyon" differ however close the sentences are;
* :class:`JudgeEquivalence`: a judge model (any LangChain chat model or LlamaIndex LLM) asked
  yes or no; a failure, a timeout or an unreadable reply counts as "not equivalent" and is counted;
* :class:`AllOf` / :class:`AnyOf` combine checks; :func:`default_answer_equivalence` is
  exact match, else facts agree and embeddings agree.

A wrong "equivalent" teaches the cache to serve where it should not, so each check errs towards
"not equivalent". Measured false-equivalence rates: ``lean-inference bench answer-equivalence``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from lean_core.cache._answer_text import answer_text
from lean_core.cache.normalize import fold_for_matching
from lean_core.errors import InvalidParameterError

if TYPE_CHECKING:
    from lean_core.embeddings import Embedder

__all__ = [
    "AllOf",
    "AnswerEquivalence",
    "AnyOf",
    "EmbeddingEquivalence",
    "FactsAgree",
    "JudgeEquivalence",
    "JudgeFailures",
    "NormalizedExactMatch",
    "answer_text",
    "default_answer_equivalence",
    "normalized_answer",
]

_log = logging.getLogger(__name__)
_ARTICLES = frozenset({"a", "an", "the"})
# Words, and numbers with their sign and decimals ("-20" is not "20", "3.5" is not "35").
_ANSWER_TOKEN = re.compile(r"(?<![\w-])-?\d+(?:[.,]\d+)*|[^\W_]+")


@runtime_checkable
class AnswerEquivalence(Protocol):
    """Says whether a fresh answer is the same answer as a cached one (payloads or plain text)."""

    def equivalent(self, cached: str, fresh: str) -> bool: ...

    async def aequivalent(self, cached: str, fresh: str) -> bool: ...


class _Check:
    """Shared parts: payloads become answer text once; the async form defaults to the sync one
    (every check here but the embedding and the judge is pure string work)."""

    def equivalent(self, cached: str, fresh: str) -> bool:
        return self._same(answer_text(_checked("cached", cached)), answer_text(_checked("fresh", fresh)))

    async def aequivalent(self, cached: str, fresh: str) -> bool:
        return self.equivalent(cached, fresh)

    def _same(self, cached: str, fresh: str) -> bool:
        raise NotImplementedError


class NormalizedExactMatch(_Check):
    """Equal after NFKC, case folding, punctuation removed, articles dropped and whitespace
    collapsed: "The Eiffel Tower." equals "eiffel tower". Made for short answers; long ones
    rarely match exactly and are left to the other checks."""

    def _same(self, cached: str, fresh: str) -> bool:
        return normalized_answer(cached) == normalized_answer(fresh)


def normalized_answer(text: str) -> str:
    """``text`` folded as :class:`NormalizedExactMatch` compares it."""
    tokens = _ANSWER_TOKEN.findall(fold_for_matching(text).casefold())
    return " ".join(w for w in tokens if w not in _ARTICLES)


class EmbeddingEquivalence(_Check):
    """Cosine of the two answers' embeddings (default the bundled MiniLM) >= ``threshold``.

    Args:
        threshold: the cosine from which two answers count as the same, in (0, 1]. Alone it is
            not safe at any threshold: on the bundled answer pairs
            (``benchmarks/data/answer_equivalence_pairs.jsonl``) 0.9 still calls 31 % of changed
            numbers, names and negations equivalent. Behind :class:`FactsAgree` (the default chain)
            0.9 made no false equivalence there; 0.8 made none either and misses fewer paraphrases,
            but the set is small and was written alongside this code, so the default stays strict.
        embedder: the sentence embedder; default :func:`lean_core.embeddings.default_embedder`,
            loaded on first use.
    """

    def __init__(self, *, threshold: float = 0.9, embedder: Embedder | None = None) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 < threshold <= 1.0:
            raise InvalidParameterError("threshold", allowed="a cosine in (0, 1]", received=threshold)
        self.threshold = float(threshold)
        self._embedder = embedder

    def similarity(self, cached: str, fresh: str) -> float:
        """Cosine of the two answers (payloads are read with :func:`answer_text`)."""
        a, b = answer_text(_checked("cached", cached)), answer_text(_checked("fresh", fresh))
        if a == b:
            return 1.0
        if self._embedder is None:
            from lean_core.embeddings import default_embedder

            self._embedder = default_embedder()
        from lean_core.cache.response_cache import embeddable

        vectors = self._embedder.encode([embeddable(a), embeddable(b)])
        return float(vectors[0] @ vectors[1])

    def equivalent(self, cached: str, fresh: str) -> bool:
        return self.similarity(cached, fresh) >= self.threshold

    async def aequivalent(self, cached: str, fresh: str) -> bool:
        # Embedding is CPU work: off the event loop.
        return await asyncio.to_thread(self.equivalent, cached, fresh)


class FactsAgree(_Check):
    """The two answers state the same facts as far as the cache's vetoes can read them: the same
    numbers (:func:`lean_core.cache._vetoes.numbers`), the same named entities, the same negation,
    no opposite words, times, dates, units or currencies that differ (the hard vetoes of
    :func:`lean_core.cache.pair_features`, applied to answers instead of prompts; its "roles
    swapped" is not used, since answers restate freely).

    It says nothing about the rest of the wording: combine it with a similarity check
    (:func:`default_answer_equivalence`)."""

    def reason(self, cached: str, fresh: str) -> str | None:
        """Why the answers differ ("numbers differ", "named entities differ", ...), or None."""
        from lean_core.cache.pair_features import pair_features

        a, b = answer_text(_checked("cached", cached)), answer_text(_checked("fresh", fresh))
        if a == b:
            return None
        features = pair_features(a, b, 1.0)
        # Roles are left out: answers restate freely ("Paris is the capital" / "The capital is
        # Paris"), and the swap test reads such restatements as swapped roles.
        if features.number_mismatch:
            return "numbers differ"
        if features.entity_mismatch:
            return "named entities differ"
        if features.negation_mismatch:
            return "negation differs"
        return features.near_miss

    def equivalent(self, cached: str, fresh: str) -> bool:
        return self.reason(cached, fresh) is None


class _Combined:
    def __init__(self, *checks: AnswerEquivalence | Callable[[str, str], bool]) -> None:
        if not checks:
            raise InvalidParameterError("checks", allowed="at least one AnswerEquivalence", received=0)
        for check in checks:
            if not isinstance(check, AnswerEquivalence) and not callable(check):
                raise InvalidParameterError("checks", allowed="AnswerEquivalence objects or callables (cached, "
                                            "fresh) -> bool", received=type(check).__name__)
        self.checks: tuple[AnswerEquivalence | Callable[[str, str], bool], ...] = checks

    @staticmethod
    def _one(check: AnswerEquivalence | Callable[[str, str], bool], cached: str, fresh: str) -> bool:
        if isinstance(check, AnswerEquivalence):
            return check.equivalent(cached, fresh)
        return bool(check(cached, fresh))

    @staticmethod
    async def _aone(check: AnswerEquivalence | Callable[[str, str], bool], cached: str, fresh: str) -> bool:
        if isinstance(check, AnswerEquivalence):
            return await check.aequivalent(cached, fresh)
        return bool(check(cached, fresh))


class AllOf(_Combined):
    """Equivalent when every check says so; checks run in order and stop at the first "no"
    (put the cheap ones first)."""

    def equivalent(self, cached: str, fresh: str) -> bool:
        return all(self._one(c, cached, fresh) for c in self.checks)

    async def aequivalent(self, cached: str, fresh: str) -> bool:
        for check in self.checks:
            if not await self._aone(check, cached, fresh):
                return False
        return True


class AnyOf(_Combined):
    """Equivalent when one check says so; checks run in order and stop at the first "yes"."""

    def equivalent(self, cached: str, fresh: str) -> bool:
        return any(self._one(c, cached, fresh) for c in self.checks)

    async def aequivalent(self, cached: str, fresh: str) -> bool:
        for check in self.checks:
            if await self._aone(check, cached, fresh):
                return True
        return False


def default_answer_equivalence(*, embedder: Embedder | None = None, threshold: float = 0.9) -> AnyOf:
    """Normalised exact match, else (facts agree and embeddings agree at ``threshold``)."""
    return AnyOf(NormalizedExactMatch(), AllOf(FactsAgree(), EmbeddingEquivalence(threshold=threshold,
                                                                                  embedder=embedder)))


# -- judge ----------------------------------------------------------------------------------------
JUDGE_PROMPT = (
    "You compare two answers to the same request. Do they give the same answer: the same facts, "
    "numbers, names and conclusion (wording may differ)? Reply with one word, yes or no.\n\n"
    "Answer A:\n{cached}\n\nAnswer B:\n{fresh}\n\nSame answer (yes or no)?")
"""The judge's prompt; ``{cached}`` and ``{fresh}`` are replaced by the two answers."""


@dataclass
class JudgeFailures:
    """Judge calls that gave no verdict; each counted as "not equivalent"."""

    errors: int = 0
    """The judge raised."""
    timeouts: int = 0
    """The judge did not answer within ``timeout_s``."""
    unreadable: int = 0
    """The reply was neither yes nor no."""

    @property
    def total(self) -> int:
        return self.errors + self.timeouts + self.unreadable


class JudgeEquivalence(_Check):
    """A judge model asked whether the two answers are the same (yes / no).

    The judge is duck-typed: a LangChain chat model or LLM (``invoke`` / ``ainvoke``) or a
    LlamaIndex LLM (``complete`` / ``acomplete``). A judge that raises, does not answer within
    ``timeout_s`` or replies anything but yes/no counts as "not equivalent" (a wrong "yes" would
    teach the cache to serve wrong answers; a wrong "no" only costs a model call), is counted in
    :attr:`failures` and logged (the first of each kind as a warning, then at debug level).

    A synchronous call that times out is abandoned, not interrupted: its worker thread finishes in
    the background (Python cannot stop a thread); ``max_pending`` bounds how many may hang at once.

    Args:
        judge: the model.
        timeout_s: seconds a verdict may take, > 0.
        prompt: the question, with ``{cached}`` and ``{fresh}`` placeholders.
        max_pending: judge calls that may run at once from sync callers, >= 1.
    """

    def __init__(self, judge: Any, *, timeout_s: float = 10.0, prompt: str = JUDGE_PROMPT,
                 max_pending: int = 4) -> None:
        if not (hasattr(judge, "invoke") or hasattr(judge, "complete")):
            raise InvalidParameterError("judge", allowed="a LangChain chat model / LLM (invoke) or a LlamaIndex "
                                        "LLM (complete)", received=type(judge).__name__)
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not 0 < timeout_s <= 3600:
            raise InvalidParameterError("timeout_s", allowed="seconds in (0, 3600]", received=timeout_s)
        if not isinstance(prompt, str) or "{cached}" not in prompt or "{fresh}" not in prompt:
            raise InvalidParameterError("prompt", allowed="a str with {cached} and {fresh} placeholders",
                                        received=prompt)
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise InvalidParameterError("max_pending", allowed="an int >= 1", received=max_pending)
        self.judge = judge
        self.timeout_s = float(timeout_s)
        self.prompt = prompt
        self.max_pending = max_pending
        self.failures = JudgeFailures()
        self.verdicts = 0
        """Calls that returned yes or no."""
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None

    def _question(self, cached: str, fresh: str) -> str:
        a, b = answer_text(_checked("cached", cached)), answer_text(_checked("fresh", fresh))
        return self.prompt.replace("{cached}", a).replace("{fresh}", b)

    def equivalent(self, cached: str, fresh: str) -> bool:
        question = self._question(cached, fresh)
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.max_pending, thread_name_prefix="lean-judge")
            pool = self._pool
        future = pool.submit(self._call, question)
        try:
            reply = future.result(timeout=self.timeout_s)
        except FutureTimeout:
            return self._failed("timeouts", f"no verdict within {self.timeout_s:g} s")
        except Exception as exc:  # any judge failure is a "no", never an error of the cache
            return self._failed("errors", f"{type(exc).__name__}: {exc}")
        return self._verdict(reply)

    async def aequivalent(self, cached: str, fresh: str) -> bool:
        question = self._question(cached, fresh)
        try:
            reply = await asyncio.wait_for(self._acall(question), timeout=self.timeout_s)
        except TimeoutError:
            return self._failed("timeouts", f"no verdict within {self.timeout_s:g} s")
        except Exception as exc:
            return self._failed("errors", f"{type(exc).__name__}: {exc}")
        return self._verdict(reply)

    def _call(self, question: str) -> str:
        if hasattr(self.judge, "invoke"):
            return _reply_text(self.judge.invoke(question))
        return _reply_text(self.judge.complete(question))

    async def _acall(self, question: str) -> str:
        if hasattr(self.judge, "ainvoke"):
            return _reply_text(await self.judge.ainvoke(question))
        if hasattr(self.judge, "acomplete"):
            return _reply_text(await self.judge.acomplete(question))
        return await asyncio.to_thread(self._call, question)

    def _verdict(self, reply: str) -> bool:
        words = re.findall(r"[a-z]+", reply.casefold())
        first = words[0] if words else ""
        if first in ("yes", "no"):
            with self._lock:
                self.verdicts += 1
            return first == "yes"
        return self._failed("unreadable", f"reply {reply[:80]!r} is neither yes nor no")

    def _failed(self, kind: str, detail: str) -> bool:
        with self._lock:
            setattr(self.failures, kind, getattr(self.failures, kind) + 1)
            first = kind not in self._warned
            self._warned.add(kind)
        log = _log.warning if first else _log.debug
        log("answer-equivalence judge gave no verdict (%s); counted as not equivalent in "
            "JudgeEquivalence.failures.%s", detail[:200], kind)
        return False

    def close(self) -> None:
        """Stop the worker threads of sync calls (hanging ones finish in the background)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _reply_text(reply: Any) -> str:
    """The text of a LangChain message / str or a LlamaIndex ``CompletionResponse``."""
    if isinstance(reply, str):
        return reply
    content = getattr(reply, "content", None)
    if content is None:
        content = getattr(reply, "text", None)
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in content
                       if isinstance(p, str | dict))
    raise TypeError(f"a judge reply of type {type(reply).__name__} without text")


def _checked(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidParameterError(name, allowed="a str (an answer or a cached payload)",
                                    received=type(value).__name__)
    return value

