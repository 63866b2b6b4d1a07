"""lean_pipeline reads the tenant the way LeanCache does: input dict, then the run's metadata, then
tenant=, then the scope; with none, the request shares nothing (fail closed)."""

from __future__ import annotations

from pathlib import Path

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from lean_chain import lean_pipeline
from lean_core.cache import ResponseCache, SQLiteCacheStore
from lean_core.pipeline import PipelineSettings


class _CountingModel(GenericFakeChatModel):
    calls: int = 0

    def _generate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        return super()._generate(*args, **kwargs)


def _chain(tmp_path: Path) -> tuple[_CountingModel, object]:
    model = _CountingModel(messages=iter([AIMessage(content=f"answer {i}") for i in range(10)]))
    settings = PipelineSettings().with_layers(template=False, compression=False, budget=False)
    cache = ResponseCache(SQLiteCacheStore(tmp_path / "cache.sqlite3"), mode="exact")
    return model, lean_pipeline(model, settings=settings, cache=cache)


def test_the_run_metadata_tenant_scopes_the_cache(tmp_path: Path) -> None:
    model, chain = _chain(tmp_path)
    acme = {"metadata": {"tenant": "acme"}}
    first = chain.invoke("What is the refund window?", config=acme)  # type: ignore[attr-defined]
    again = chain.invoke("What is the refund window?", config=acme)  # type: ignore[attr-defined]
    other = chain.invoke("What is the refund window?", config={"metadata": {"tenant": "globex"}})  # type: ignore[attr-defined]
    assert again.content == first.content and model.calls == 2
    assert other.content != first.content
    assert again.response_metadata["lean_pipeline"]["cache_hit"] == "exact"


async def test_no_tenant_shares_nothing_async(tmp_path: Path) -> None:
    model, chain = _chain(tmp_path)
    await chain.ainvoke("What is the refund window?", config={"metadata": {"tenant": "acme"}})  # type: ignore[attr-defined]
    anonymous = await chain.ainvoke("What is the refund window?")  # type: ignore[attr-defined]
    assert anonymous.response_metadata["lean_pipeline"]["cache_hit"] is None
    assert anonymous.response_metadata["lean_pipeline"]["tenant"] is None and model.calls == 2
