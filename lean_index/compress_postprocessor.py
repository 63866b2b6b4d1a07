"""LeanCompressPostprocessor: query-aware compression of retrieved nodes under one token budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from pydantic import Field, PrivateAttr, model_validator

from lean_core.compression import CompressionBudget, CompressionResult, Compressor
from lean_core.compression.attribute import (
    budget_from_options,
    kept_per_passage,
    titles_from_metadata,
)
from lean_core.compression.chain import CompressionMethod, compressor_for
from lean_core.ledger import CostLedger
from lean_index._offline import ensure_offline_tokenizer

__all__ = ["LeanCompressPostprocessor"]



class LeanCompressPostprocessor(BaseNodePostprocessor):
    """Keep the parts of the retrieved nodes that matter for the query, under a total budget.

    The nodes are compressed together, as passages, for ``query_bundle.query_str`` under one budget
    (a ``ratio`` of their total tokens, or ``target_tokens``). Each returned node is a copy of an
    input node (same id, metadata, relationships and score) holding only its kept text; nodes with
    nothing kept are removed, and the rest come back ordered by score (highest first, ties in
    input order).

    Example::

        engine = index.as_query_engine(node_postprocessors=[LeanCompressPostprocessor(target_tokens=300)])
    """

    ratio: float | None = Field(0.5, gt=0.0, le=1.0)
    """Keep at most this share of the nodes' total tokens, in (0, 1]; the default
    budget, replaced by ``target_tokens`` when that is given (giving both is an error)."""
    target_tokens: int | None = Field(None, ge=1)
    """Keep at most this many tokens over all nodes (>= 1), counted in ``target_model`` tokens."""
    target_model: str = "gpt-4o"
    """Model whose tokenizer counts the budget (see ``lean_core.tokens``)."""
    ledger: CostLedger | None = Field(None, exclude=True)
    """When given, each call records one "compression" savings event (tokens before/after)."""
    method: CompressionMethod = "lean"
    """The compressor built when none is given: ``"lean"`` (sentence selection, fast),
    ``"llmlingua"`` (token level, slow on CPU) or ``"lean+llmlingua"`` (coarse then fine)."""
    title_key: str | None = "title"
    """Node metadata key of each node's document title. The compressor reads a sentence that opens
    with a pronoun ("It was founded in...") as being about that title; never added to the output.
    None: only a heading the text itself opens with is used."""

    _compressor: Compressor = PrivateAttr()

    def __init__(self, *, compressor: Compressor | None = None, **kwargs: object) -> None:
        """``compressor``: the compressor to use (default: the ``method``'s, whose models load on
        first use). Give the ledger here, not to the compressor."""
        super().__init__(**kwargs)
        self._compressor = compressor if compressor is not None else compressor_for(self.method)

    @model_validator(mode="after")
    def _one_budget(self) -> Self:
        self.budget  # noqa: B018 - validates ratio/target_tokens once, at construction
        return self

    @classmethod
    def class_name(cls) -> str:
        return "LeanCompressPostprocessor"

    @property
    def budget(self) -> CompressionBudget:
        """The budget every compressor call gets."""
        return budget_from_options(ratio=self.ratio, target_tokens=self.target_tokens,
                                   target_model=self.target_model, ratio_was_set="ratio" in self.model_fields_set)

    def _postprocess_nodes(self, nodes: list[NodeWithScore],
                           query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        ensure_offline_tokenizer()
        ranked, passages, titles, question = _prepare(nodes, query_bundle, self.title_key)
        if not ranked:
            return []
        result = self._compressor.compress(passages, budget=self.budget, question=question, titles=titles)
        if self.ledger is not None:
            self.ledger.record_savings(**_savings(result, self.target_model))
        return _rebuild(ranked, passages, result)

    async def _apostprocess_nodes(self, nodes: list[NodeWithScore],
                                  query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        ensure_offline_tokenizer()
        ranked, passages, titles, question = _prepare(nodes, query_bundle, self.title_key)
        if not ranked:
            return []
        result = await self._compressor.acompress(passages, budget=self.budget, question=question, titles=titles)
        if self.ledger is not None:
            await self.ledger.arecord_savings(**_savings(result, self.target_model))
        return _rebuild(ranked, passages, result)


def _prepare(nodes: Sequence[NodeWithScore], query_bundle: QueryBundle | None, title_key: str | None
             ) -> tuple[list[NodeWithScore], list[str], list[str | None] | None, str | None]:
    ranked = sorted(nodes, key=lambda n: -(n.score if n.score is not None else float("-inf")))
    passages = [n.node.get_content(metadata_mode=MetadataMode.NONE) for n in ranked]
    titles = titles_from_metadata([n.node.metadata for n in ranked], title_key)
    question = query_bundle.query_str if query_bundle is not None and query_bundle.query_str else None
    return ranked, passages, titles, question


def _savings(result: CompressionResult, model: str) -> dict[str, Any]:
    return dict(layer="compression", model=model, input_tokens_before=result.original_tokens,
                input_tokens_after=result.compressed_tokens)


def _rebuild(ranked: list[NodeWithScore], passages: list[str], result: CompressionResult) -> list[NodeWithScore]:
    out: list[NodeWithScore] = []
    for item, kept in zip(ranked, kept_per_passage(result.text, passages), strict=True):
        if not kept:
            continue
        node = item.node.model_copy(update={"metadata": dict(item.node.metadata)})
        node.set_content(kept)
        out.append(NodeWithScore(node=node, score=item.score))
    return out


