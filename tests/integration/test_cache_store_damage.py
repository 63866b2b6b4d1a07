"""A damaged SQLite cache file is named, never served: random garbage over a real file.

Every trial scribbles over a copy of one real cache file (entries of three tenants, embeddings,
payloads that spill onto overflow pages) at a seeded random offset and length, then reads every
entry back exactly and semantically. Each trial must either work (every entry returned is exactly
what was stored; a miss is allowed, a cache may forget) or raise CacheCorruptError naming the file
and the rebuild command. Any other exception fails the test as it is raised.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lean_core.cache import CacheEntry, CacheNamespace, SQLiteCacheStore
from lean_core.errors import CacheCorruptError

pytestmark = pytest.mark.integration

DIM = 384
TRIALS = 80
NAMESPACES = [CacheNamespace(tenant, llm) for tenant in ("acme", "globex", "initech") for llm in ("m1", "m2")]


def _payload(rng: random.Random, i: int) -> str:
    # Some short, some longer than a page (overflow chains), some non-ASCII.
    size = rng.choice([20, 300, 1500, 6000])
    return f'{{"answer": {i}, "text": "' + "".join(rng.choice("abcdéλ中 ") for _ in range(size)) + '"}'


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[int, str], tuple[CacheEntry, np.ndarray]]]:
    """A checkpointed cache file with 240 entries, and what each entry must read back as."""
    path = tmp_path_factory.mktemp("damage") / "pristine.sqlite3"
    rng = random.Random(7)
    vectors = np.random.default_rng(7)
    expected: dict[tuple[int, str], tuple[CacheEntry, np.ndarray]] = {}
    with SQLiteCacheStore(path, max_entries=None) as store:
        for i in range(240):
            n = i % len(NAMESPACES)
            namespace = NAMESPACES[n]
            vector = vectors.standard_normal(DIM).astype(np.float32)
            vector /= np.linalg.norm(vector)
            entry = CacheEntry(tenant=namespace.tenant, llm_hash=namespace.llm_hash, prompt_key=f"key-{i}",
                               prompt=f"question {i}", payload=_payload(rng, i), created_at=1000.0 + i,
                               expires_at=None if i % 3 else 1e10, input_tokens=i, output_tokens=2 * i)
            store.put(entry, vector)
            expected[(n, entry.prompt_key)] = (entry, vector)
    with sqlite3.connect(path) as conn:  # everything into the main file: no WAL left beside it
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    return path, expected


def _exercise(path: Path, expected: dict[tuple[int, str], tuple[CacheEntry, np.ndarray]]) -> int:
    """Read every entry exactly and by vector; write one. Returns how many expected entries were missed."""
    misses = 0
    store = SQLiteCacheStore(path, max_entries=None)
    try:
        for (n, key), (entry, _vector) in expected.items():
            got = store.get(NAMESPACES[n], key, now=2000.0)
            if got is None:
                misses += 1
            else:
                assert got == entry, f"served a wrong entry for {key}"
        for (n, _key), (_entry, vector) in list(expected.items())[::6]:
            for candidate in store.search(NAMESPACES[n], vector, k=3, min_similarity=-1.0, now=2000.0):
                stored, _ = expected[(n, candidate.entry.prompt_key)]
                assert candidate.entry == stored, f"search served a wrong entry for {candidate.entry.prompt_key}"
        fresh = CacheEntry(tenant="acme", llm_hash=NAMESPACES[0].llm_hash, prompt_key="fresh", prompt="fresh",
                           payload="fresh answer", created_at=3000.0)
        store.put(fresh, None)
        assert store.get(NAMESPACES[0], "fresh", now=3001.0) == fresh
    finally:
        store.close()
    return misses


def test_random_damage_is_named_or_harmless(pristine: tuple[Path, dict[tuple[int, str], tuple[CacheEntry, np.ndarray]]],
                                            tmp_path: Path) -> None:
    source, expected = pristine
    data = source.read_bytes()
    rng = random.Random(2024)
    outcomes: Counter[str] = Counter()
    for trial in range(TRIALS):
        path = tmp_path / f"trial-{trial}.sqlite3"
        damaged = bytearray(data)
        length = rng.choice([1, 4, 16, 100, 700, 4096, 20_000])
        offset = rng.randrange(0, len(damaged) - 1)
        fill = rng.choice(["random", "zeros", "ones"])
        garbage = (rng.randbytes(length) if fill == "random" else (b"\x00" if fill == "zeros" else b"\xff") * length)
        damaged[offset:offset + length] = garbage[: len(damaged) - offset]
        path.write_bytes(bytes(damaged))
        try:
            misses = _exercise(path, expected)
        except CacheCorruptError as exc:
            assert str(path) in str(exc) and f"lean-inference cache rebuild {path}" in str(exc)
            outcomes["named"] += 1
        else:
            outcomes["worked" if not misses else "worked with misses"] += 1
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
        for side in ("-wal", "-shm"):
            Path(f"{path}{side}").unlink(missing_ok=True)
    print(f"{TRIALS} damaged files: {dict(outcomes)}")
    # Both outcomes occur (damage in unused space is harmless), so neither branch is vacuous.
    assert outcomes["named"] >= TRIALS // 4 and outcomes["worked"] >= 1, outcomes


def test_the_rebuild_command_named_in_the_error_makes_the_file_usable(tmp_path: Path) -> None:
    from lean_cli.cache_commands import add_cache_commands

    path = tmp_path / "c.sqlite3"
    with SQLiteCacheStore(path) as store:
        store.put(CacheEntry(tenant="t", llm_hash="h", prompt_key="k", prompt="p", payload="x" * 5000,
                             created_at=1.0), None)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\xa5" * 4096  # the entries table's root page
    path.write_bytes(bytes(data))
    with pytest.raises(CacheCorruptError) as info:
        SQLiteCacheStore(path).count()
    import argparse

    parser = argparse.ArgumentParser()
    add_cache_commands(parser.add_subparsers())
    args = parser.parse_args(str(info.value).split("`")[1].split()[1:])  # "lean-inference cache rebuild PATH"
    assert args.func(args) == 0
    with SQLiteCacheStore(path) as store:
        assert store.count() == 0 and store.integrity_check() == "ok"
