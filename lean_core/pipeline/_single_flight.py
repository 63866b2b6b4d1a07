"""Single flight: identical requests that overlap share one model call, on threads and on asyncio.

The first request for a key leads: it calls the model and publishes what it got. Requests that
arrive while it is in flight follow: they wait for the leader's answer instead of calling the
model again. A leader that fails (an exception, a cancellation, or an answer not worth sharing)
publishes ``None``; its followers then call the model themselves, so one failure is never served
to others as an answer.

One registry serves both paths: the outcome is a :class:`concurrent.futures.Future`, which a
thread waits on directly and a coroutine awaits through :func:`asyncio.wrap_future`, so a sync
request and an async one for the same key coalesce too.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["Flight", "FlightKey", "SingleFlight"]

T = TypeVar("T")

FlightKey = tuple[str, str]
"""(tenant, normalised prompt key): a flight is never shared across tenants."""


@dataclass(frozen=True, eq=False)
class Flight(Generic[T]):
    """One request at the model, which identical requests may wait for."""

    key: FlightKey
    thread: int
    """The leader's thread (for an async leader, its event loop's): a blocking wait on this
    thread would wait for itself."""
    outcome: Future[T | None] = field(default_factory=Future)
    """The leader's shareable answer, or None when it has none (followers then go alone)."""


class SingleFlight(Generic[T]):
    """Flights in progress by key; thread-safe, and usable from any number of event loops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[FlightKey, Flight[T]] = {}

    def join_or_lead(self, key: FlightKey) -> tuple[Flight[T], bool]:
        """The flight in progress for ``key`` (False: follow it), or a new one this caller leads (True)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = Flight(key=key, thread=threading.get_ident())
            return flight, True

    def lead(self, key: FlightKey) -> Flight[T] | None:
        """A new flight for ``key`` led by the caller, or None when another is already in progress
        (a follower whose leader failed then calls the model alone rather than queueing again)."""
        flight, leading = self.join_or_lead(key)
        return flight if leading else None

    def land(self, flight: Flight[T] | None, answer: T | None) -> None:
        """End ``flight`` (the leader's last act, on success and failure alike) and hand its
        followers ``answer`` (None: they call the model themselves). None flight: nothing to do."""
        if flight is None:
            return
        with self._lock:
            # Removed before publishing: a request arriving now finds the answer in the cache.
            if self._flights.get(flight.key) is flight:
                del self._flights[flight.key]
        flight.outcome.set_result(answer)

    def wait(self, flight: Flight[T]) -> T | None:
        """Block until ``flight`` lands; its answer, or None when the caller must go alone."""
        if flight.thread == threading.get_ident():
            # The leader runs on this very thread (an async leader on this loop, or a re-entrant
            # call): blocking here would never end.
            return None
        return flight.outcome.result()

    async def await_(self, flight: Flight[T]) -> T | None:
        """Async :meth:`wait`: suspends this task only; the event loop keeps serving the leader."""
        # shield: a follower that is cancelled must not cancel the flight its peers wait on.
        return await asyncio.shield(asyncio.wrap_future(flight.outcome))

    def __len__(self) -> int:
        with self._lock:
            return len(self._flights)
