"""plan_prompt_cache: where a request's cache markers go, for any provider, framework-free.

Adapters describe a request by its shape (message roles, whether each message can carry a
marker, tool count, system prompt, markers the caller already set) and apply the returned
:class:`PromptCachePlan` to their own message types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from lean_core.errors import InvalidParameterError
from lean_core.prompt_cache.cache_key import prompt_cache_key
from lean_core.prompt_cache.providers import (
    PROVIDER_CACHING,
    CacheProvider,
    CachingStyle,
    check_cache_provider,
)
from lean_core.prompt_cache.settings import ANTHROPIC_MAX_BREAKPOINTS, PromptCacheSettings

__all__ = ["MessageRole", "PromptCachePlan", "RequestShape", "plan_prompt_cache"]

MessageRole = Literal["user", "assistant", "tool", "system"]
_INPUT_ROLES = frozenset({"user", "tool"})


@dataclass(frozen=True)
class RequestShape:
    """What the planner needs to know about one request (never its text)."""

    roles: Sequence[MessageRole]
    """Role of each conversation message, oldest first, the system prompt excluded."""
    markable: Sequence[bool] | None = None
    """Whether each message can carry a marker (an assistant turn made only of tool calls
    cannot through LangChain); None: all can."""
    has_system: bool = False
    tool_count: int = 0
    existing_breakpoints: int = 0
    """``cache_control`` markers the caller already put in the request (they count toward 4)."""
    prefix: str = ""
    """Identity of the stable prefix (see :func:`~lean_core.prompt_cache.cache_key.prefix_identity`)."""


@dataclass(frozen=True)
class PromptCachePlan:
    """The markers for one request. Empty for automatic-caching and unknown providers."""

    provider: CacheProvider
    style: CachingStyle
    cache_control: Mapping[str, str] | None = None
    """Anthropic: the value each breakpoint carries (``{"type": "ephemeral", "ttl": ...}``)."""
    tool_index: int | None = None
    """Anthropic: the tool definition to mark (the last one)."""
    mark_system: bool = False
    """Anthropic: mark the last block of the system prompt."""
    message_indices: tuple[int, ...] = field(default_factory=tuple)
    """Anthropic: conversation messages whose last markable block gets a breakpoint, ascending."""
    prompt_cache_key: str | None = None
    """OpenAI: the ``prompt_cache_key`` request field."""

    @property
    def breakpoints(self) -> int:
        """Anthropic breakpoints this plan adds."""
        return int(self.tool_index is not None) + int(self.mark_system) + len(self.message_indices)

    @property
    def empty(self) -> bool:
        return self.breakpoints == 0 and self.prompt_cache_key is None


def _stable_turns(roles: Sequence[MessageRole], markable: Sequence[bool], wanted: int) -> tuple[int, ...]:
    """The last ``wanted`` stable turns: messages right before a run of user/tool input, newest
    first, each moved back to the nearest markable message (never onto a chosen one)."""
    chosen: list[int] = []
    boundaries = [i for i in range(len(roles) - 1)
                  if roles[i] not in _INPUT_ROLES and roles[i + 1] in _INPUT_ROLES]
    for boundary in reversed(boundaries):
        if len(chosen) == wanted:
            break
        index = boundary
        while index >= 0 and not markable[index]:
            index -= 1
        if index < 0 or index in chosen:
            continue
        chosen.append(index)
    return tuple(sorted(chosen))


def plan_prompt_cache(settings: PromptCacheSettings, shape: RequestShape, *,
                      provider: CacheProvider, tenant: str | None = None) -> PromptCachePlan:
    """The cache markers for ``shape`` sent to ``provider`` (already resolved from ``"auto"``).

    Anthropic: a breakpoint on the last tool, the system prompt and the last
    ``settings.turn_breakpoints`` stable turns; with the caller's own markers more than
    :data:`ANTHROPIC_MAX_BREAKPOINTS` raises InvalidParameterError. OpenAI: a
    ``prompt_cache_key`` from ``tenant`` (else ``settings.tenant``), ``settings.namespace`` and
    ``shape.prefix``. Automatic-caching and unknown providers: an empty plan.
    """
    provider = check_cache_provider(provider)
    style = PROVIDER_CACHING[provider].style
    roles = list(shape.roles)
    markable = list(shape.markable) if shape.markable is not None else [True] * len(roles)
    if len(markable) != len(roles):
        raise InvalidParameterError("markable", allowed=f"one flag per message ({len(roles)})",
                                    received=len(markable))
    if len(roles) + int(shape.has_system) < settings.min_messages:
        return PromptCachePlan(provider=provider, style=style)
    if style == "cache_key":
        key = prompt_cache_key(prefix=shape.prefix, tenant=tenant if tenant is not None else settings.tenant,
                               namespace=settings.namespace)
        return PromptCachePlan(provider=provider, style=style, prompt_cache_key=key)
    if style != "breakpoints":
        return PromptCachePlan(provider=provider, style=style)
    plan = PromptCachePlan(
        provider=provider, style=style, cache_control=settings.cache_control,
        tool_index=shape.tool_count - 1 if settings.cache_tools and shape.tool_count > 0 else None,
        mark_system=settings.cache_system and shape.has_system,
        message_indices=_stable_turns(roles, markable, settings.turn_breakpoints),
    )
    total = plan.breakpoints + shape.existing_breakpoints
    if total > ANTHROPIC_MAX_BREAKPOINTS:
        raise InvalidParameterError(
            "breakpoints", allowed=f"at most {ANTHROPIC_MAX_BREAKPOINTS} Anthropic cache_control breakpoints "
            f"per request ({shape.existing_breakpoints} already in the request, {plan.breakpoints} planned)",
            received=total)
    return plan
