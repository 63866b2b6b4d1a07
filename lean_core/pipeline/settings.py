"""One place to configure the five layers: :class:`PipelineSettings` (keyword arguments or a file)."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from lean_core.cache.response_cache import CacheMode
from lean_core.errors import InvalidParameterError
from lean_core.prompt_cache.settings import PromptCacheSettings

__all__ = [
    "BudgetLayerSettings",
    "CacheLayerSettings",
    "CompressionLayerSettings",
    "PipelineSettings",
    "TemplateLayerSettings",
]

LayerName = Literal["cache", "template", "compression", "budget"]


class _Layer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True


class CacheLayerSettings(_Layer):
    """Response cache: exact, then verified semantic hits, confined to the tenant."""

    mode: CacheMode = "semantic"
    path: str | None = None
    """SQLite cache file; None: ``$LEAN_INFERENCE_CACHE`` or the user cache directory. Ignored when
    a ``ResponseCache`` is passed to the pipeline (e.g. one on PostgreSQL)."""
    ttl_s: float | None = Field(None, gt=0)
    """Seconds an answer stays servable; None: until evicted."""
    scope: str = ""
    """Part of every cache key: set it to your index or knowledge-base version so answers from an
    older knowledge base are never served after re-indexing."""
    max_error_rate: float | None = Field(None, gt=0, le=0.5)
    """δ in (0, 0.5]: serve semantic hits under an error budget (:mod:`lean_core.cache.error_budget`:
    only where explorations bound the share of wrong hits by δ) instead of the static threshold;
    None: the static verifier. Ignored when a ``ResponseCache`` is passed to the pipeline."""


class TemplateLayerSettings(_Layer):
    """Compact, stable-first prompt (system instructions first, so prefix caches hit)."""

    role: str = "You answer questions about the documents in the context."
    task: str = "Answer the question from the context."
    constraints: tuple[str, ...] = ("If the context does not say, answer: unknown.",)


class CompressionLayerSettings(_Layer):
    """Query-aware context compression, counted in ``PipelineSettings.price_model``'s tokens."""

    method: Literal["lean", "llmlingua", "coarse-to-fine"] = "lean"
    """``lean``: sentence selection (fast on CPU); ``llmlingua``: token-level LongLLMLingua with the
    local scorer (slow on CPU); ``coarse-to-fine``: selection, then llmlingua."""
    ratio: Annotated[float, Field(gt=0.0, le=1.0)] | Literal["auto"] | None = "auto"
    """Share of context tokens kept, in (0, 1] (a fixed share, honoured within the sentences'
    grain), or ``"auto"`` (the default since issue 23): the compressor keeps what its own relevance
    scores single out, many irrelevant passages dropped whole, never more than ``max_ratio``."""
    max_ratio: Annotated[float, Field(gt=0.0, le=1.0)] = 0.35
    """With ``ratio="auto"``: the most it keeps. Auto alone keeps about half of a few passages a
    retriever already chose (none scores irrelevant enough to drop); this ceiling, the fixed share
    that was the default before, keeps such contexts as small as they were, while contexts with
    many irrelevant passages still shrink far below it (BENCHMARKS.md, issue 23). 1.0: no ceiling."""
    max_tokens: StrictInt | None = Field(400, ge=1)
    """With ``ratio="auto"``: the most context tokens it keeps (>= 1), a second ceiling beside
    ``max_ratio``; None: ``max_ratio`` only. A few retrieved passages stay under it (the demo's
    three: ~280 tokens kept); on twenty-passage contexts auto's long tail ran to 600-800 tokens
    where the passage holding the answer scores high anyway: capped at 400, the answer stayed in
    60 of 60 NQ-20 contexts of the dev half, at 15 % fewer tokens (BENCHMARKS.md, issue 23)."""
    target_tokens: StrictInt | None = Field(None, ge=1)
    """Absolute context budget (overrides ``ratio``)."""
    order: Literal["original", "relevance", "edges"] = "original"


class BudgetLayerSettings(_Layer):
    """Per-request ``max_tokens`` from the length predictor, brevity, stops, early stopping."""

    brevity: bool = False
    """Add a brevity instruction ("Answer in one short sentence.") to the question. Off by
    default: it shortens answers further but changes what small models answer (BENCHMARKS.md,
    output budgets: answer retention)."""
    early_stop: bool = True
    fact_sentences: StrictInt | None = Field(1, ge=1)
    """With ``early_stop``: end the answer to a one-line question asking for a single fact after
    this many sentences (>= 1); None: no limit (``BudgetOptions.fact_sentences``)."""
    on_truncation: Literal["continue", "report", "raise"] = "report"
    min_tokens: StrictInt = Field(16, ge=1)
    max_tokens: StrictInt | None = Field(None, ge=1)


class PipelineSettings(BaseModel):
    """Every layer's switch and options, validated once.

    Build from keyword arguments, ``PipelineSettings.from_file("lean.toml")`` (TOML or JSON, one
    table per layer), or both (``from_file(path, **overrides)``)::

        settings = PipelineSettings(compression={"ratio": 0.3}, cache={"enabled": False})
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cache: CacheLayerSettings = CacheLayerSettings()
    template: TemplateLayerSettings = TemplateLayerSettings()
    compression: CompressionLayerSettings = CompressionLayerSettings()
    budget: BudgetLayerSettings = BudgetLayerSettings()
    price_model: str = "gpt-4o"
    """Reference API model: its tokenizer counts the budgets and the ledger's "before/after", and
    genai-prices prices the savings (the served model may be a local one without a price)."""
    tenant: str | None = Field(None, min_length=1, max_length=256)
    """The tenant of requests that name none (``PipelineRequest.tenant``) outside a
    :func:`~lean_core.cache.tenant_scope`: an explicit opt-in to one shared cache namespace (cache
    isolation, prefix-cache salt and ledger attribution). None (the default since issue 22; it
    was ``"default"``): such requests are not cached, coalesced or prefix-shared with others."""
    prompt_cache: PromptCacheSettings | None = None
    """Provider prompt-cache markers on the model calls (Anthropic ``cache_control`` on the
    template's stable system prompt, OpenAI ``prompt_cache_key`` per tenant); None: none. Markers
    change what a call costs, not what it answers: not part of :meth:`fingerprint`."""
    baseline_max_tokens: StrictInt = Field(256, ge=1)
    """``max_tokens`` sent when the budget layer is off (what an un-optimised call sends)."""
    baseline_template: str = (
        "You are a helpful, knowledgeable assistant. Your job is to answer the user's question using "
        "the pieces of retrieved context that are provided below. Please read all of the context "
        "carefully before answering. If the answer is not contained in the context, please say that "
        "you do not know the answer rather than making something up. Make sure your answer is "
        "accurate and helpful.\n\nRetrieved context:\n{context}\n\nUser question: {question}\n\n"
        "Please provide your answer below.\nAnswer:"
    )
    """The prompt an un-optimised RAG call sends, ``{context}`` and ``{question}`` filled in; the
    template layer's savings are measured against it."""

    @model_validator(mode="after")
    def _baseline_has_fields(self) -> PipelineSettings:
        for name in ("{context}", "{question}"):
            if name not in self.baseline_template:
                raise ValueError(f"baseline_template must contain {name}")
        return self

    def enabled(self, layer: LayerName) -> bool:
        return bool(getattr(self, layer).enabled)

    def with_layers(self, **enabled: bool) -> PipelineSettings:
        """A copy with layers switched, e.g. ``settings.with_layers(cache=False)``."""
        unknown = set(enabled) - {"cache", "template", "compression", "budget"}
        if unknown:
            raise InvalidParameterError("layers", allowed="cache, template, compression, budget",
                                        received=sorted(unknown))
        updates = {name: getattr(self, name).model_copy(update={"enabled": on}) for name, on in enabled.items()}
        return self.model_copy(update=updates)

    def fingerprint(self) -> str:
        """What changes an answer (cache identity): every layer's options except the cache's own."""
        data = self.model_dump(exclude={"cache": {"path", "ttl_s", "enabled", "max_error_rate"}, "tenant": True,
                                          "prompt_cache": True})
        return json.dumps(data, sort_keys=True, default=str)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **overrides: Any) -> PipelineSettings:
        """Read TOML (``.toml``) or JSON (``.json``); keyword ``overrides`` win over the file."""
        file = Path(path)
        if file.suffix not in (".toml", ".json"):
            raise InvalidParameterError("path", allowed="a .toml or .json settings file", received=str(file))
        if not file.is_file():
            raise InvalidParameterError("path", allowed="an existing settings file", received=str(file))
        try:
            raw = tomllib.loads(file.read_text()) if file.suffix == ".toml" else json.loads(file.read_text())
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise InvalidParameterError("path", allowed="valid TOML/JSON", received=f"{file}: {exc}") from None
        if not isinstance(raw, dict):
            raise InvalidParameterError("path", allowed="a table of settings", received=type(raw).__name__)
        merged = {**raw, **overrides}
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise InvalidParameterError("settings", allowed=f"fields of PipelineSettings ({file})",
                                        received=str(exc)) from None
