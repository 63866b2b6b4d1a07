"""CompressionOptions: the options of every compression adapter, declared once.

LangChain's ``LeanCompress`` / ``LeanDocumentCompressor`` and LlamaIndex's
``LeanCompressPostprocessor`` inherit this model (as they inherit ``BudgetOptions`` for output
budgets), so each option is declared, documented and validated here, and the compressor is built
from it in one place: lazily, on first use, so constructing an adapter does no I/O.

    options = CompressionOptions(target_tokens=400, method="lean")
    results = options.compress_jobs([CompressionJob(passages, question="Who founded it?")])
    options.record_compression(results, tenant="acme")      # one "compression" savings event
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from lean_core.compression._checks import check_protection, raise_parameter_error
from lean_core.compression.attribute import budget_from_options
from lean_core.compression.base import Compressor, ContextInput
from lean_core.compression.chain import METHODS, CompressionMethod, compressor_for
from lean_core.compression.protect import DEFAULT_PROTECTED_KINDS
from lean_core.compression.types import (
    AUTO,
    CompressionBudget,
    CompressionResult,
    check_ratio,
    check_target_tokens,
)
from lean_core.errors import InvalidParameterError
from lean_core.ledger import CostLedger
from lean_core.ledger_records import SavingsEvent

__all__ = ["CompressionJob", "CompressionOptions"]


@dataclass(frozen=True, slots=True)
class CompressionJob:
    """One compressor call: a context (text or passages), the question it must answer, and one
    title (or None) per passage, as retrievers keep them in metadata."""

    context: ContextInput
    question: str | None = None
    titles: Sequence[str | None] | None = None


class CompressionOptions(BaseModel):
    """Budget, compressor and ledger options of every compression adapter.

    Validation happens at construction and raises
    :class:`~lean_core.errors.InvalidParameterError` (a ``ValueError``) naming the parameter, what
    it accepts and what it got, for this model and every adapter built on it; a misspelt keyword
    (``ration=0.3``) is refused, not ignored.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def __init__(self, /, **data: Any) -> None:
        # Adapters mix this model with framework bases whose config ignores unknown keywords
        # (LangChain's Runnable); a typo would silently leave the default budget in place.
        known = {name for name, field in type(self).model_fields.items()} | {
            field.alias for field in type(self).model_fields.values() if field.alias}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidParameterError(unknown[0], allowed=f"an option of {type(self).__name__}: "
                                        f"{', '.join(sorted(known))}", received=data[unknown[0]])
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise_parameter_error(exc)

    ratio: float | Literal["auto"] | None = 0.5
    """Keep at most this share of the compressible tokens, a float in (0, 1] (0.33 = "3x
    compression"), or ``"auto"`` (the compressor keeps the smallest context that still holds the
    question's evidence; see ``CompressionBudget.ratio``). The default budget; ``target_tokens``
    replaces it (giving both is an error)."""
    target_tokens: int | None = None
    """Keep at most this many compressible tokens in all (an int >= 1), counted in
    ``target_model``'s tokenizer; None: the ``ratio`` budget."""
    target_model: str = "gpt-4o"
    """Model whose tokenizer counts the budget and the ledger's tokens (see ``lean_core.tokens``)."""
    method: CompressionMethod = "lean"
    """Which compressor to build when ``compressor`` is None: ``"lean"`` (query-aware sentence
    selection, fast), ``"llmlingua"`` (token level, slow on CPU), ``"lean+llmlingua"`` (select,
    then compress tokens: coarse to fine) or ``"llmlingua2"`` (select, then LLMLingua-2 token
    classification; needs ``model_path``)."""
    model_path: str | None = None
    """The ``method``'s checkpoint: for ``"llmlingua2"`` (required there) a local LLMLingua-2
    token-classification directory. Ignored by the other methods and when ``compressor`` is given."""
    protect_kinds: tuple[str, ...] = DEFAULT_PROTECTED_KINDS
    """Kinds of protected spans (kept byte for byte or not at all) for the ``method``'s compressor:
    a subset of ``lean_core.compression.protect.DEFAULT_PROTECTED_KINDS`` (all by default).
    Ignored when ``compressor`` is given (configure that compressor instead)."""
    protect_patterns: tuple[str, ...] = ()
    """Extra regular expressions whose matches are protected spans too (kind ``"user"``).
    Ignored when ``compressor`` is given."""
    compressor: Compressor | None = Field(None, exclude=True)
    """The compressor to use; None builds the ``method``'s default on first use (models load
    then, not at construction)."""
    ledger: CostLedger | None = Field(None, exclude=True)
    """When given, each call records one "compression" savings event (tokens before/after, in
    ``target_model`` tokens). Give the ledger here, not to the compressor, or the savings are
    counted twice."""
    title_key: str | None = "title"
    """Metadata key of each document's (node's) title. The compressor reads a sentence that opens
    with a pronoun ("It was founded in...") as being about that title; never added to the output.
    None: only a heading the text itself opens with is used."""

    _default_compressor: Compressor | None = PrivateAttr(None)

    # -- validation (each raises InvalidParameterError naming the parameter) --------------------
    @field_validator("ratio", mode="before")
    @classmethod
    def _check_ratio(cls, value: Any) -> Any:
        return value if value == "auto" else check_ratio(value, allowed="a float in (0, 1], 'auto' or None")

    @field_validator("target_tokens", mode="before")
    @classmethod
    def _check_target_tokens(cls, value: Any) -> Any:
        return check_target_tokens(value)

    @field_validator("target_model", mode="before")
    @classmethod
    def _check_target_model(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise InvalidParameterError("target_model", allowed="a non-empty model name", received=value)
        return value

    @field_validator("method", mode="before")
    @classmethod
    def _check_method(cls, value: Any) -> Any:
        if value not in METHODS:
            raise InvalidParameterError("method", allowed=" | ".join(repr(m) for m in METHODS), received=value)
        return value

    @field_validator("protect_kinds", mode="before")
    @classmethod
    def _check_protect_kinds(cls, value: Any) -> Any:
        return check_protection(value, ())[0]

    @field_validator("protect_patterns", mode="before")
    @classmethod
    def _check_protect_patterns(cls, value: Any) -> Any:
        check_protection((), value)
        return tuple(value)

    @field_validator("title_key", mode="before")
    @classmethod
    def _check_title_key(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidParameterError("title_key", allowed="a metadata key (non-empty str) or None", received=value)
        return value

    @field_validator("compressor", mode="before")
    @classmethod
    def _check_compressor(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, Compressor):
            raise InvalidParameterError("compressor", allowed="a lean_core.compression.Compressor or None",
                                        received=type(value).__name__)
        return value

    @model_validator(mode="after")
    def _one_budget(self) -> Self:
        self.budget  # noqa: B018 - validates ratio/target_tokens together, once, at construction
        return self

    @model_validator(mode="after")
    def _llmlingua2_needs_model_path(self) -> Self:
        if self.method == "llmlingua2" and self.model_path is None and self.compressor is None:
            raise InvalidParameterError("model_path", allowed="a local LLMLingua-2 checkpoint directory "
                                        "when method='llmlingua2'", received=None)
        return self

    # -- the compressor and its budget ----------------------------------------------------------
    @property
    def budget(self) -> CompressionBudget:
        """The budget every compressor call gets."""
        ratio = self.ratio
        if isinstance(ratio, str):  # "auto", only ever set explicitly (the default is 0.5)
            if self.target_tokens is not None:
                raise InvalidParameterError("ratio", allowed="None when target_tokens is given", received=ratio)
            return CompressionBudget(ratio=AUTO, target_model=self.target_model)
        return budget_from_options(ratio=ratio, target_tokens=self.target_tokens,
                                   target_model=self.target_model, ratio_was_set="ratio" in self.model_fields_set)

    def get_compressor(self) -> Compressor:
        """``compressor``, or the ``method``'s default, built on first use (no I/O: its models
        load on its first call)."""
        if self.compressor is not None:
            return self.compressor
        if self._default_compressor is None:
            self._default_compressor = compressor_for(self.method, protect_kinds=self.protect_kinds,
                                                      protect_patterns=self.protect_patterns,
                                                      model_path=self.model_path)
        return self._default_compressor

    def compress_jobs(self, jobs: Sequence[CompressionJob]) -> list[CompressionResult]:
        """Each job compressed under :attr:`budget`, in order."""
        compressor, budget = self.get_compressor(), self.budget
        return [compressor.compress(j.context, budget=budget, question=j.question, titles=j.titles) for j in jobs]

    async def acompress_jobs(self, jobs: Sequence[CompressionJob]) -> list[CompressionResult]:
        """Async :meth:`compress_jobs`; the jobs run concurrently."""
        compressor, budget = self.get_compressor(), self.budget
        return list(await asyncio.gather(
            *(compressor.acompress(j.context, budget=budget, question=j.question, titles=j.titles) for j in jobs)))

    # -- the ledger -----------------------------------------------------------------------------
    def savings_event(self, results: Sequence[CompressionResult], *, tenant: str | None = None) -> SavingsEvent | None:
        """One "compression" event for the results of one adapter call (their tokens summed), or
        None when there is no ledger or nothing was compressed."""
        if self.ledger is None or not results:
            return None
        return SavingsEvent(layer="compression", model=self.target_model, tenant=tenant,
                            input_tokens_before=sum(r.original_tokens for r in results),
                            input_tokens_after=sum(r.compressed_tokens for r in results))

    def record_compression(self, results: Sequence[CompressionResult], *, tenant: str | None = None) -> None:
        """Record :meth:`savings_event` in the ledger (nothing without one)."""
        event = self.savings_event(results, tenant=tenant)
        if event is not None and self.ledger is not None:
            self.ledger.record(event)

    async def arecord_compression(self, results: Sequence[CompressionResult], *, tenant: str | None = None) -> None:
        """Async :meth:`record_compression`."""
        event = self.savings_event(results, tenant=tenant)
        if event is not None and self.ledger is not None:
            await self.ledger.arecord(event)

