"""LeanCompress: an LCEL Runnable that compresses prompts, RAG inputs and chat history in place."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.callbacks.manager import adispatch_custom_event, dispatch_custom_event
from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import ChatPromptValue, PromptValue, StringPromptValue
from langchain_core.prompts import BasePromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from pydantic import PrivateAttr, field_validator

from lean_core.compression import CompressionJob, CompressionOptions, CompressionResult
from lean_core.compression.attribute import kept_per_passage, titles_from_metadata
from lean_core.compression.messages import plan_messages
from lean_core.compression.structure import (
    NothingToCompress,
    find_context,
    splice,
    warn_nothing_compressed,
)
from lean_core.errors import InvalidParameterError

__all__ = ["CompressionReport", "LeanCompress"]

REPORT_EVENT = "lean_compress"
"""Name of the custom callback event each LeanCompress run dispatches, its data a CompressionReport."""
# Prompt variables that hold retrieved context in common templates (LangChain's "context",
# LlamaIndex's "context_str", "summaries" of the old map-reduce chains ...).
_CONTEXT_VARIABLES = ("context", "context_str", "documents", "docs", "sources", "passages", "summaries",
                      "retrieved_context", "search_results")
_QUESTION_VARIABLES = ("question", "query", "query_str", "input", "user_question")


def documents_job(documents: Sequence[Document], question: str | None, title_key: str | None) -> CompressionJob:
    """One job for documents: their texts as passages, their metadata titles alongside."""
    return CompressionJob([d.page_content for d in documents], question,
                          titles_from_metadata([d.metadata for d in documents], title_key))


@dataclass(frozen=True)
class CompressionReport:
    """What one LeanCompress call did: the compressor's results (one per job; empty when nothing
    was compressed) and, when nothing was, why."""

    results: tuple[CompressionResult, ...]
    reason: NothingToCompress | None = None

    @property
    def compressed(self) -> bool:
        """Whether any context was found and handed to the compressor."""
        return bool(self.results)


_Plan = tuple[list[CompressionJob], Callable[[list[CompressionResult]], Any], NothingToCompress | None]


class LeanCompress(CompressionOptions, RunnableSerializable[Any, Any]):
    """Compress the context in whatever flows through an LCEL chain, returning the same kind of value.

    The budget, compressor and ledger options are :class:`~lean_core.compression.CompressionOptions`
    (``ratio`` or ``target_tokens``, ``target_model``, ``method``, ``protect_kinds``, ...); the
    budget applies to the context found, not to the instructions or the question.

    - ``ChatPromptValue`` or a list of messages: the same messages, roles, ids and tool-call fields.
      The context is found inside any message (see ``lean_core.compression.structure``): a
      "Context:"/"Documents:"/"Sources:" heading, ``<context>``-style tags, a delimited block, an
      introducing sentence ("Use the following pieces of context..."), numbered sources. Only that
      is compressed in system messages and the last human message; their instructions and the
      question stay byte for byte. Older turns and tool results are context by position (whole,
      when they hold no such section). All of it is compressed for the question under one budget.
    - ``StringPromptValue`` / ``str``: the same kind, with the same reading; a text with no
      structure at all is read as context (less a trailing question paragraph).
    - ``dict``: the same dict with ``context_key`` (one key or a tuple of keys) compressed for
      ``question_key``; a str context stays a str, a list of str becomes the list of kept
      passages, a list of ``Document`` the kept documents (own metadata, only their kept text).

    When nothing compressible is found the input comes back unchanged, a warning is logged once
    per instance (logger ``lean_chain.compress``), and the report says why. Each call's
    :class:`CompressionReport` is dispatched as the custom callback event ``"lean_compress"``
    (``on_custom_event`` / ``astream_events``) and kept as :attr:`last_report` (the latest call
    of this instance: read it from the events under concurrent use).

    Example::

        chain = prompt | LeanCompress(ratio=0.33) | llm          # the context is found in the prompt
        chain = LeanCompress(ratio=0.33).wrap(prompt) | llm      # or named: compress, then format
    """

    context_key: str | tuple[str, ...] = "context"
    """Key of the context in dict inputs, or a tuple of keys (each compressed under the budget)."""
    question_key: str = "question"
    """Key of the question in dict inputs (optional there)."""

    _last_report: CompressionReport | None = PrivateAttr(None)
    _warned: set[NothingToCompress] = PrivateAttr(default_factory=set)

    @field_validator("context_key", mode="before")
    @classmethod
    def _check_context_key(cls, value: Any) -> Any:
        keys = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, list | tuple) else ()
        if not keys or not all(isinstance(k, str) and k for k in keys):
            raise InvalidParameterError("context_key", allowed="a non-empty str or a tuple of them", received=value)
        return value if isinstance(value, str) else keys

    @property
    def last_report(self) -> CompressionReport | None:
        """The report of this instance's latest call (None before the first)."""
        return self._last_report

    def wrap(self, prompt: BasePromptTemplate[Any], *, context_variables: Sequence[str] | None = None,
             question_variable: str | None = None) -> Runnable[dict[str, Any], PromptValue]:
        """``prompt`` with its context variables compressed before it is formatted:
        ``LeanCompress(ratio=0.33).wrap(prompt) | llm`` takes the prompt's input dict.

        ``context_variables``: the variables holding context (str, list of str or of Document);
        default: those of the prompt named like context (``context``, ``context_str``,
        ``documents``, ``sources``, ...). ``question_variable``: the one holding the question;
        default: ``question``, ``query``, ``query_str`` or ``input`` when the prompt has it.
        """
        names = list(prompt.input_variables) + list(prompt.partial_variables)
        chosen = tuple(context_variables) if context_variables is not None else tuple(
            n for n in names if n in _CONTEXT_VARIABLES)
        if not chosen or isinstance(context_variables, str):
            raise InvalidParameterError("context_variables", allowed=f"a list of the prompt's variables {names}",
                                        received=context_variables)
        question = question_variable or next((n for n in _QUESTION_VARIABLES if n in names), self.question_key)
        keys: str | tuple[str, ...] = chosen[0] if len(chosen) == 1 else chosen
        return self.model_copy(update={"context_key": keys, "question_key": question}) | prompt

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._compress, input, config, run_type="prompt", **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._acall_with_config(self._acompress, input, config, run_type="prompt", **kwargs)

    def _compress(self, value: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig) -> Any:
        jobs, rebuild, reason = self._plan(value)
        results = self.compress_jobs(jobs)
        self.record_compression(results, tenant=_tenant(config))
        dispatch_custom_event(REPORT_EVENT, self._report(results, reason), config=config)
        return rebuild(results)

    async def _acompress(self, value: Any, run_manager: AsyncCallbackManagerForChainRun,
                          config: RunnableConfig) -> Any:
        jobs, rebuild, reason = self._plan(value)
        results = await self.acompress_jobs(jobs)
        await self.arecord_compression(results, tenant=_tenant(config))
        await adispatch_custom_event(REPORT_EVENT, self._report(results, reason), config=config)
        return rebuild(results)

    def _report(self, results: list[CompressionResult], reason: NothingToCompress | None) -> CompressionReport:
        if reason is not None:
            warn_nothing_compressed(reason, self._warned, where="LeanCompress")
        report = CompressionReport(results=tuple(results), reason=reason)
        self._last_report = report
        return report

    def _plan(self, value: Any) -> _Plan:
        if isinstance(value, str):
            return _plan_text(value, lambda text: text)
        if isinstance(value, StringPromptValue):
            return _plan_text(value.text, lambda text: StringPromptValue(text=text))
        if isinstance(value, ChatPromptValue):
            jobs, rebuild, reason = _plan_messages(value.messages)
            return jobs, lambda r: ChatPromptValue(messages=rebuild(r)), reason
        if isinstance(value, PromptValue):
            jobs, rebuild, reason = _plan_messages(value.to_messages())
            return jobs, lambda r: ChatPromptValue(messages=rebuild(r)), reason
        if isinstance(value, list) and value and all(isinstance(m, BaseMessage) for m in value):
            return _plan_messages(value)
        if isinstance(value, dict):
            return self._plan_dict(value)
        raise InvalidParameterError(
            "input", allowed="str, dict, PromptValue or a list of BaseMessage", received=type(value).__name__)

    def _plan_dict(self, value: dict[str, Any]) -> _Plan:
        keys = (self.context_key,) if isinstance(self.context_key, str) else self.context_key
        missing = [k for k in keys if k not in value]
        if missing:
            raise InvalidParameterError("input", allowed=f"a dict with the key {missing[0]!r}",
                                        received=sorted(map(str, value)))
        raw_question = value.get(self.question_key)
        question = raw_question if isinstance(raw_question, str) else None
        plans = [_plan_variable(key, value[key], question, self.title_key) for key in keys]
        jobs = [job for job, _ in plans if job is not None]

        def rebuild(results: list[CompressionResult]) -> dict[str, Any]:
            out, it = dict(value), iter(results)
            for key, (job, replace) in zip(keys, plans, strict=True):
                if job is not None:
                    out[key] = replace(next(it))
            return out

        return jobs, rebuild, None if jobs else NothingToCompress.NO_TEXT


def _plan_variable(key: str, context: Any, question: str | None, title_key: str | None
                   ) -> tuple[CompressionJob | None, Callable[[CompressionResult], Any]]:
    if isinstance(context, str):
        return (CompressionJob(context, question) if context.strip() else None), lambda r: r.text
    if isinstance(context, Sequence) and all(isinstance(d, Document) for d in context):
        docs = list(context)
        return (documents_job(docs, question, title_key) if any(d.page_content.strip() for d in docs) else None,
                lambda r: [d for d, _ in kept_documents(docs, r.text)])
    if isinstance(context, Sequence) and all(isinstance(p, str) for p in context):
        passages = list(context)
        return (CompressionJob(passages, question) if any(p.strip() for p in passages) else None,
                lambda r: [k for k in kept_per_passage(r.text, passages) if k])
    raise InvalidParameterError(key, allowed="str, list of str or list of Document", received=type(context).__name__)


def _plan_text(text: str, wrap: Callable[[str], Any]) -> _Plan:
    layout = find_context(text, whole_if_unstructured=True)
    if not layout.regions:
        reason = NothingToCompress.NO_CONTEXT_FOUND if text.strip() else NothingToCompress.NO_TEXT
        return [], lambda _: wrap(text), reason
    passages = layout.passages

    def rebuild(results: list[CompressionResult]) -> Any:
        return wrap(splice(layout, kept_per_passage(results[0].text, passages)))

    return [CompressionJob(passages, layout.question)], rebuild, None


def _plan_messages(messages: Sequence[BaseMessage]) -> _Plan:
    messages = list(messages)
    roles = [str(getattr(m, "role", m.type)) if m.type == "chat" else m.type for m in messages]
    plan = plan_messages(roles, [m.content for m in messages])
    if not plan.indices:
        return [], lambda _: list(messages), plan.reason

    def rebuild(results: list[CompressionResult]) -> list[BaseMessage]:
        out = list(messages)
        for i, kept in zip(plan.indices, plan.contents(results[0]), strict=True):
            out[i] = messages[i].model_copy(update={"content": kept})
        return out

    return [CompressionJob(list(plan.passages), plan.question)], rebuild, None


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
