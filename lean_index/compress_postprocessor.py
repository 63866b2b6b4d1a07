"""LeanCompressPostprocessor: query-aware compression of retrieved nodes under one token budget."""

from __future__ import annotations

from collections.abc import Sequence

from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from pydantic import PrivateAttr

from lean_core.compression import CompressionJob, CompressionOptions, CompressionResult
from lean_core.compression.attribute import kept_per_passage, titles_from_metadata
from lean_core.compression.structure import NothingToCompress, warn_nothing_compressed
from lean_index._offline import ensure_offline_tokenizer

__all__ = ["LeanCompressPostprocessor"]


class LeanCompressPostprocessor(CompressionOptions, BaseNodePostprocessor):
    """Keep the parts of the retrieved nodes that matter for the query, under a total budget.

    The nodes are compressed together, as passages, for ``query_bundle.query_str`` under one budget
    (a ``ratio`` of their total tokens, or ``target_tokens``). Each returned node is a copy of an
    input node (same id, metadata, relationships and score) holding only its kept text; nodes with
    nothing kept are removed, and the rest come back ordered by score (highest first, ties in
    input order). Nodes are context as they are (no structure is looked for in them); when none
    has any text they come back unchanged and a warning is logged once per instance. The budget, compressor and ledger options are
    :class:`~lean_core.compression.CompressionOptions`; the compressor is built on first use.

    Example::

        engine = index.as_query_engine(node_postprocessors=[LeanCompressPostprocessor(target_tokens=300)])
    """

    _warned: set[NothingToCompress] = PrivateAttr(default_factory=set)

    def _nothing(self, nodes: list[NodeWithScore]) -> list[NodeWithScore]:
        # Nodes are context by definition: only missing text leaves nothing to compress.
        warn_nothing_compressed(NothingToCompress.NO_TEXT, self._warned, where="LeanCompressPostprocessor")
        return list(nodes)

    @classmethod
    def class_name(cls) -> str:
        return "LeanCompressPostprocessor"

    def _postprocess_nodes(self, nodes: list[NodeWithScore],
                           query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        ensure_offline_tokenizer()
        ranked, job = _prepare(nodes, query_bundle, self.title_key)
        if not ranked or not any(p.strip() for p in job.context):
            return self._nothing(nodes)
        results = self.compress_jobs([job])
        self.record_compression(results)
        return _rebuild(ranked, job, results[0])

    async def _apostprocess_nodes(self, nodes: list[NodeWithScore],
                                  query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        ensure_offline_tokenizer()
        ranked, job = _prepare(nodes, query_bundle, self.title_key)
        if not ranked or not any(p.strip() for p in job.context):
            return self._nothing(nodes)
        results = await self.acompress_jobs([job])
        await self.arecord_compression(results)
        return _rebuild(ranked, job, results[0])


def _prepare(nodes: Sequence[NodeWithScore], query_bundle: QueryBundle | None, title_key: str | None
             ) -> tuple[list[NodeWithScore], CompressionJob]:
    """The nodes by score (highest first) and one job: their texts as passages, titles alongside."""
    ranked = sorted(nodes, key=lambda n: -(n.score if n.score is not None else float("-inf")))
    passages = [n.node.get_content(metadata_mode=MetadataMode.NONE) for n in ranked]
    titles = titles_from_metadata([n.node.metadata for n in ranked], title_key)
    question = query_bundle.query_str if query_bundle is not None and query_bundle.query_str else None
    return ranked, CompressionJob(passages, question, titles)


def _rebuild(ranked: list[NodeWithScore], job: CompressionJob, result: CompressionResult) -> list[NodeWithScore]:
    out: list[NodeWithScore] = []
    for item, kept in zip(ranked, kept_per_passage(result.text, job.context), strict=True):
        if not kept:
            continue
        node = item.node.model_copy(update={"metadata": dict(item.node.metadata)})
        node.set_content(kept)
        out.append(NodeWithScore(node=node, score=item.score))
    return out


