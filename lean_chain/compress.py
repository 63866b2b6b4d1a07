"""LeanCompress: an LCEL Runnable that compresses prompts, RAG inputs and chat history in place."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import ChatPromptValue, PromptValue, StringPromptValue
from langchain_core.runnables import RunnableConfig, RunnableSerializable

from lean_core.compression import CompressionJob, CompressionOptions, CompressionResult
from lean_core.compression.attribute import kept_per_passage, titles_from_metadata
from lean_core.compression.messages import plan_messages
from lean_core.errors import InvalidParameterError

__all__ = ["LeanCompress"]


def documents_job(documents: Sequence[Document], question: str | None, title_key: str | None) -> CompressionJob:
    """One job for documents: their texts as passages, their metadata titles alongside."""
    return CompressionJob([d.page_content for d in documents], question,
                          titles_from_metadata([d.metadata for d in documents], title_key))


_Plan = tuple[list[CompressionJob], Callable[[list[CompressionResult]], Any]]


class LeanCompress(CompressionOptions, RunnableSerializable[Any, Any]):
    """Compress whatever flows through an LCEL chain, returning the same kind of value.

    The budget, compressor and ledger options are :class:`~lean_core.compression.CompressionOptions`
    (``ratio`` or ``target_tokens``, ``target_model``, ``method``, ``protect_kinds``, ...).

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
        results = self.compress_jobs(jobs)
        self.record_compression(results, tenant=_tenant(config))
        return rebuild(results)

    async def _acompress(self, value: Any, run_manager: AsyncCallbackManagerForChainRun,
                          config: RunnableConfig) -> Any:
        jobs, rebuild = self._plan(value)
        results = await self.acompress_jobs(jobs)
        await self.arecord_compression(results, tenant=_tenant(config))
        return rebuild(results)

    def _plan(self, value: Any) -> _Plan:
        if isinstance(value, str):
            return [CompressionJob(value, None)], lambda r: r[0].text
        if isinstance(value, StringPromptValue):
            return [CompressionJob(value.text, None)], lambda r: StringPromptValue(text=r[0].text)
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
            return [CompressionJob(context, question)], lambda r: replaced(r[0].text)
        if isinstance(context, Sequence) and all(isinstance(d, Document) for d in context):
            docs = list(context)
            return [documents_job(docs, question, self.title_key)], lambda r: replaced(
                [d for d, _ in kept_documents(docs, r[0].text)])
        if isinstance(context, Sequence) and all(isinstance(p, str) for p in context):
            passages = list(context)
            return [CompressionJob(passages, question)], lambda r: replaced(
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

    return [CompressionJob(list(plan.passages), plan.question)], rebuild


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
