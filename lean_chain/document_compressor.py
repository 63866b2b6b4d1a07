"""LeanDocumentCompressor: query-aware compression of retrieved documents, one budget for all."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.callbacks import BaseCallbackManager, Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import PrivateAttr

from lean_chain.compress import documents_job, kept_documents
from lean_core.compression import CompressionOptions, CompressionResult
from lean_core.compression.structure import NothingToCompress, warn_nothing_compressed
from lean_core.tokens import count_tokens

__all__ = ["LeanDocumentCompressor"]


class LeanDocumentCompressor(CompressionOptions, BaseDocumentCompressor):
    """A document compressor for ``ContextualCompressionRetriever``; its options are
    :class:`~lean_core.compression.CompressionOptions`.

    The documents are compressed together, as passages, for the query under one budget (a
    ``ratio`` of their total tokens or ``target_tokens``). Each returned document is a copy of an
    input document (its own metadata and id) holding only its kept text, with
    ``metadata["lean_compression"] = {"original_tokens": ..., "kept_tokens": ...}`` (in
    ``target_model`` tokens); documents with nothing kept are dropped. Documents are context as they are (no structure is
    looked for in them); when none has any text they come back unchanged (an empty list stays
    empty) and a warning is logged once per instance. The ledger event carries the
    run's ``metadata["tenant"]`` (``retriever.invoke(q, config={"metadata": {"tenant": "acme"}})``),
    read from the callback manager the retriever passes down.

    Example::

        retriever = ContextualCompressionRetriever(
            base_compressor=LeanDocumentCompressor(target_tokens=400), base_retriever=base)
    """

    _warned: set[NothingToCompress] = PrivateAttr(default_factory=set)

    def compress_documents(self, documents: Sequence[Document], query: str,
                           callbacks: Callbacks | None = None) -> Sequence[Document]:
        if not any(d.page_content.strip() for d in documents):
            return self._nothing(documents)
        results = self.compress_jobs([documents_job(documents, query or None, self.title_key)])
        self.record_compression(results, tenant=_tenant_of(callbacks))
        return self._annotate(documents, results[0])

    async def acompress_documents(self, documents: Sequence[Document], query: str,
                                  callbacks: Callbacks | None = None) -> Sequence[Document]:
        if not any(d.page_content.strip() for d in documents):
            return self._nothing(documents)
        results = await self.acompress_jobs([documents_job(documents, query or None, self.title_key)])
        await self.arecord_compression(results, tenant=_tenant_of(callbacks))
        return self._annotate(documents, results[0])

    def _nothing(self, documents: Sequence[Document]) -> list[Document]:
        # Documents are context by definition: only missing text leaves nothing to compress.
        warn_nothing_compressed(NothingToCompress.NO_TEXT, self._warned, where="LeanDocumentCompressor")
        return list(documents)

    def _annotate(self, documents: Sequence[Document], result: CompressionResult) -> list[Document]:
        out = []
        for kept, original in kept_documents(documents, result.text):
            kept.metadata["lean_compression"] = {
                "original_tokens": count_tokens(original.page_content, self.target_model).tokens,
                "kept_tokens": count_tokens(kept.page_content, self.target_model).tokens,
            }
            out.append(kept)
        return out


def _tenant_of(callbacks: Callbacks | None) -> str | None:
    """The tenant in the run's metadata: a compressor gets no config, only its callback manager."""
    if isinstance(callbacks, BaseCallbackManager):
        tenant = (callbacks.metadata or {}).get("tenant")
        return tenant if isinstance(tenant, str) and tenant else None
    return None
