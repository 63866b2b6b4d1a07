"""The caches compared by ``bench cache --pairs``, behind one small interface.

Each method is filled with the cached prompts (embeddings computed once, in batches, by the
harness) and then answers one lookup at a time through its real API, embedding included:

* ``lean``: :class:`~lean_core.cache.ResponseCache` in semantic mode (exact key first, then
  nearest candidates checked by the shipped :class:`~lean_core.cache.SemanticVerifier`), on a
  :class:`~lean_core.cache.SQLiteCacheStore` in a temporary directory.
* ``gptcache``: GPTCache 0.1.44 as its documentation sets up similarity caching (sqlite scalar
  store, faiss vector store, ``SearchDistanceEvaluation`` and ``Config`` defaults: a hit needs
  cosine >= 0.6 for unit vectors), imported through :func:`lean_core.cache._gptcache.import_gptcache`,
  with the same MiniLM embeddings; its LRU bound is raised above the number of entries so that
  nothing is evicted during the run.
* ``threshold``: the nearest cached prompt by raw MiniLM cosine, served when the cosine reaches a
  fixed threshold (default 0.9): what a cache without verification does.

Stream replay (``bench cache-stream``) also writes through each method, one answer at a time, on
every miss (:meth:`CacheMethod.add`); ``lean`` then goes through ``ResponseCache.update``, so an
error-bounded cache (``max_error_rate``) sees the fresh answer of its explorations.
"""

from __future__ import annotations

import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lean_core.cache.normalize import normalize_prompt, prompt_key
from lean_core.cache.types import CacheEntry, CacheNamespace
from lean_core.errors import InvalidParameterError

if TYPE_CHECKING:
    import numpy as np

    from lean_core.cache.verifier import SemanticVerifier
    from lean_core.embeddings import Embedder

__all__ = ["DEFAULT_COSINE_THRESHOLD", "METHODS", "CacheMethod", "Served", "build_method"]

DEFAULT_COSINE_THRESHOLD = 0.9
"""The ``threshold`` method's default: serve the nearest prompt when cosine >= 0.9."""
METHODS = ("lean", "gptcache", "threshold")
BENCH_NAMESPACE = CacheNamespace(tenant="bench", llm="lean-inference bench cache")


@dataclass(frozen=True)
class Served:
    """What one lookup served."""

    prompt: str | None
    """The cached prompt whose answer was served; None on a miss."""
    kind: Literal["exact", "semantic"] | None = None
    rejected: int = 0
    """Candidates the method examined and refused (``lean`` only)."""
    rejection_reasons: tuple[str, ...] = ()
    payload: str | None = None
    """The served answer, where the method stores answers given by :meth:`CacheMethod.add`."""


class CacheMethod(ABC):
    """A cache under test: filled once, then looked up one prompt at a time."""

    name: str

    @abstractmethod
    def fill(self, prompts: Sequence[str], vectors: np.ndarray) -> None:
        """Cache ``prompts``; ``vectors[i]`` is the unit MiniLM embedding of ``normalize_prompt(prompts[i])``."""

    @abstractmethod
    def lookup(self, query: str) -> Served:
        """One lookup through the method's real API (embedding the query included)."""

    @abstractmethod
    def close(self) -> None:
        """Release files and connections."""

    def add(self, prompt: str, payload: str) -> None:
        """Cache ``payload`` as the answer to ``prompt`` after a miss (stream replay)."""
        raise NotImplementedError(f"{self.name} does not take answers one at a time")


class LeanMethod(CacheMethod):
    name = "lean"

    def __init__(self, directory: Path, embedder: Embedder, verifier: SemanticVerifier | None,
                 cache_options: Mapping[str, Any] | None = None) -> None:
        from lean_core.cache.response_cache import ResponseCache
        from lean_core.cache.sqlite_store import SQLiteCacheStore

        self._store = SQLiteCacheStore(directory / "lean.sqlite3", max_entries=None)
        # cache_options: e.g. max_error_rate and answer_equivalence for the error-bounded cache.
        self.cache = ResponseCache(self._store, mode="semantic", embedder=embedder, verifier=verifier,
                                   **dict(cache_options or {}))

    def fill(self, prompts: Sequence[str], vectors: np.ndarray) -> None:
        # What ResponseCache.update stores, with the embedding computed in a batch beforehand.
        now = time.time()
        for prompt, vector in zip(prompts, vectors, strict=True):
            self._store.put(CacheEntry(tenant=BENCH_NAMESPACE.tenant, llm_hash=BENCH_NAMESPACE.llm_hash,
                                       prompt_key=prompt_key(prompt), prompt=prompt, payload=prompt,
                                       created_at=now), vector)

    def lookup(self, query: str) -> Served:
        result = self.cache.lookup(query, namespace=BENCH_NAMESPACE)
        return Served(prompt=None if result.entry is None else result.entry.prompt, kind=result.kind,
                      rejected=result.rejected, rejection_reasons=result.rejection_reasons,
                      payload=None if result.entry is None else result.entry.payload)

    def add(self, prompt: str, payload: str) -> None:
        self.cache.update(prompt, payload, namespace=BENCH_NAMESPACE)

    def close(self) -> None:
        self.cache.close()


class GPTCacheMethod(CacheMethod):
    name = "gptcache"

    def __init__(self, directory: Path, embedder: Embedder) -> None:
        self._directory = directory / "gptcache"
        self._embedder = embedder
        self._prepared: dict[str, Any] = {}
        self._prompts: list[str] = []
        self._cache: Any = None

    def _embed(self, text: str) -> Any:
        vector = self._prepared.get(text)
        return vector if vector is not None else self._embedder.encode([text])[0]

    def fill(self, prompts: Sequence[str], vectors: np.ndarray, *, capacity: int = 0) -> None:
        """``capacity``: entries :meth:`add` will write later (the LRU bound is raised above them)."""
        from lean_core.cache._gptcache import import_gptcache, similar_cache

        import_gptcache()
        from gptcache.adapter.api import put

        self._prompts = list(prompts)
        self._cache = similar_cache(self._directory, embed=self._embed, dimension=int(vectors.shape[1]),
                                    max_size=len(prompts) + capacity + 16)
        # GPTCache embeds the raw prompt; MiniLM ignores the whitespace that normalisation removes.
        self._prepared = {p: v for p, v in zip(prompts, vectors, strict=True)}
        for number, prompt in enumerate(prompts):
            put(prompt, str(number), cache_obj=self._cache)
        self._prepared = {}  # lookups embed for real

    def lookup(self, query: str) -> Served:
        from gptcache.adapter.api import get

        answer = get(query, cache_obj=self._cache)
        if answer is None:
            return Served(prompt=None)
        served = self._prompts[int(answer)]
        return Served(prompt=served, kind="exact" if normalize_prompt(served) == normalize_prompt(query)
                      else "semantic")

    def add(self, prompt: str, payload: str) -> None:
        # The stored answer is the prompt's index; lookups map it back (the harness knows answers).
        from gptcache.adapter.api import put

        self._prompts.append(prompt)
        put(prompt, str(len(self._prompts) - 1), cache_obj=self._cache)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.data_manager.close()
            # GPTCache registers an atexit hook that closes (and flushes) the data manager again,
            # by then into a deleted directory: give it nothing to do.
            self._cache.data_manager = _Closed()
            self._cache = None


class _Closed:
    def close(self) -> None:
        pass


class ThresholdMethod(CacheMethod):
    name = "threshold"

    def __init__(self, embedder: Embedder, threshold: float) -> None:
        self._embedder = embedder
        self.threshold = threshold
        self._prompts: list[str] = []
        self._matrix: Any = None
        self._rows = 0

    def fill(self, prompts: Sequence[str], vectors: np.ndarray) -> None:
        import numpy as np

        self._prompts = list(prompts)
        self._matrix = np.asarray(vectors, dtype=np.float32)
        self._rows = len(self._prompts)

    def lookup(self, query: str) -> Served:
        import numpy as np

        vector = self._embedder.encode([normalize_prompt(query)])[0]
        if not self._rows:
            return Served(prompt=None)
        sims = self._matrix[: self._rows] @ vector
        best = int(np.argmax(sims))
        if float(sims[best]) < self.threshold:
            return Served(prompt=None)
        served = self._prompts[best]
        return Served(prompt=served, kind="exact" if normalize_prompt(served) == normalize_prompt(query)
                      else "semantic")

    def add(self, prompt: str, payload: str) -> None:
        import numpy as np

        vector = self._embedder.encode([normalize_prompt(prompt)])[0]
        if self._rows == len(self._matrix):  # grow by doubling: appends stay amortised O(1)
            grown = np.zeros((max(2 * len(self._matrix), 64), len(vector)), dtype=np.float32)
            grown[: self._rows] = self._matrix[: self._rows]
            self._matrix = grown
        self._matrix[self._rows] = vector
        self._prompts.append(prompt)
        self._rows += 1

    def close(self) -> None:
        self._matrix = None


def build_method(name: str, *, embedder: Embedder, verifier: SemanticVerifier | None = None,
                 threshold: float = DEFAULT_COSINE_THRESHOLD, directory: Path | None = None,
                 cache_options: Mapping[str, Any] | None = None) -> tuple[CacheMethod, Callable[[], None]]:
    """The method ``name`` and a cleanup callable (closes it and removes its temporary files).

    ``cache_options``: extra ``ResponseCache`` keyword arguments of the ``lean`` method."""
    if name not in METHODS:
        raise InvalidParameterError("method", allowed=" | ".join(METHODS), received=name)
    holder = tempfile.TemporaryDirectory(prefix=f"lean-bench-{name}-") if directory is None else None
    root = Path(holder.name) if holder is not None else Path(directory)  # type: ignore[arg-type]
    method: CacheMethod
    if name == "lean":
        method = LeanMethod(root, embedder, verifier, cache_options)
    elif name == "gptcache":
        method = GPTCacheMethod(root, embedder)
    else:
        method = ThresholdMethod(embedder, threshold)

    def cleanup() -> None:
        method.close()
        if holder is not None:
            holder.cleanup()

    return method, cleanup
