"""Fair eviction, written once for every store and for sync and async I/O alike.

Private to the stores. :func:`fair_eviction` is a plan without I/O: a generator that yields what
it needs (the largest tenants, or "evict n of this tenant's least recently used entries") and is
sent the answers. The SQLite store and the PostgreSQL store's sync and async paths drive it with
:func:`run_eviction` / their own ``await`` loop inside the write transaction that stored the entry,
where writers are serialised, so the tenant counts it reads are exact.

The rules (documented on the stores' ``max_entries`` options):

1. A tenant past ``max_entries_per_tenant`` loses its own least recently used entries.
2. While the store is past ``max_entries``, the tenant holding the most entries loses its least
   recently used ones (ties: the writing tenant, then the first tenant by name). Only a largest
   tenant is ever evicted, so a tenant holding at most ``max_entries / tenants`` entries keeps
   them all, however much the others write.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

__all__ = ["CountersDisagree", "EvictLeastRecent", "LargestTenants", "Step", "fair_eviction", "run_eviction"]


@dataclass(frozen=True)
class LargestTenants:
    """Ask for the two largest tenants as ``[(tenant, entries), ...]``, largest first; among equals
    ``writer`` first, then by tenant name."""

    writer: str


@dataclass(frozen=True)
class EvictLeastRecent:
    """Delete ``n`` of ``tenant``'s least recently used entries; answer how many were deleted."""

    tenant: str
    n: int


Step = LargestTenants | EvictLeastRecent


class CountersDisagree(Exception):
    """The per-tenant counters name entries that are not there (a damaged store)."""


def fair_eviction(*, writer: str, writer_entries: int, total: int, max_entries: int | None,
                  max_entries_per_tenant: int | None) -> Generator[Step, object, None]:
    """The evictions that bring the store back within its bounds after ``writer`` stored an entry.

    ``writer_entries`` and ``total`` are the counts after the write. Raises
    :class:`CountersDisagree` when the store's counters promise entries that cannot be deleted.
    """
    if max_entries_per_tenant is not None and writer_entries > max_entries_per_tenant:
        n = writer_entries - max_entries_per_tenant
        total -= _deleted((yield EvictLeastRecent(writer, n)), n)
    if max_entries is None:
        return
    while total > max_entries:
        top = yield LargestTenants(writer)
        if not isinstance(top, list) or not top:
            raise CountersDisagree(f"the store counts {total} entries but no tenant holds any")
        victim, size = top[0]
        runner_up = top[1][1] if len(top) > 1 else 0
        # Down to the runner-up's size in one statement (at least one entry: ties take turns).
        n = min(total - max_entries, max(size - runner_up, 1))
        total -= _deleted((yield EvictLeastRecent(victim, n)), n)


def _deleted(answer: object, n: int) -> int:
    if not isinstance(answer, int) or isinstance(answer, bool) or answer != n:
        raise CountersDisagree(f"{n} entries were due for eviction, {answer!r} could be deleted")
    return answer


def run_eviction(plan: Generator[Step, object, None], largest: Callable[[str], list[tuple[str, int]]],
                 evict: Callable[[str, int], int]) -> None:
    """Drive ``plan`` with synchronous I/O."""
    answer: object = None
    try:
        while True:
            step = plan.send(answer)
            answer = largest(step.writer) if isinstance(step, LargestTenants) else evict(step.tenant, step.n)
    except StopIteration:
        return
