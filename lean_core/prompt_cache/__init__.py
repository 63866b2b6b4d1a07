"""Provider prompt caching: which markers a request needs so the provider's prompt cache hits.

Anthropic gets ``cache_control`` breakpoints (at most 4), OpenAI a hashed ``prompt_cache_key``,
providers that cache automatically get nothing. See :data:`PROVIDER_CACHING`.
"""

from lean_core.prompt_cache.cache_key import prefix_identity, prompt_cache_key
from lean_core.prompt_cache.plan import (
    MessageRole,
    PromptCachePlan,
    RequestShape,
    plan_prompt_cache,
)
from lean_core.prompt_cache.providers import (
    PROVIDER_CACHING,
    CacheProvider,
    CachingStyle,
    ProviderCaching,
    check_cache_provider,
    detect_cache_provider,
)
from lean_core.prompt_cache.settings import ANTHROPIC_MAX_BREAKPOINTS, CacheTTL, PromptCacheSettings

__all__ = [
    "ANTHROPIC_MAX_BREAKPOINTS",
    "PROVIDER_CACHING",
    "CacheProvider",
    "CacheTTL",
    "CachingStyle",
    "MessageRole",
    "PromptCachePlan",
    "PromptCacheSettings",
    "ProviderCaching",
    "RequestShape",
    "check_cache_provider",
    "detect_cache_provider",
    "plan_prompt_cache",
    "prefix_identity",
    "prompt_cache_key",
]
