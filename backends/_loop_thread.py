"""A private event loop on a daemon thread, and bridges to it from sync code and other loops.

vLLM's async engine is bound to the loop it first runs on. Keeping that loop on its own thread
lets one engine serve sync callers (LangChain ``invoke``/``stream``), callers on any other loop
(``ainvoke``/``astream``) and concurrent batches, which the engine then batches continuously.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")
_DONE = object()


class LoopThread:
    """Runs coroutines and async generators on one background event loop."""

    def __init__(self, name: str = "lean-vllm-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for it from a sync caller."""
        if self.on_loop():
            coro.close()
            raise RuntimeError("LoopThread.run() called from its own loop; await the coroutine instead")
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the loop from any other loop (or directly when already on it)."""
        if self.on_loop():
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def iterate(self, make_agen: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
        """Consume an async generator built on the loop, from a sync caller, item by item.

        Closing the returned iterator early cancels the producer (and with it the request).
        """
        items: queue.Queue[Any] = queue.Queue()

        async def pump() -> None:
            try:
                async for item in make_agen():
                    items.put(item)
            except BaseException as exc:  # delivered to the consumer, re-raised there
                items.put(_Failure(exc))
            finally:
                items.put(_DONE)

        future = self.submit(pump())
        try:
            while True:
                item = items.get()
                if item is _DONE:
                    break
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            if not future.done():
                future.cancel()

    async def aiterate(self, make_agen: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
        """Consume an async generator built on the loop, from another loop."""
        if self.on_loop():
            async for item in make_agen():
                yield item
            return
        caller = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for item in make_agen():
                    caller.call_soon_threadsafe(items.put_nowait, item)
            except BaseException as exc:
                caller.call_soon_threadsafe(items.put_nowait, _Failure(exc))
            finally:
                caller.call_soon_threadsafe(items.put_nowait, _DONE)

        future = self.submit(pump())
        try:
            while True:
                item = await items.get()
                if item is _DONE:
                    break
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            if not future.done():
                future.cancel()

    def call(self, fn: Callable[[], Awaitable[T]] | Callable[[], T]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
