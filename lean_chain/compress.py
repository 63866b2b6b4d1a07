"""LeanCompress: an LCEL Runnable that compresses prompts, RAG inputs and chat history in place."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import ChatPromptValue, PromptValue, StringPromptValue
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from lean_core.compression import CompressionBudget, CompressionResult, Compressor
from lean_core.compression.attribute import (
    budget_from_options,
    kept_per_passage,
    titles_from_metadata,
)
from lean_core.compression.chain import CompressionMethod, compressor_for
from lean_core.compression.messages import plan_messages
from lean_core.errors import InvalidParameterError
from lean_core.ledger import CostLedger

__all__ = ["LeanCompress"]



class CompressionOptions(BaseModel):
    """Budget, compressor and ledger options shared by the LangChain compression classes."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    ratio: float | None = Field(0.5, gt=0.0, le=1.0)
    """Keep at most this share of the compressible tokens, in (0, 1]; the default
    budget, replaced by ``target_tokens`` when that is given (giving both is an error)."""
    target_tokens: int | None = Field(None, ge=1)
    """Keep at most this many compressible tokens (>= 1), counted in ``target_model``'s tokenizer."""
    target_model: str = "gpt-4o"
    """Model whose tokenizer counts the budget (see ``lean_core.tokens``)."""
    method: CompressionMethod = "lean"
    """Which compressor to build when ``compressor`` is None: ``"lean"`` (query-aware sentence
    selection, fast), ``"llmlingua"`` (token level, slow on CPU) or ``"lean+llmlingua"`` (select
    then compress tokens: coarse to fine)."""
    compressor: Compressor | None = None
    """The compressor to use; ``None`` builds the ``method``'s default on first use."""
    ledger: CostLedger | None = None
    """When given, each call records one "compression" savings event (tokens before/after). Give
    the ledger here, not to the compressor, or the savings are counted twice."""
    title_key: str | None = "title"
    """``Document.metadata`` key of each document's title. The compressor reads a sentence that
    opens with a pronoun ("It was founded in...") as being about that title; never added to the
    output. None: only a heading the text itself opens with is used."""

    _default_compressor: Compressor | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _one_budget(self) -> Self:
        self.budget  # noqa: B018 - validates ratio/target_tokens once, at construction
        return self

    @property
    def budget(self) -> CompressionBudget:
        """The budget every compressor call gets."""
        return budget_from_options(ratio=self.ratio, target_tokens=self.target_tokens,
                                   target_model=self.target_model, ratio_was_set="ratio" in self.model_fields_set)

    def _get_compressor(self) -> Compressor:
        if self.compressor is not None:
            return self.compressor
        if self._default_compressor is None:
            self._default_compressor = compressor_for(self.method)  # no I/O: models load on first use
        return self._default_compressor

    def _documents_job(self, documents: Sequence[Document], question: str | None) -> _Job:
        """One job for documents: their texts as passages, their metadata titles alongside."""
        return _Job([d.page_content for d in documents], question,
                    titles_from_metadata([d.metadata for d in documents], self.title_key))

    def _run_jobs(self, jobs: Sequence[_Job]) -> list[CompressionResult]:
        compressor, budget = self._get_compressor(), self.budget
        return [compressor.compress(j.context, budget=budget, question=j.question, titles=j.titles) for j in jobs]

    async def _arun_jobs(self, jobs: Sequence[_Job]) -> list[CompressionResult]:
        compressor, budget = self._get_compressor(), self.budget
        return list(await asyncio.gather(
            *(compressor.acompress(j.context, budget=budget, question=j.question, titles=j.titles)
              for j in jobs)))

    def _savings(self, results: Sequence[CompressionResult], tenant: str | None) -> dict[str, Any] | None:
        if self.ledger is None or not results:
            return None
        return dict(layer="compression", model=self.target_model, tenant=tenant,
                    input_tokens_before=sum(r.original_tokens for r in results),
                    input_tokens_after=sum(r.compressed_tokens for r in results))

    def _record(self, results: Sequence[CompressionResult], tenant: str | None) -> None:
        event = self._savings(results, tenant)
        if event is not None and self.ledger is not None:
            self.ledger.record_savings(**event)

    async def _arecord(self, results: Sequence[CompressionResult], tenant: str | None) -> None:
        event = self._savings(results, tenant)
        if event is not None and self.ledger is not None:
            await self.ledger.arecord_savings(**event)


@dataclass(frozen=True)
class _Job:
    context: str | list[str]
    question: str | None
    titles: list[str | None] | None = None


_Plan = tuple[list[_Job], Callable[[list[CompressionResult]], Any]]


class LeanCompress(CompressionOptions, RunnableSerializable[Any, Any]):
    """Compress whatever flows through an LCEL chain, returning the same kind of value.

    - ``str``: the compressed text (no question, so sentences are ranked by centrality).
    - ``dict``: the same dict with ``context_key`` compressed for ``question_key``; a str context
      stays a str, a list of str becomes the list of kept passages, a list of ``Document`` the kept
      documents (each with its own metadata and only its kept text).
    - ``ChatPromptValue`` or a list of messages: the same messages, roles, ids and tool-call fields;
      system messages and the last human message are kept verbatim, every other text message
      (older history, tool results) is compressed for the last human message, under one budget
      shared by all of them. No message is removed: one with nothing kept has empty content.
    - ``StringPromptValue``: a ``StringPromptValue`` of the compressed text.

    Example::

        chain = prompt | LeanCompress(ratio=0.4) | llm
    """

    context_key: str = "context"
    """Key of the context in dict inputs."""
    question_key: str = "question"
    """Key of the question in dict inputs (optional there)."""

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._compress, input, config, run_type="prompt", **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._acall_with_config(self._acompress, input, config, run_type="prompt", **kwargs)

    def _compress(self, value: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig) -> Any:
        jobs, rebuild = self._plan(value)
        results = self._run_jobs(jobs)
        self._record(results, _tenant(config))
        return rebuild(results)

    async def _acompress(self, value: Any, run_manager: AsyncCallbackManagerForChainRun,
                          config: RunnableConfig) -> Any:
        jobs, rebuild = self._plan(value)
        results = await self._arun_jobs(jobs)
        await self._arecord(results, _tenant(config))
        return rebuild(results)

    def _plan(self, value: Any) -> _Plan:
        if isinstance(value, str):
            return [_Job(value, None)], lambda r: r[0].text
        if isinstance(value, StringPromptValue):
            return [_Job(value.text, None)], lambda r: StringPromptValue(text=r[0].text)
        if isinstance(value, ChatPromptValue):
            jobs, rebuild = _plan_messages(value.messages)
            return jobs, lambda r: ChatPromptValue(messages=rebuild(r))
        if isinstance(value, PromptValue):
            jobs, rebuild = _plan_messages(value.to_messages())
            return jobs, lambda r: ChatPromptValue(messages=rebuild(r))
        if isinstance(value, list) and value and all(isinstance(m, BaseMessage) for m in value):
            return _plan_messages(value)
        if isinstance(value, dict):
            return self._plan_dict(value)
        raise InvalidParameterError(
            "input", allowed="str, dict, PromptValue or a list of BaseMessage", received=type(value).__name__)

    def _plan_dict(self, value: dict[str, Any]) -> _Plan:
        if self.context_key not in value:
            raise InvalidParameterError("input", allowed=f"a dict with the key {self.context_key!r}",
                                        received=sorted(map(str, value)))
        context = value[self.context_key]
        raw_question = value.get(self.question_key)
        question = raw_question if isinstance(raw_question, str) else None

        def replaced(new: Any) -> dict[str, Any]:
            return {**value, self.context_key: new}

        if isinstance(context, str):
            return [_Job(context, question)], lambda r: replaced(r[0].text)
        if isinstance(context, Sequence) and all(isinstance(d, Document) for d in context):
            docs = list(context)
            return [self._documents_job(docs, question)], lambda r: replaced(
                [d for d, _ in kept_documents(docs, r[0].text)])
        if isinstance(context, Sequence) and all(isinstance(p, str) for p in context):
            passages = list(context)
            return [_Job(passages, question)], lambda r: replaced(
                [k for k in kept_per_passage(r[0].text, passages) if k])
        raise InvalidParameterError(self.context_key, allowed="str, list of str or list of Document",
                                    received=type(context).__name__)


def _plan_messages(messages: Sequence[BaseMessage]) -> _Plan:
    messages = list(messages)
    roles = [str(getattr(m, "role", m.type)) if m.type == "chat" else m.type for m in messages]
    plan = plan_messages(roles, [m.content for m in messages])
    if not plan.indices:
        return [], lambda _: list(messages)

    def rebuild(results: list[CompressionResult]) -> list[BaseMessage]:
        out = list(messages)
        for i, kept in zip(plan.indices, plan.contents(results[0]), strict=True):
            out[i] = messages[i].model_copy(update={"content": kept})
        return out

    return [_Job(list(plan.passages), plan.question)], rebuild


def _tenant(config: RunnableConfig) -> str | None:
    tenant = (config.get("metadata") or {}).get("tenant")
    return tenant if isinstance(tenant, str) else None


def kept_documents(documents: Sequence[Document], text: str) -> list[tuple[Document, Document]]:
    """(kept copy, original) for each document with kept text; metadata and id are preserved."""
    out: list[tuple[Document, Document]] = []
    for doc, kept in zip(documents, kept_per_passage(text, [d.page_content for d in documents]), strict=True):
        if kept:
            out.append((doc.model_copy(update={"page_content": kept, "metadata": dict(doc.metadata)}), doc))
    return out
