"""Price token usage with genai-prices' bundled price data (no network)."""

from __future__ import annotations

import warnings
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from lean_core.usage import TokenUsage

__all__ = ["PriceQuote", "price_usage", "provider_id_for"]

# LangChain's ``ls_provider`` / LlamaIndex class names -> genai-prices provider ids.
_PROVIDER_ALIASES = {
    "openai": "openai", "azure": "azure", "azure_openai": "azure", "azureopenai": "azure",
    "anthropic": "anthropic", "google": "google", "google_genai": "google",
    "google_vertexai": "google", "vertexai": "google", "gemini": "google", "groq": "groq",
    "mistral": "mistral", "mistralai": "mistral", "bedrock": "aws", "amazon_bedrock": "aws",
    "aws": "aws", "deepseek": "deepseek", "xai": "x-ai", "x-ai": "x-ai", "together": "together",
    "fireworks": "fireworks", "cohere": "cohere", "perplexity": "perplexity",
    "openrouter": "openrouter", "cerebras": "cerebras",
}


def provider_id_for(name: str | None) -> str | None:
    """The genai-prices provider id for a framework's provider name; unknown names pass through
    unchanged (they are then reported as unpriced rather than matched to a wrong provider)."""
    if name is None:
        return None
    key = name.strip().lower()
    return _PROVIDER_ALIASES.get(key, key) or None


class PriceQuote(BaseModel):
    """The price of one usage record in USD, or why it could not be priced."""

    model_config = ConfigDict(frozen=True)

    model: str
    provider: str | None
    priced: bool
    """False when genai-prices does not know the model/provider; costs are then None, never 0."""
    input_cost_usd: Decimal | None = None
    output_cost_usd: Decimal | None = None
    total_cost_usd: Decimal | None = None
    matched_model: str | None = None
    """The genai-prices model id the name matched (e.g. ``gpt-4o`` for ``gpt-4o-2024-08-06``)."""
    matched_provider: str | None = None
    unpriced_reason: str | None = None


def price_usage(
    usage: TokenUsage,
    model: str,
    *,
    provider: str | None = None,
    at: datetime | None = None,
) -> PriceQuote:
    """Price ``usage`` for ``model`` (and ``provider`` if given) at time ``at`` (default: now).

    Cache reads, cache writes (1-hour writes apart) and reasoning tokens are passed to
    genai-prices, which applies the model's cache-read/cache-write tiers and prices reasoning as
    output. An unknown model or provider gives a quote with ``priced=False`` and a reason.
    """
    from genai_prices import (  # light, pure Python; imported here to keep import fast
        Usage,
        calc_price,
    )

    if not model:
        return PriceQuote(model=model, provider=provider, priced=False, unpriced_reason="no model name")
    counts = {
        "input_tokens": usage.input_tokens,
        "cache_read_tokens": usage.cached_input_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "output_tokens": usage.output_tokens,
        "output_reasoning_tokens": usage.reasoning_tokens,
    }
    if usage.cache_write_1h_tokens:
        # A part of cache_write_tokens: genai-prices prices it at the model's 1-hour write
        # price (``cache_write_1h_mtok``) and the rest at the 5-minute one.
        counts["cache_write_1h_tokens"] = usage.cache_write_1h_tokens
    gp_usage = Usage(**counts)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calc = calc_price(gp_usage, model, provider_id=provider, genai_request_timestamp=at)
    except LookupError as exc:
        return PriceQuote(model=model, provider=provider, priced=False, unpriced_reason=str(exc))
    except ValueError as exc:
        # genai-prices raises ValueError for unknown models/providers and unsupported usage shapes.
        return PriceQuote(model=model, provider=provider, priced=False, unpriced_reason=str(exc))
    return PriceQuote(
        model=model,
        provider=provider,
        priced=True,
        input_cost_usd=calc.input_price,
        output_cost_usd=calc.output_price,
        total_cost_usd=calc.total_price,
        matched_model=calc.model.id,
        matched_provider=calc.provider.id,
    )
