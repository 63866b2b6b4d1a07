"""LLMLinguaCompressor: token-level LongLLMLingua compression with a hard budget.

llmlingua 0.2.2 scores every token with a small causal LM (perplexity, conditioned on the
question) and drops the least informative ones. This module adds what the library lacks:

* a compatibility layer for transformers >= 5 (llmlingua predates the ``Cache`` objects);
* budgets counted in the *target* model's tokens: llmlingua counts with its scorer's or GPT-3.5's
  tokenizer and overshoots (it never compresses the last partial window), so its rates are
  corrected for that window, and its output is re-checked, compressed again with a tighter target
  and, as a last resort, trimmed at a word boundary, until it fits;
* a lazily loaded, reused, offline scorer (the bundled SmolLM2 by default), with remote code off
  and the global random state left as it was.

``raw=True`` runs llmlingua once as a user would call it (rate = the budget's ratio, no
enforcement), for benchmarks.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lean_core._extras import require
from lean_core.compression._checks import (
    check_bool,
    check_context,
    check_instance,
    check_protection,
    check_question,
    check_titles,
)
from lean_core.compression._llmlingua_spans import pick_ascii_markers, restore_spans, tag_passage
from lean_core.compression.base import Compressor, ContextInput
from lean_core.compression.protect import (
    DEFAULT_PROTECTED_KINDS,
    ProtectedSpan,
    find_protected_spans,
)
from lean_core.compression.types import CompressionBudget, CompressionResult
from lean_core.errors import InvalidParameterError
from lean_core.tokens import TokenCounter

if TYPE_CHECKING:
    import torch

__all__ = ["LLMLinguaCompressor"]

Reorder = Literal["original", "sort"]
_FEATURE = "LLMLinguaCompressor"
_WORD_END = re.compile(r"\S+")
# LLMLingua-2 checkpoints by config.json model_type -> the name llmlingua's word rules look for.
_LLMLINGUA2_FAMILIES = {"xlm-roberta": "xlm-roberta-large", "bert": "bert-base-multilingual-cased"}


# --- compatibility layer: llmlingua 0.2.2 x transformers >= 5 ------------------------------------
# llmlingua's iterative compression keeps the KV cache in the legacy format (a list of per-layer
# (key, value) tensors): it reads `past[0][0].shape[2]`, slices every tensor and passes the list
# back as `past_key_values`. transformers 5 takes and returns `Cache` objects only, so the first
# context longer than `iterative_size` failed with "too many values to unpack (expected 2)".
# `get_ppl` is the one place llmlingua runs the causal LM with a cache; the subclass converts the
# legacy list to a cache on the way in and back on the way out, and nothing else changes.
#
# Budget accuracy (not compatibility; off in raw mode): llmlingua scores windows of
# `iterative_size` tokens and never compresses the last, partial window, yet plans its per-window
# rates as if it did, so it overshoots by up to `iterative_size` tokens (upstream #195/#196).
# With `fit_tail` set, the planned rates of the windows it does compress are scaled to absorb the
# tail it will keep whole.


def _legacy_from_cache(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A ``Cache`` (or an already legacy sequence) as a list of per-layer (key, value) tensors."""
    layers = getattr(cache, "layers", None)
    if layers is None:
        return [(kv[0], kv[1]) for kv in cache]
    return [(layer.keys, layer.values) for layer in layers]


def _cache_from_legacy(past: Sequence[Sequence[torch.Tensor]] | None) -> Any:
    """A ``DynamicCache`` holding legacy (key, value) pairs; also indexable as ``cache[i] = (k, v)``
    as llmlingua expects. ``None`` stays ``None``."""
    if past is None or getattr(past, "layers", None) is not None:
        return past
    return _compat_classes()[0]([(kv[0], kv[1]) for kv in past])


def _fit_schedule_to_tail(schedule: list[list[tuple[int, float]]], tokens: int, target: float,
                          iterative_size: int) -> list[list[tuple[int, float]]]:
    """Scale llmlingua's per-window keep rates (``[[(size, rate), ...], ...]``) so that the
    windows it compresses plus the ``tokens % iterative_size`` it keeps whole make ``target``."""
    tail = tokens % iterative_size
    processed = tokens - tail
    if not tail or processed <= 0 or target <= 0:
        return schedule
    factor = max(0.0, target - tail) * tokens / (target * processed)
    return [[(size, min(1.0, rate * factor)) for size, rate in window] for window in schedule]


_COMPAT: tuple[type, type] | None = None


def _compat_classes() -> tuple[type, type]:
    """(indexable DynamicCache, PromptCompressor subclass), built on first use (lazy imports)."""
    global _COMPAT
    if _COMPAT is None:
        transformers = require("transformers", extra="compression", feature=_FEATURE)
        llmlingua = require("llmlingua", extra="compression", feature=_FEATURE)

        class _IndexableCache(transformers.DynamicCache):  # type: ignore[misc, name-defined]
            def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
                layer = self.layers[index]
                return layer.keys, layer.values

        class _CompatPromptCompressor(llmlingua.PromptCompressor):  # type: ignore[misc, name-defined]
            def get_ppl(self, text: str, granularity: str = "sentence", input_ids: Any = None,
                        attention_mask: Any = None, past_key_values: Any = None,
                        return_kv: bool = False, end: int | None = None,
                        condition_mode: str = "none", condition_pos_id: int = 0) -> Any:
                out = super().get_ppl(text, granularity, input_ids, attention_mask,
                                      _cache_from_legacy(past_key_values), return_kv, end,
                                      condition_mode, condition_pos_id)
                if not return_kv:
                    return out
                loss, cache = out
                return loss, _legacy_from_cache(cache)

            fit_tail = False

            def get_dynamic_compression_ratio(self, context: list[str], target_token: float,
                                              iterative_size: int, dynamic_ratio: list[float],
                                              start: int, seg_info: Any = None) -> Any:
                schedule = super().get_dynamic_compression_ratio(
                    context, target_token, iterative_size, dynamic_ratio, start, seg_info)
                if not self.fit_tail:
                    return schedule
                # the same tokens iterative_compress_prompt walks, less the question prefix
                ids = self.tokenizer("\n\n".join(context), add_special_tokens=False).input_ids
                return _fit_schedule_to_tail(schedule, len(ids) - start, target_token, iterative_size)

        _COMPAT = (_IndexableCache, _CompatPromptCompressor)
    return _COMPAT


@contextlib.contextmanager
def _preserved_global_state() -> Iterator[None]:
    """Undo llmlingua's ``seed_everything(42)`` (LLMLingua-2 set-up reseeds every global RNG)."""
    import numpy as np
    import torch

    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    hash_seed = os.environ.get("PYTHONHASHSEED")
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        if hash_seed is None:
            os.environ.pop("PYTHONHASHSEED", None)
        else:
            os.environ["PYTHONHASHSEED"] = hash_seed
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


class _Scorer:
    """The llmlingua ``PromptCompressor`` of one checkpoint, loaded on first use and shared."""

    def __init__(self, model_path: str | os.PathLike[str] | None, device: str) -> None:
        self.model_path = model_path
        self.device = device
        self.compressor: Any = None
        self.token_classifier = False
        self.lock = threading.RLock()  # llmlingua keeps state on the instance: one call at a time

    def load(self) -> Any:
        with self.lock:
            if self.compressor is not None:
                return self.compressor
            from lean_core.assets import seed_tiktoken_cache, smollm2_dir

            path = Path(self.model_path).expanduser() if self.model_path is not None else smollm2_dir()
            config_file = path / "config.json"
            if not config_file.is_file():
                raise InvalidParameterError("model_path", allowed="a local checkpoint directory "
                                            "with config.json", received=str(path))
            config = json.loads(config_file.read_text())
            token_classifier = any("ForTokenClassification" in a for a in config.get("architectures") or [])
            family = _LLMLINGUA2_FAMILIES.get(config.get("model_type", ""))
            if token_classifier and family is None:
                raise InvalidParameterError("model_path", allowed="an LLMLingua-2 token classifier "
                                            "of model_type 'xlm-roberta' or 'bert'", received=str(path))
            seed_tiktoken_cache()  # PromptCompressor loads tiktoken's cl100k_base in its constructor
            compressor_class = _compat_classes()[1]
            with _preserved_global_state():
                self.compressor = compressor_class(
                    model_name=str(path), device_map=self.device, use_llmlingua2=token_classifier,
                    model_config={"trust_remote_code": False, "local_files_only": True},
                )
            if token_classifier:
                # llmlingua picks its word-merging rules from the checkpoint's *name*
                # (utils.is_begin_of_new_word); name the family so any local directory works.
                self.compressor.model_name = f"{path} ({family})"
            self.token_classifier = token_classifier
            return self.compressor

    def own_count(self, text: str) -> int:
        """Tokens of ``text`` as llmlingua budgets them: the scorer's tokenizer (LongLLMLingua)
        or GPT-3.5's (LLMLingua-2)."""
        if self.token_classifier:
            return len(self.compressor.oai_tokenizer.encode(text))
        return int(self.compressor.get_token_length(text))


# --- the compressor --------------------------------------------------------------------------------


class LLMLinguaCompressor(Compressor):
    """LongLLMLingua (question-aware, token-level) compression whose output always fits the budget.

    Args:
        model_path: local checkpoint directory of the scorer: a causal LM (perplexity scoring,
            LongLLMLingua) or an LLMLingua-2 token classifier (recognised from ``config.json``'s
            architectures, e.g. ``*ForTokenClassification``; LLMLingua-2 ignores the question).
            ``None``: the bundled SmolLM2-135M-Instruct. Hub names are refused: nothing downloads.
        device: torch device of the scorer: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"``, ``"mps"``.
        raw: run llmlingua once with ``rate`` = the budget's ratio (or ``target_token`` = its
            ``target_tokens``, in llmlingua's own count) and do not enforce the budget: the
            "raw llmlingua" baseline. The result's ``budget_met`` says whether it happened to fit.
        contrastive: LongLLMLingua's contrastive perplexity (``condition_compare``): scores
            tokens by how much the question changes them. Runs the scorer twice (~2x slower).
        reorder: passage order after passage-level filtering: ``"original"`` or ``"sort"``
            (most relevant first, LongLLMLingua's setting against "lost in the middle").
        dynamic_ratio: in [0, 1): how much more of relevant passages is kept than of others at
            token level (LongLLMLingua's ``dynamic_context_compression_ratio``); 0 = uniform.
        iterative_size: scorer tokens scored per step, in [64, 4096]; llmlingua's default 200.
        max_attempts: llmlingua runs per call, in [1, 5]; each retry asks for
            ``target / achieved`` less. If the last is still over, the end is trimmed by words.
        first_attempt_share: share of the budget asked of llmlingua on its first run, in
            (0, 1.5]. With its last-window overshoot corrected, llmlingua tends to land 5-15%
            under what it is asked; above 1 uses more of the budget at the risk of a retry.
        token_counter: counts the budget in ``budget.target_model``'s tokenizer.
        protect_kinds / protect_patterns: protected spans (see ``find_protected_spans``), found
            on the original text and passed to llmlingua as marked ``compress=False`` segments;
            what llmlingua returns for each is replaced by the original span (or removed if it is
            not that span), and the final trim never cuts one, so they come out byte for byte or
            not at all. Not in ``raw`` mode. LLMLingua-2 checkpoints
            ignore such segments (upstream #114): with one, pass ``protect_kinds=()`` to accept that.
    """

    name = "llmlingua"

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        device: str = "cpu",
        raw: bool = False,
        contrastive: bool = False,
        reorder: Reorder = "original",
        dynamic_ratio: float = 0.3,
        iterative_size: int = 200,
        max_attempts: int = 2,
        first_attempt_share: float = 1.0,
        token_counter: TokenCounter | None = None,
        protect_kinds: Sequence[str] = DEFAULT_PROTECTED_KINDS,
        protect_patterns: Sequence[str] = (),
    ) -> None:
        if model_path is not None and not isinstance(model_path, str | os.PathLike):
            raise InvalidParameterError("model_path", allowed="a local directory or None", received=model_path)
        if not isinstance(device, str) or not re.fullmatch(r"cpu|mps|cuda(:\d+)?", device):
            raise InvalidParameterError("device", allowed="'cpu', 'cuda', 'cuda:N' or 'mps'", received=device)
        if reorder not in ("original", "sort"):
            raise InvalidParameterError("reorder", allowed="'original' or 'sort'", received=reorder)
        _check_range("dynamic_ratio", dynamic_ratio, 0.0, 1.0, "a float in [0, 1)", high_open=True)
        _check_range("iterative_size", iterative_size, 64, 4096, "an int in [64, 4096]", integer=True)
        _check_range("max_attempts", max_attempts, 1, 5, "an int in [1, 5]", integer=True)
        _check_range("first_attempt_share", first_attempt_share, 0.0, 1.5, "a float in (0, 1.5]",
                     low_open=True)
        check_bool("raw", raw)
        check_bool("contrastive", contrastive)
        check_instance("token_counter", token_counter, TokenCounter, "a TokenCounter")
        kinds, self._patterns = check_protection(protect_kinds, protect_patterns)
        self.model_path = model_path
        self.device = device
        self.raw = raw
        self.contrastive = contrastive
        self.reorder: Reorder = reorder
        self.dynamic_ratio = float(dynamic_ratio)
        self.iterative_size = int(iterative_size)
        self.max_attempts = int(max_attempts)
        self.first_attempt_share = float(first_attempt_share)
        self.counter = token_counter or TokenCounter()
        self.protect_kinds = kinds
        self.protect_patterns = tuple(protect_patterns)
        self._scorer = _Scorer(model_path, device)

    def load(self) -> None:
        """Load the scorer now (otherwise it loads on the first compression); idempotent."""
        self._scorer.load()

    def raw_baseline(self) -> LLMLinguaCompressor:
        """This compressor in ``raw`` mode, sharing its scorer (loaded once for both)."""
        twin = copy.copy(self)
        twin.raw = True
        return twin

    def compress(self, context: ContextInput, *, budget: CompressionBudget | float,
                 question: str | None = None,
                 titles: Sequence[str | None] | None = None) -> CompressionResult:
        """``titles`` are checked but not used: token-level compression reads no passage headings."""
        budget = CompressionBudget.of(budget)
        passages = check_context(context)
        check_titles(titles, len(passages))
        passages = [p for p in passages if p.strip()]
        question = check_question(question)
        model = budget.target_model
        original_text = "\n\n".join(passages)
        original = self.counter.count(original_text, model)
        target = budget.tokens_for(original.tokens) if original.tokens else 0
        method = "llmlingua-raw" if self.raw else self.name
        base = dict(method=method, original_tokens=original.tokens, target_tokens=target,
                    tokenizer=original.tokenizer, estimated_counts=original.estimated)
        if original.tokens <= target:
            return CompressionResult(text=original_text, compressed_tokens=original.tokens,
                                     budget_met=True, note="input already within budget", **base)
        self.load()
        protect = not self.raw and bool(self.protect_kinds or self.protect_patterns)
        if protect and self._scorer.token_classifier:
            raise InvalidParameterError(
                "protect_kinds", allowed="() with an LLMLingua-2 checkpoint (it ignores compress=False "
                "segments, upstream #114, so spans cannot be protected)", received=self.protect_kinds)
        spans = ([find_protected_spans(p, kinds=self.protect_kinds, patterns=self._patterns)
                  for p in passages] if protect else [[] for _ in passages])
        base["protected_spans"] = sum(len(s) for s in spans)
        with self._scorer.lock:
            started = time.perf_counter()
            if self.raw:
                text, _ = self._run(passages, question, rate=budget.ratio, target=budget.target_tokens)
                compressed, note = self.counter.count(text, model).tokens, "raw llmlingua: budget not enforced"
            else:
                text, compressed, attempts, trimmed = self._fit(passages, question, target, model, spans=spans)
                note = f"{attempts} llmlingua run(s)"
                if trimmed:
                    note += f"; {trimmed} tokens trimmed from the end to fit"
            seconds = time.perf_counter() - started
        return CompressionResult(
            text=text, compressed_tokens=compressed, budget_met=compressed <= target, seconds=seconds,
            note=note + _question_note(question, self._scorer.token_classifier), **base,
        )

    def _fit(self, passages: list[str], question: str | None, target: int, model: str, *,
             spans: Sequence[Sequence[ProtectedSpan]]) -> tuple[str, int, int, int]:
        """Compress with tighter llmlingua targets until the result fits; trim if it never does.

        Returns (text, tokens in the target model, llmlingua runs, tokens trimmed)."""
        count: Callable[[str], int] = lambda text: self.counter.count(text, model).tokens  # noqa: E731
        joined = "\n\n".join(passages)
        # llmlingua's budget is in its own count: scale the target by the ratio of the two counts.
        scale = self._scorer.own_count(joined) / max(1, count(joined))
        aim = target * self.first_attempt_share
        text, tokens = joined, count(joined)
        located: list[tuple[int, int]] = []
        for attempt in range(1, self.max_attempts + 1):
            text, located = self._run(passages, question, rate=None, target=max(1, round(aim * scale)), spans=spans)
            tokens = count(text)
            if tokens <= target:
                return text, tokens, attempt, 0
            aim *= 0.95 * target / tokens
        trimmed = _trim_to(text, target, count, keep_whole=located)
        kept = count(trimmed)
        return trimmed, kept, self.max_attempts, tokens - kept

    def _run(self, passages: list[str], question: str | None, *, rate: float | None, target: int | None,
             spans: Sequence[Sequence[ProtectedSpan]] = ()) -> tuple[str, list[tuple[int, int]]]:
        """One llmlingua call; ``rate`` or ``target`` (in llmlingua's own count); passages with
        protected ``spans`` go in as structured segments. Returns the text and where the
        protected spans in it are (each restored from the original text)."""
        kwargs: dict[str, Any] = {"rate": rate if rate is not None else 0.5,
                                  "target_token": target if target is not None else -1,
                                  "use_context_level_filter": len(passages) > 1}
        if self._scorer.token_classifier:
            kwargs["force_tokens"] = ["\n"]  # keep passage breaks
        else:
            kwargs.update(
                iterative_size=self.iterative_size, concate_question=False,
                reorder_context=self.reorder,
                dynamic_context_compression_ratio=self.dynamic_ratio if len(passages) > 1 else 0.0,
            )
            if question is not None:
                kwargs.update(question=question, rank_method="longllmlingua",
                              condition_in_question="after_condition",
                              condition_compare=self.contrastive)
        compressor = self._scorer.compressor
        compressor.fit_tail = not self.raw
        if not any(spans):
            text = str(compressor.compress_prompt(list(passages), **kwargs)["compressed_prompt"])
            return (text.strip() if self.raw else _drop_broken_characters(text, passages).strip()), []
        markers = pick_ascii_markers(passages)
        if markers is None:
            raise InvalidParameterError("context", allowed="text leaving one of U+E000..U+E0FF (private use) and "
                                        "two ASCII control characters unused", received="a context using them all")
        tagged = [tag_passage(p, found, markers) for p, found in zip(passages, spans, strict=True)]
        result = compressor.structured_compress_prompt(tagged, **kwargs)
        span_texts = [span.text(p) for p, found in zip(passages, spans, strict=True) for span in found]
        return restore_spans(_drop_broken_characters(str(result["compressed_prompt"]), passages), span_texts,
                             markers)


def _drop_broken_characters(text: str, passages: Sequence[str]) -> str:
    """Dropping byte-level tokens can split a multi-byte character, which decodes as U+FFFD;
    remove those (unless the input had them) rather than hand the model mojibake."""
    if "\ufffd" in text and not any("\ufffd" in p for p in passages):
        text = text.replace("\ufffd", "")
    return text


def _question_note(question: str | None, token_classifier: bool) -> str:
    if token_classifier:
        return "; LLMLingua-2 ignores the question" if question is not None else ""
    return "" if question is not None else "; no question: question-agnostic LLMLingua scoring"


def _trim_to(text: str, target: int, count: Callable[[str], int],
             keep_whole: Sequence[tuple[int, int]] = ()) -> str:
    """The longest prefix of ``text`` ending at a word boundary with ``count`` <= ``target``,
    never ending inside one of the ``keep_whole`` (start, end) intervals."""
    ends = [end for end in (match.end() for match in _WORD_END.finditer(text))
            if not any(start < end < stop for start, stop in keep_whole)]
    low, high = 0, len(ends)  # number of words kept
    while low < high:
        middle = (low + high + 1) // 2
        if count(text[:ends[middle - 1]]) <= target:
            low = middle
        else:
            high = middle - 1
    return text[:ends[low - 1]] if low else ""


def _check_range(parameter: str, value: Any, low: float, high: float, allowed: str, *,
                 integer: bool = False, low_open: bool = False, high_open: bool = False) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type:
        raise InvalidParameterError(parameter, allowed=allowed, received=value)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        raise InvalidParameterError(parameter, allowed=allowed, received=value)
