"""LLMLingua2Compressor: question-aware coarse selection, then LLMLingua-2 token classification.

LLMLingua-2 (llmlingua 0.2.2, ``PromptCompressor(..., use_llmlingua2=True)``) labels every token
of the context "keep" or "drop" with a small encoder (XLM-RoBERTa or multilingual BERT). It is
fast and faithful, but as shipped it:

* ignores the question (upstream #128): so the project's query-aware sentence selection
  (:class:`~lean_core.compression.lean.LeanCompressor`) runs first and keeps ``coarse_factor`` x
  the target of the relevant sentences; the classifier only thins what is left;
* ignores ``<llmlingua, compress=False>`` segments (#114; checked against 0.2.2: its v2 branch
  never reads them, and ``structured_compress_prompt`` fails outright) and rebuilds its output from
  tokenizer pieces, which splits numbers and identifiers ("3.5" -> "3 . 5"). So every protected span
  is replaced by a placeholder that llmlingua's ``force_tokens`` keeps, and the original span,
  byte for byte, is put back in its place afterwards (or the span is left out, never altered);
* counts its rate in GPT-3.5 tokens and ranks words per 512-token chunk, so the budget is
  re-checked in the *target* model's tokens, compressed again with a tighter rate if needed and,
  as a last resort, trimmed at a word boundary that never cuts a span.

With transformers 5 the LLMLingua-2 path needs no compatibility layer (it keeps no KV cache):
contexts longer than the encoder's 512 positions are chunked by llmlingua and work. The checkpoint
loads on first use, with remote code off, offline unless ``local_files_only=False``, and the global
random state llmlingua reseeds is restored.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from lean_core._extras import require
from lean_core.compression._checks import (
    check_bool,
    check_context,
    check_instance,
    check_protection,
    check_question,
    check_titles,
)
from lean_core.compression._llmlingua_spans import pick_markers
from lean_core.compression.base import Compressor, ContextInput
from lean_core.compression.llmlingua_backend import _preserved_global_state, _trim_to
from lean_core.compression.protect import DEFAULT_PROTECTED_KINDS, find_protected_spans
from lean_core.compression.types import CompressionBudget, CompressionResult
from lean_core.errors import InvalidParameterError
from lean_core.tokens import TokenCounter

__all__ = ["LLMLingua2Compressor"]

_FEATURE = "LLMLingua2Compressor"
# llmlingua picks its word-merging rules (and special tokens) by substrings of the model *name*
# (utils.is_begin_of_new_word); a local directory is named after its family so either works.
_FAMILIES = {"xlm-roberta": "xlm-roberta-large", "bert": "bert-base-multilingual-cased"}
# llmlingua computes np.percentile(..., int(100 * (1 - rate) + 1)): a rate under 0.01 asks for
# the 101st percentile and raises; 0.02 keeps it in range with a margin.
_MIN_LIBRARY_RATE = 0.02
_SPACES_AROUND_NEWLINE = re.compile(r"[ \t]*\n[ \t]*")
_SPACE_RUN = re.compile(r"[ \t]{2,}")


class _Classifier:
    """llmlingua's LLMLingua-2 ``PromptCompressor`` of one checkpoint, loaded on first use."""

    def __init__(self, model_path: str, device: str, local_files_only: bool) -> None:
        self.model_path = model_path
        self.device = device
        self.local_files_only = local_files_only
        self.compressor: Any = None
        self.lock = threading.RLock()  # llmlingua keeps state on the instance: one call at a time

    def load(self) -> Any:
        with self.lock:
            if self.compressor is not None:
                return self.compressor
            transformers = require("transformers", extra="compression", feature=_FEATURE)
            llmlingua = require("llmlingua", extra="compression", feature=_FEATURE)
            from lean_core.assets import seed_tiktoken_cache

            options = {"trust_remote_code": False, "local_files_only": self.local_files_only}
            try:
                config = transformers.AutoConfig.from_pretrained(self.model_path, **options)
            except (OSError, ValueError) as exc:
                where = "a local checkpoint directory" if self.local_files_only else \
                    "a local checkpoint directory or a reachable hub name"
                raise InvalidParameterError("model_path", allowed=f"{where} (config.json)",
                                            received=self.model_path) from exc
            family = _FAMILIES.get(getattr(config, "model_type", ""))
            if family is None or not any("ForTokenClassification" in a for a in config.architectures or ()):
                raise InvalidParameterError(
                    "model_path", allowed="an LLMLingua-2 token classifier (*ForTokenClassification, "
                    "model_type 'xlm-roberta' or 'bert')", received=self.model_path)
            seed_tiktoken_cache()  # PromptCompressor loads tiktoken's cl100k_base in its constructor
            with _preserved_global_state():  # init_llmlingua2 calls seed_everything(42)
                compressor = llmlingua.PromptCompressor(
                    model_name=self.model_path, device_map=self.device, use_llmlingua2=True,
                    model_config=dict(options))
            compressor.model_name = f"{self.model_path} ({family})"
            self.compressor = compressor
            return compressor


class LLMLingua2Compressor(Compressor):
    """Query-aware sentence selection, then LLMLingua-2 token classification, under a hard budget.

    Args:
        model_path: an LLMLingua-2 token-classification checkpoint: a local directory (e.g. a
            downloaded ``microsoft/llmlingua-2-xlm-roberta-large-meetingbank`` or
            ``microsoft/llmlingua-2-bert-base-multilingual-cased-meetingbank``), or such a hub name
            already in the Hugging Face cache. Nothing is read until the first compression.
        device: torch device of the classifier: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"``, ``"mps"``.
        local_files_only: True (default) never downloads: a hub name must already be cached.
            False lets transformers fetch a hub name on first use (machines that can reach the hub).
        coarse: the question-aware first stage (default: :class:`LeanCompressor` with the same
            protected spans). LLMLingua-2 ignores the question, so this stage decides relevance.
        coarse_factor: how much more than the final target the coarse stage keeps, in [1, 10];
            1 leaves the classifier nothing to do, larger leaves it more to choose from.
        max_attempts: classifier runs per call, in [1, 5]; each retry asks for
            ``target / achieved`` less. If the last is still over, the end is trimmed by words.
        force_tokens: words llmlingua always keeps (its ``force_tokens``), at most 50; default
            ``("\\n",)`` keeps passage and line breaks.
        token_counter: counts the budget in ``budget.target_model``'s tokenizer.
        protect_kinds / protect_patterns: protected spans (see ``find_protected_spans``): each comes
            out byte for byte or not at all, in both stages.
    """

    name = "llmlingua2"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        local_files_only: bool = True,
        coarse: Compressor | None = None,
        coarse_factor: float = 2.0,
        max_attempts: int = 2,
        force_tokens: Sequence[str] = ("\n",),
        token_counter: TokenCounter | None = None,
        protect_kinds: Sequence[str] = DEFAULT_PROTECTED_KINDS,
        protect_patterns: Sequence[str] = (),
    ) -> None:
        if isinstance(model_path, os.PathLike):
            model_path = os.fspath(model_path)
        if not isinstance(model_path, str) or not model_path.strip():
            raise InvalidParameterError("model_path", allowed="a checkpoint directory or hub name (str or "
                                        "os.PathLike)", received=model_path if model_path is None else
                                        type(model_path).__name__)
        if not isinstance(device, str) or not re.fullmatch(r"cpu|mps|cuda(:\d+)?", device):
            raise InvalidParameterError("device", allowed="'cpu', 'cuda', 'cuda:N' or 'mps'", received=device)
        check_bool("local_files_only", local_files_only)
        check_instance("coarse", coarse, Compressor, "a Compressor")
        if isinstance(coarse_factor, bool) or not isinstance(coarse_factor, int | float) \
                or not 1.0 <= coarse_factor <= 10.0:
            raise InvalidParameterError("coarse_factor", allowed="a number in [1, 10]", received=coarse_factor)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or not 1 <= max_attempts <= 5:
            raise InvalidParameterError("max_attempts", allowed="an int in [1, 5]", received=max_attempts)
        if isinstance(force_tokens, str) or not isinstance(force_tokens, Sequence) or len(force_tokens) > 50 \
                or not all(isinstance(t, str) and t for t in force_tokens):
            raise InvalidParameterError("force_tokens", allowed="a sequence of at most 50 non-empty str",
                                        received=force_tokens if isinstance(force_tokens, str) else
                                        type(force_tokens).__name__)
        check_instance("token_counter", token_counter, TokenCounter, "a TokenCounter")
        kinds, self._patterns = check_protection(protect_kinds, protect_patterns)
        self.model_path = os.path.expanduser(model_path)
        self.device = device
        self.local_files_only = local_files_only
        self.coarse_factor = float(coarse_factor)
        self.max_attempts = max_attempts
        self.force_tokens = tuple(force_tokens)
        self.counter = token_counter or TokenCounter()
        self.protect_kinds = kinds
        self.protect_patterns = tuple(protect_patterns)
        if coarse is None:  # no I/O: LeanCompressor loads its embedder on first use
            from lean_core.compression.lean import LeanCompressor

            coarse = LeanCompressor(token_counter=self.counter, protect_kinds=kinds,
                                    protect_patterns=self.protect_patterns)
        self.coarse = coarse
        self._classifier = _Classifier(self.model_path, device, local_files_only)

    def load(self) -> None:
        """Load the classifier now (otherwise it loads on the first compression); idempotent."""
        self._classifier.load()

    def compress(self, context: ContextInput, *, budget: CompressionBudget | float,
                 question: str | None = None,
                 titles: Sequence[str | None] | None = None) -> CompressionResult:
        """``question`` and ``titles`` guide the coarse stage (the classifier reads neither)."""
        started = time.perf_counter()
        budget = CompressionBudget.of(budget)
        passages = check_context(context)
        check_titles(titles, len(passages))
        question = check_question(question)
        model = budget.target_model
        original = self.counter.count("\n\n".join(p for p in passages if p.strip()), model)
        target = budget.tokens_for(original.tokens) if original.tokens else 0
        if original.tokens <= target:  # the coarse stage passes it through and says so
            return self.coarse.compress(context, budget=budget, question=question, titles=titles).model_copy(
                update={"method": self.name})
        wide = min(original.tokens, max(target, round(target * self.coarse_factor)))
        first = self.coarse.compress(context, budget=CompressionBudget(target_tokens=wide, target_model=model),
                                     question=question, titles=titles)
        self.load()
        count: Callable[[str], int] = lambda text: self.counter.count(text, model).tokens  # noqa: E731
        with self._classifier.lock:
            text, protected, attempts, trimmed = self._fit(first.text, target, count)
        compressed = count(text)
        notes = [f"{first.method}: {first.note}"] if first.note else []
        notes.append(f"{attempts} LLMLingua-2 run(s)")
        if trimmed:
            notes.append(f"{trimmed} tokens trimmed from the end to fit")
        return CompressionResult(
            text=text, method=self.name, original_tokens=original.tokens, compressed_tokens=compressed,
            target_tokens=target, tokenizer=original.tokenizer, estimated_counts=original.estimated,
            budget_met=compressed <= target, protected_spans=max(first.protected_spans, protected),
            dropped=first.dropped, seconds=time.perf_counter() - started, note="; ".join(notes))

    # -- the fine stage -----------------------------------------------------------------------------
    def _fit(self, text: str, target: int, count: Callable[[str], int]) -> tuple[str, int, int, int]:
        """``text`` classified down to ``target`` tokens; retried tighter, trimmed as a last resort.

        Returns (text, protected spans found, classifier runs, tokens trimmed)."""
        if count(text) <= target:
            return text, 0, 0, 0
        spans = find_protected_spans(text, kinds=self.protect_kinds, patterns=self._patterns)
        span_texts = [span.text(text) for span in spans]
        markers = pick_markers([text, *self.force_tokens])
        if markers is None:
            raise InvalidParameterError("context", allowed="text leaving 3 of U+E000..U+E0FF (private use) unused",
                                        received="a context using nearly every stand-in character")
        # Two distinct private-use characters with a space between: absent from the text, and more
        # (or fewer) than one tokenizer token, so llmlingua maps it to one added special token that
        # its force_tokens keep, and writes it back verbatim.
        placeholder = f"{markers.open} {markers.close}"
        pieces: list[str] = []
        position = 0
        for span in spans:
            pieces.append(text[position:span.start])
            pieces.append(f" {placeholder} ")  # spaced: a span never fuses with a neighbouring word
            position = span.end
        pieces.append(text[position:])
        masked = "".join(pieces)
        free_tokens = count(masked.replace(placeholder, ""))
        span_cost = count(" ".join(span_texts)) if span_texts else 0
        aim = float(target)
        out, tokens = text, count(text)
        located: list[tuple[int, int]] = []
        for attempt in range(1, self.max_attempts + 1):
            free_rate = max(0.0, aim - span_cost) / max(1, free_tokens)
            out, located = self._classify(masked, placeholder, span_texts, free_rate)
            tokens = count(out)
            if tokens <= target:
                return out, len(spans), attempt, 0
            aim *= 0.95 * target / tokens
        trimmed = _trim_to(out, target, count, keep_whole=located)
        return trimmed, len(spans), self.max_attempts, tokens - count(trimmed)

    def _classify(self, masked: str, placeholder: str, span_texts: Sequence[str],
                  free_rate: float) -> tuple[str, list[tuple[int, int]]]:
        """One llmlingua LLMLingua-2 run keeping about ``free_rate`` of the free text; the spans
        put back. Returns the text and where the restored spans sit in it."""
        compressor = self._classifier.compressor
        forced = [*self.force_tokens, placeholder]
        # llmlingua ranks all words, forced ones (probability 1) included, against one percentile
        # of GPT-3.5 tokens: ask for the forced share on top of the free text's share.
        oai = compressor.oai_tokenizer
        total = max(1, len(oai.encode(masked)))
        forced_share = min(1.0, sum(masked.count(t) * len(oai.encode(t)) for t in forced) / total)
        rate = min(1.0, max(_MIN_LIBRARY_RATE, forced_share + (1.0 - forced_share) * free_rate))
        result = compressor.compress_prompt([masked], rate=rate, force_tokens=forced,
                                            use_context_level_filter=False)
        return _restore(str(result["compressed_prompt"]), placeholder, span_texts)


def _restore(text: str, placeholder: str, span_texts: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """llmlingua's output with each placeholder replaced, in order, by its original span.

    Forced words are always kept, so every placeholder should come back; if their number differs
    (a change in llmlingua), no span can be matched to its place and all are left out rather than
    risk one in the wrong place. Whitespace is tidied before the spans go in, never inside them."""
    parts = _SPACE_RUN.sub(" ", _SPACES_AROUND_NEWLINE.sub("\n", text)).split(placeholder)
    # A marker character left on its own (never seen so far) is not text of the input: drop it.
    parts = [re.sub(f"[{re.escape(placeholder[0] + placeholder[-1])}]", "", part) for part in parts]
    if len(parts) - 1 != len(span_texts):
        span_texts = [""] * (len(parts) - 1)
    parts[0], parts[-1] = parts[0].lstrip(), parts[-1].rstrip()
    out: list[str] = [parts[0]]
    located: list[tuple[int, int]] = []
    length = len(parts[0])
    for span, part in zip(span_texts, parts[1:], strict=True):
        if span and out[-1] and out[-1][-1].isalnum():  # never fuse a span with a word
            out.append(" ")
            length += 1
        if span:
            located.append((length, length + len(span)))
        if span and part and part[0].isalnum():
            part = " " + part
        out.extend((span, part))
        length += len(span) + len(part)
    return "".join(out), located
