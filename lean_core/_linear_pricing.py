"""When genai-prices prices token counts linearly, so that the price of a sum of usages is the sum
of their prices and many calls can be priced at once.

A model's price is linear in token counts at a time when every price that applies then is a flat
rate per token (no tiers that depend on the prompt's length) and there is no fee per request. Two
calls priced at the same model and the same conditional price (genai-prices picks one by date or
time of day) then cost exactly, in decimal arithmetic, what their summed usage costs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable
from datetime import datetime

__all__ = ["LinearPriceKey", "linear_price_key"]

LinearPriceKey = Callable[[datetime], Hashable | None]
"""Maps a request time to a key that is equal for two times exactly when the same flat prices
apply at both, or to None when the price there is not linear."""


def linear_price_key(model: str, *, provider: str | None = None) -> LinearPriceKey | None:
    """A :data:`LinearPriceKey` for ``model`` (and ``provider``), or None when genai-prices does
    not know the model (pricing then fails the same way for every call, one by one)."""
    from genai_prices import data_snapshot  # light, pure Python
    from genai_prices.types import ModelPrice, TieredPrices

    if not model:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _provider, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider, None)
    except (LookupError, ValueError):
        return None
    # Request-specific price variants apply only with a price context, which price_usage never passes.

    def flat(prices: ModelPrice) -> bool:
        values = vars(prices).values()
        return not any(isinstance(v, TieredPrices) for v in values) and getattr(prices, "requests_kilo", None) is None

    if isinstance(info.prices, ModelPrice):
        key = (info.id, 0) if flat(info.prices) else None
        return lambda _at: key
    conditional = info.prices
    flat_at = [flat(c.prices) for c in conditional]

    def key_at(at: datetime) -> Hashable | None:
        chosen = info.get_prices(at)
        for index, candidate in enumerate(conditional):
            if candidate.prices is chosen:
                return (info.id, index) if flat_at[index] else None
        return None

    return key_at
