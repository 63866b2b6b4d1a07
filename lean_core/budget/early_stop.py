"""Early stopping for local models: end a generation once its answer is complete.

Three signals, all read token by token from what the engine already computes:

* **confidence**: the distribution a token was drawn from gives the end-of-sequence token at least
  ``eos_probability`` while the text so far ends at a sentence or line boundary. The model itself
  considered the answer complete; what greedy decoding would add is optional elaboration.
* **repetition**: the last ``repetition_tokens`` tokens already occurred in this output. Small
  models fall into loops that run to the budget; the loop adds no content, so the output is cut
  where the repeat began (back to the last sentence boundary).
* **sentences**: the answer already holds ``sentences`` complete sentences. The budget policy sets
  one for a question that asks for a single fact (``lean_core.budget.policy``): what a small model
  adds after that sentence is elaboration, which is most of what such an answer costs.

The monitor is framework-free; the local vLLM engine feeds it (see ``lean_backends.vllm_engine``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

__all__ = ["EarlyStopMonitor", "EarlyStopReason", "EarlyStopRule"]

EarlyStopReason = Literal["confidence", "repetition", "sentences"]

_BOUNDARY = (".", "!", "?", "\n", ":", ";", '"', ")")
# A repeat cut keeps the text up to its last boundary only when that keeps most of the text;
# otherwise the partial sentence is kept (dropping it would drop the answer).
_MIN_KEPT_SHARE = 0.5
# A sentence ends at . ! or ? (closing quotes and brackets may follow) when the next token starts
# with whitespace; "3.5" or "example.com" never do.
_SENTENCE_END = re.compile(r"\w[^\w\s]*[.!?][\"')\]\u201d\u2019]*$")
# ... but not after an initial or an acronym ("J. K. Rowling", "U.S. Army"), a common abbreviation
# or a list number at the start of a line ("1. Paris").
_NOT_AN_END = re.compile(
    r"(?:(?:^|[\s(\"'])(?:[A-Za-z](?:\.[A-Za-z])*|Mr|Mrs|Ms|Dr|Prof|St|Mt|Ft|Jr|Sr|No|vs|etc|Inc|Ltd|Co|Gen|Lt|"
    r"Col|Capt|Sgt|Rev|Gov|Sen|Rep|Jan|Feb|Mar|Apr|Aug|Sept?|Oct|Nov|Dec|approx|ca)|(?:^|\n)\s*\d{1,3})\.$")


class EarlyStopRule(BaseModel):
    """When to end a local generation early (both signals can be switched off)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    eos_probability: float | None = Field(0.3, gt=0.0, le=1.0)
    """Stop at a boundary once the end-of-sequence token has at least this probability, in (0, 1];
    None switches the confidence signal off."""
    repetition_tokens: StrictInt = Field(16, ge=0)
    """Stop when the last this-many tokens already occurred in the output (0 switches it off).
    16 fired on every looping answer of SmolLM2 and on no normal answer in our probes."""
    min_tokens: StrictInt = Field(4, ge=0)
    """Never stop for confidence before this many tokens."""
    top_logprobs: StrictInt = Field(5, ge=1, le=20)
    """Alternatives requested per token; the end token is seen only when it is among them."""
    sentences: StrictInt | None = Field(None, ge=1)
    """Stop once the answer holds this many complete sentences (>= 1); None: no limit. A sentence
    ends at ``.``, ``!`` or ``?`` before whitespace, not after an initial, an acronym, a common
    abbreviation or a list number. The budget policy sets it per question (``BudgetOptions.fact_sentences``)."""


class EarlyStopMonitor:
    """Consumes one generated token at a time and says when the answer is complete.

    ``push`` is given each token with the log-probabilities of the distribution it was drawn from
    (top alternatives, as vLLM reports them). It returns False once generation should end; the
    token that triggered a confidence stop is not part of the answer.
    """

    def __init__(self, rule: EarlyStopRule, *, eos_token_ids: Collection[int],
                 decode: Callable[[list[int]], str]) -> None:
        self.rule = rule
        self._eos = frozenset(eos_token_ids)
        self._decode = decode
        self.token_ids: list[int] = []
        """Tokens accepted into the answer."""
        self.generated = 0
        """Tokens the engine produced (what the request costs), accepted or not."""
        self.reason: EarlyStopReason | None = None
        self._seen: set[tuple[int, ...]] = set()
        self._repeat_start: int | None = None
        self._sentences = 0
        self._decoded = ""  # the accepted tokens, decoded (kept only while counting sentences)

    def push(self, token_id: int, top_logprobs: Mapping[int, float] | None) -> bool:
        """Account one generated token; False means stop now."""
        if self.reason is not None:
            return False
        self.generated += 1
        if token_id in self._eos:  # the model's own end: not an early stop
            return True
        if self._confident_end(top_logprobs):
            self.reason = "confidence"
            return False
        if self._sentence_limit_reached(token_id):
            self.reason = "sentences"
            return False
        self.token_ids.append(token_id)
        k = self.rule.repetition_tokens
        if k and len(self.token_ids) >= k:
            gram = tuple(self.token_ids[-k:])
            if gram in self._seen:
                self.reason = "repetition"
                self._repeat_start = len(self.token_ids) - k
                return False
            self._seen.add(gram)
        return True

    def _confident_end(self, top_logprobs: Mapping[int, float] | None) -> bool:
        threshold = self.rule.eos_probability
        if threshold is None or not top_logprobs or len(self.token_ids) < max(self.rule.min_tokens, 1):
            return False
        import math

        p_end = sum(math.exp(lp) for tid, lp in top_logprobs.items() if tid in self._eos)
        if p_end < threshold:
            return False
        return self._decode(self.token_ids).rstrip(" ").endswith(_BOUNDARY)

    def _sentence_limit_reached(self, token_id: int) -> bool:
        """True when ``token_id`` would start the sentence after the last one allowed (the token
        itself is then not part of the answer)."""
        limit = self.rule.sentences
        if limit is None:
            return False
        before = self._decoded
        after = self._decode([*self.token_ids, token_id])
        self._decoded = after
        if not (after.startswith(before) and after[len(before):][:1].isspace()):
            return False
        if not _SENTENCE_END.search(before) or _NOT_AN_END.search(before):
            return False
        self._sentences += 1
        if self._sentences < limit:
            return False
        self._decoded = before
        return True

    @property
    def text(self) -> str:
        """The answer: accepted tokens, with a repetition loop cut back to its last boundary."""
        if self.reason != "repetition" or self._repeat_start is None:
            return self._decode(self.token_ids)
        text = self._decode(self.token_ids[: self._repeat_start])
        with_next = self._decode(self.token_ids[: self._repeat_start + 1])
        if with_next.rstrip().endswith(_BOUNDARY):  # the repeat starts right after a sentence's end
            return with_next.rstrip()
        last = max(text.rfind(b) for b in _BOUNDARY)
        if last >= 0 and last + 1 >= _MIN_KEPT_SHARE * len(text.rstrip()):
            return text[: last + 1]
        return text
