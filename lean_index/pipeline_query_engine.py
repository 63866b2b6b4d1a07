"""LeanPipelineQueryEngine: a LlamaIndex query engine that answers through the five layers."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.base.response.schema import Response
from llama_index.core.llms import LLM
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import NodeWithScore, QueryBundle
from pydantic import ConfigDict, Field, PrivateAttr

from lean_core._usage_parsing import usage_from_payload
from lean_core.errors import InvalidParameterError
from lean_core.ledger import CostLedger
from lean_core.pipeline import (
    LeanPipeline,
    ModelCall,
    ModelReply,
    PipelineRequest,
    PipelineResult,
    PipelineSettings,
)
from lean_core.tokens import count_tokens
from lean_core.usage import TokenUsage
from lean_index.budget_llm import _finish, _raw_dict, budgeted_llm

__all__ = ["LLMPort", "LeanPipelineQueryEngine"]

_ROLES = {"system": MessageRole.SYSTEM, "user": MessageRole.USER, "assistant": MessageRole.ASSISTANT}


class LLMPort:
    """Any LlamaIndex LLM as the pipeline's model (budget set on a copy or passed per call, usage
    from the provider's raw response, counted when it reports none)."""

    def __init__(self, llm: LLM) -> None:
        if not isinstance(llm, LLM):
            raise InvalidParameterError("llm", allowed="a LlamaIndex LLM", received=type(llm).__name__)
        self.llm = llm
        self._name = str(llm.metadata.model_name or llm.class_name())

    @property
    def model_name(self) -> str:
        return self._name

    def _prepare(self, call: ModelCall) -> tuple[LLM, dict[str, Any], list[ChatMessage]]:
        target, kwargs = budgeted_llm(self.llm, max_tokens=call.max_tokens, stop=call.stop, early_stop=call.early_stop)
        messages = [ChatMessage(role=_ROLES[m["role"]], content=m["content"]) for m in call.messages]
        return target, kwargs, messages

    def _reply(self, response: Any) -> ModelReply:
        raw = _raw_dict(response.raw)
        text = response.message.content or ""
        usage = usage_from_payload(raw) or TokenUsage(output_tokens=count_tokens(text, self._name).tokens,
                                                      source="estimate")
        early = raw.get("early_stop")
        return ModelReply(text=text, finish_reason=_finish(raw), usage=usage,
                          early_stop=None if early is None else str(early))

    def complete(self, call: ModelCall) -> ModelReply:
        target, kwargs, messages = self._prepare(call)
        return self._reply(target.chat(messages, **kwargs))

    async def acomplete(self, call: ModelCall) -> ModelReply:
        target, kwargs, messages = self._prepare(call)
        return self._reply(await target.achat(messages, **kwargs))


class LeanPipelineQueryEngine(CustomQueryEngine):
    """Retrieve nodes, post-process them (optional), then answer through cache → template →
    compression → output budget → ``llm``, each layer recorded in the ledger.

    The response keeps the retrieved nodes (metadata and scores intact) as ``source_nodes`` and
    says what each layer did in ``response.metadata["lean_pipeline"]``.

    Example::

        engine = LeanPipelineQueryEngine(retriever=index.as_retriever(similarity_top_k=8), llm=LeanVLLM(),
                                         ledger=CostLedger())
        print(engine.query("When does the museum open on Sundays?"))
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: BaseRetriever
    llm: LLM
    settings: PipelineSettings = Field(default_factory=PipelineSettings)
    ledger: CostLedger | None = None
    node_postprocessors: list[BaseNodePostprocessor] = Field(default_factory=list)
    """Applied after retrieval, before the pipeline (e.g. a reranker)."""
    tenant: str | None = None
    cache: Any = None
    """A ``ResponseCache`` (e.g. on PostgreSQL); None builds one from ``settings.cache``."""
    _pipeline: LeanPipeline = PrivateAttr()

    def model_post_init(self, __context: Any) -> None:
        self._pipeline = LeanPipeline(LLMPort(self.llm), settings=self.settings, ledger=self.ledger, cache=self.cache)

    @property
    def pipeline(self) -> LeanPipeline:
        return self._pipeline

    def _nodes(self, nodes: list[NodeWithScore], query: str) -> list[NodeWithScore]:
        for post in self.node_postprocessors:
            nodes = post.postprocess_nodes(nodes, query_bundle=QueryBundle(query))
        return nodes

    def _request(self, query: str, nodes: list[NodeWithScore]) -> PipelineRequest:
        return PipelineRequest(question=query, context=tuple(n.node.get_content() for n in nodes), tenant=self.tenant)

    @staticmethod
    def _response(result: PipelineResult, nodes: list[NodeWithScore]) -> Response:
        return Response(response=result.answer, source_nodes=nodes,
                        metadata={"lean_pipeline": result.model_dump(exclude={"messages"})})

    def custom_query(self, query_str: str) -> Response:
        nodes = self._nodes(self.retriever.retrieve(query_str), query_str)
        return self._response(self._pipeline.invoke(self._request(query_str, nodes)), nodes)

    async def acustom_query(self, query_str: str) -> Response:
        nodes = await self.retriever.aretrieve(query_str)
        nodes = self._nodes(nodes, query_str)
        return self._response(await self._pipeline.ainvoke(self._request(query_str, nodes)), nodes)
