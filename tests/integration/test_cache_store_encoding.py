"""Any Python str a cache hands a store comes back exactly: NUL, lone surrogates, 1M characters.

PostgreSQL text cannot hold NUL and neither driver encodes a lone surrogate; the stores escape
such strings (see lean_core/cache/_store_codec.py). Both stores run the same round trips.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lean_core.cache import (
    CacheEntry,
    CacheNamespace,
    CacheStore,
    PostgresCacheStore,
    SQLiteCacheStore,
)
from lean_core.cache.types import UnstorableEntryError
from lean_core.errors import CacheStoreError
from tests.integration.postgres_fixture import postgres_dsn  # noqa: F401

pytestmark = pytest.mark.integration

DIM = 8
MARK = "\uffff"
ODD = [
    "nul \x00 inside", "\x00", "lone high \ud800", "lone low \udfff end", "\udc80\ud800 reversed pair",
    "emoji 😀 and \U0010ffff", MARK, MARK + '"looks escaped"', MARK + json.dumps("a\x00"), "a\x00",
    "", " ", "tab\tnewline\n\r", "\\u0000 written out", '{"json": "\\ud800"}', "é" * 1000,
]


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CacheStore]:
    if request.param == "sqlite":
        made: CacheStore = SQLiteCacheStore(tmp_path / "enc.sqlite3", max_entries=None)
    else:
        made = PostgresCacheStore(request.getfixturevalue("postgres_dsn"), table=f"enc_{uuid.uuid4().hex[:12]}",
                                  dimensions=DIM, max_entries=None)
    with made:
        yield made


def vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def make(tenant: str, key: str, text: str, *, llm: str = "model") -> tuple[CacheNamespace, CacheEntry]:
    namespace = CacheNamespace(tenant, llm)
    return namespace, CacheEntry(tenant=tenant, llm_hash=namespace.llm_hash, prompt_key=key, prompt=text,
                                 payload=text, created_at=1.0, input_tokens=3, output_tokens=4)


def test_odd_strings_round_trip_in_every_field(store: CacheStore) -> None:
    written = []
    for i, text in enumerate(ODD):
        tenant = text if text else "empty-tenant-stand-in"  # a tenant is non-empty by contract
        namespace, entry = make(tenant[:256], text, text)
        store.put(entry, vector(i))
        written.append((namespace, entry, vector(i)))
    # Distinct strings stay distinct (the escaping is one-to-one): "a\x00" and its escaped look-alike.
    assert store.count() == len(ODD)
    for namespace, entry, v in written:
        assert store.get(namespace, entry.prompt_key, now=2.0) == entry
        found = store.search(namespace, v, k=5, min_similarity=-1.0, now=2.0)
        assert [c.entry for c in found if c.entry.prompt_key == entry.prompt_key] == [entry]
        assert all(c.entry.tenant == namespace.tenant for c in found)
    odd_tenant = written[0][0]
    assert store.count(tenant=odd_tenant.tenant) == 1
    assert store.invalidate(namespace=odd_tenant, prompt_key=written[0][1].prompt_key) == 1
    assert store.invalidate(tenant="lone high \ud800") == 1
    assert store.count() == len(ODD) - 2


def test_a_million_character_prompt_round_trips(store: CacheStore) -> None:
    big = ("a question \x00 with \ud800 everything " * 40_000)[:1_000_000]
    namespace, entry = make("acme", "big", big)
    store.put(entry, vector(1))
    assert store.get(namespace, "big", now=2.0) == entry
    plain = "x" * 1_000_000
    namespace, entry = make("acme", "plain", plain)
    store.put(entry, None)
    got = store.get(namespace, "plain", now=2.0)
    assert got is not None and got.payload == plain


def test_async_round_trip(store: CacheStore) -> None:
    namespace, entry = make("t\x00\ud801", "k\ud800", "p\x00")

    async def run() -> CacheEntry | None:
        await store.aput(entry, vector(3))
        return await store.aget(namespace, "k\ud800", now=2.0)

    assert asyncio.run(run()) == entry


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tenant=st.text(min_size=1, max_size=20), key=st.text(max_size=20), text=st.text(max_size=200))
def test_any_text_round_trips(store: CacheStore, tenant: str, key: str, text: str) -> None:
    namespace, entry = make(tenant, key, text, llm=text or "m")
    store.put(entry, None)
    assert store.get(namespace, key, now=2.0) == entry
    assert store.invalidate(namespace=namespace, prompt_key=key) == 1


def test_what_no_store_can_hold_is_a_named_unstorable_entry(store: CacheStore,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lean_core.cache._store_codec.MAX_FIELD_CHARS", 1000)
    namespace, entry = make("acme", "long", "y" * 1001)
    with pytest.raises(UnstorableEntryError, match=r"entry\.prompt") as info:
        store.put(entry, None)
    assert isinstance(info.value, CacheStoreError) and isinstance(info.value, ValueError)
    _, huge = make("acme", "tokens", "z")
    with pytest.raises(UnstorableEntryError, match="input_tokens"):
        store.put(CacheEntry(**{**huge.__dict__, "input_tokens": 2**31}), None)
    assert store.count() == 0 and store.get(namespace, "long", now=2.0) is None
