"""Whose cache entries a call may read and write: the tenant scope every adapter shares.

**Fail closed.** A call whose tenant cannot be resolved is neither served from nor stored into
any cache namespace (it is counted as a "no tenant" miss), unless the application explicitly
names a namespace that such calls share (``LeanCache(default_tenant=...)``,
``LeanCachedLLM(tenant=...)``, ``PipelineSettings(tenant=...)``). Before issue 22 they fell back
to a shared tenant called "default", so a call that lost its tenant on the way (a plain thread
pool) wrote one customer's answer where another caller was served it.

The scope is a :mod:`contextvars` variable. It follows the work into asyncio tasks (created
inside the scope), ``asyncio.to_thread``, LangChain's ``batch``/``abatch`` executors, LangGraph
nodes and LlamaIndex workflow steps, which all copy the caller's context. It does **not** follow
work into a thread that the application starts itself (``threading.Thread``, a plain
``concurrent.futures.ThreadPoolExecutor``): submit ``contextvars.copy_context().run`` with the
function (see :func:`in_current_context`), or pass the tenant explicitly (LangChain run metadata,
``tenant=`` on a LlamaIndex call, ``PipelineRequest.tenant``). Such a call fails closed: it is
answered by the model, never from or into another tenant's entries.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import uuid
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

from lean_core.cache.types import check_tenant

__all__ = ["current_prefix_salt", "current_tenant", "in_current_context", "prefix_salt_scope", "tenant_scope"]

P = ParamSpec("P")
T = TypeVar("T")

_TENANT: contextvars.ContextVar[str | None] = contextvars.ContextVar("lean_cache_tenant", default=None)
_SALT: contextvars.ContextVar[str | None] = contextvars.ContextVar("lean_prefix_cache_salt", default=None)
_PRIVATE_SALT = "lean-private-"


@contextlib.contextmanager
def tenant_scope(tenant: str) -> Iterator[None]:
    """Serve and store every cache call made in this context as ``tenant``.

    Nested scopes restore the outer tenant on exit. ``tenant`` must be a non-empty str of at most
    256 characters (:func:`~lean_core.cache.check_tenant`); anything else raises
    :class:`~lean_core.errors.InvalidParameterError` before the block runs.
    """
    token = _TENANT.set(check_tenant(tenant))
    try:
        yield
    finally:
        _TENANT.reset(token)


def current_tenant() -> str | None:
    """The tenant of the innermost :func:`tenant_scope` active in this context, or None."""
    return _TENANT.get()


def in_current_context(function: Callable[P, T]) -> Callable[P, T]:
    """``function`` bound to a copy of the caller's context (tenant scope included), for work
    handed to a thread the caller starts itself::

        with tenant_scope("acme"):
            pool.submit(in_current_context(chain.invoke), question)

    Each call of the returned function runs in its own copy, so it can be submitted many times
    and run concurrently.
    """
    context = contextvars.copy_context()

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return context.copy().run(function, *args, **kwargs)

    return run


@contextlib.contextmanager
def prefix_salt_scope(tenant: str | None) -> Iterator[str]:
    """Salt the engine prefix cache of the model calls made in this context (yields the salt).

    A tenant's calls share the salt ``tenant`` (the name :class:`~lean_chain.ChatLeanVLLM` and
    ``LeanVLLM`` salt with, so a tenant's cached prefixes serve it across adapters). Without a
    tenant, the salt is new for this scope (one request and its continuation calls): prefix blocks
    are reused within the request but never shared with any other request, the same fail-closed
    rule as the response cache (a shared prefix cache leaks through timing which prompts others
    sent).
    """
    salt = _PRIVATE_SALT + uuid.uuid4().hex if tenant is None else check_tenant(tenant)
    token = _SALT.set(salt)
    try:
        yield salt
    finally:
        _SALT.reset(token)


def current_prefix_salt() -> str | None:
    """The salt of the innermost :func:`prefix_salt_scope`, or None outside one."""
    return _SALT.get()
