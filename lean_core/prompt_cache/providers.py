"""Which provider a chat model talks to, and how that provider caches prompts.

The table :data:`PROVIDER_CACHING` is the single source of what lean-inference does per provider;
the README's "Provider prompt caching" section renders the same facts for users.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from lean_core.errors import InvalidParameterError

__all__ = [
    "PROVIDER_CACHING",
    "CacheProvider",
    "CachingStyle",
    "ProviderCaching",
    "check_cache_provider",
    "detect_cache_provider",
]

CacheProvider = Literal[
    "anthropic", "openai", "azure", "deepseek", "google", "xai", "vllm", "groq", "mistral", "unknown",
]
"""Providers the prompt-cache planner knows; ``"unknown"`` gets no markers."""

CachingStyle = Literal["breakpoints", "cache_key", "automatic", "none"]
"""``breakpoints``: the request marks where cached prefixes end (Anthropic ``cache_control``);
``cache_key``: caching is automatic, a routing key raises the hit rate (OpenAI ``prompt_cache_key``);
``automatic``: the provider caches identical prefixes on its own, nothing to send;
``none``: no prompt caching known (nothing sent)."""


@dataclass(frozen=True)
class ProviderCaching:
    """How one provider caches prompt prefixes and what lean-inference sends for it."""

    provider: CacheProvider
    style: CachingStyle
    sends: str
    """What the planner adds to a request (human-readable, for the docs table)."""
    notes: str


PROVIDER_CACHING: dict[CacheProvider, ProviderCaching] = {
    p.provider: p for p in (
        ProviderCaching("anthropic", "breakpoints", "cache_control on the last tool, the system prompt and the "
                        "last stable turn (<= 4 breakpoints, ttl 5m or 1h)",
                        "writes cost 1.25x (5m) / 2x (1h) input, reads 0.1x; prefixes under the model's "
                        "minimum (1024-4096 tokens) are not cached"),
        ProviderCaching("openai", "cache_key", "prompt_cache_key = hash(namespace, tenant, prefix identity)",
                        "automatic for prompts >= 1024 tokens; the key keeps one tenant's identical prefixes "
                        "on the same cache shard; reads at 0.1x-0.5x input"),
        ProviderCaching("azure", "automatic", "nothing", "Azure OpenAI caches >= 1024-token prefixes automatically"),
        ProviderCaching("deepseek", "automatic", "nothing", "context caching on disk, automatic"),
        ProviderCaching("google", "automatic", "nothing",
                        "Gemini 2.5+ implicit caching; explicit CachedContent objects are out of scope"),
        ProviderCaching("xai", "automatic", "nothing", "automatic prefix caching"),
        ProviderCaching("vllm", "automatic", "nothing", "automatic prefix caching (enable_prefix_caching)"),
        ProviderCaching("groq", "automatic", "nothing", "automatic prefix caching on supported models"),
        ProviderCaching("mistral", "none", "nothing", "no documented prompt caching"),
        ProviderCaching("unknown", "none", "nothing", "provider not recognised: nothing is sent"),
    )
}

# LangChain ``ls_provider`` values and class-name stems -> provider.
_PROVIDER_NAMES: dict[str, CacheProvider] = {
    "anthropic": "anthropic", "chatanthropic": "anthropic", "chatanthropicvertex": "anthropic",
    "openai": "openai", "chatopenai": "openai",
    "azure": "azure", "azure_openai": "azure", "azurechatopenai": "azure",
    "deepseek": "deepseek", "chatdeepseek": "deepseek",
    "google": "google", "google_genai": "google", "google_vertexai": "google", "gemini": "google",
    "chatgooglegenerativeai": "google", "chatvertexai": "google",
    "xai": "xai", "x-ai": "xai", "chatxai": "xai",
    "vllm": "vllm", "chatleanvllm": "vllm", "lean-vllm": "vllm",
    "groq": "groq", "chatgroq": "groq",
    "mistral": "mistral", "mistralai": "mistral", "chatmistralai": "mistral",
}

# Model-name families: they win over an OpenAI-compatible client class (ChatOpenAI pointed at
# DeepSeek, xAI or vLLM must not send OpenAI-only request fields).
_MODEL_FAMILIES: tuple[tuple[re.Pattern[str], CacheProvider], ...] = (
    (re.compile(r"(^|/)claude"), "anthropic"),
    (re.compile(r"(^|/)deepseek"), "deepseek"),
    (re.compile(r"(^|/)grok"), "xai"),
    (re.compile(r"(^|/)gemini"), "google"),
    (re.compile(r"(^|/)(gpt-|o\d|chatgpt|codex)"), "openai"),
)


def check_cache_provider(value: object) -> CacheProvider:
    """``value`` as a :data:`CacheProvider`, or InvalidParameterError naming the allowed ones."""
    allowed = get_args(CacheProvider)
    if not isinstance(value, str) or value not in allowed:
        raise InvalidParameterError("provider", allowed=f'"auto" or one of {", ".join(allowed)}', received=value)
    return value  # type: ignore[return-value]


def detect_cache_provider(*, class_name: str | None = None, model_name: str | None = None,
                          ls_provider: str | None = None) -> CacheProvider:
    """The provider of a chat model, from its framework provider tag (LangChain ``ls_provider``),
    its class name and its model name.

    A client class that speaks only its own vendor's API (``ChatAnthropic``, ``ChatDeepSeek``)
    decides; an OpenAI-compatible client (``ChatOpenAI``) decides only when the model name is not
    another vendor's (``deepseek-chat`` through ``ChatOpenAI`` is DeepSeek). Nothing recognised:
    ``"unknown"`` (no markers are sent).
    """
    by_name: CacheProvider | None = None
    lowered = (model_name or "").strip().lower()
    for pattern, provider in _MODEL_FAMILIES:
        if pattern.search(lowered):
            by_name = provider
            break
    by_client: CacheProvider | None = None
    for tag in (class_name, ls_provider):  # the class first: ChatAnthropicVertex is tagged as Google
        if tag:
            found = _PROVIDER_NAMES.get(tag.strip().lower())
            if found is not None:
                by_client = found
                break
    if by_client == "openai" and by_name is not None:
        return by_name
    if by_client is not None:
        return by_client
    return by_name or "unknown"
