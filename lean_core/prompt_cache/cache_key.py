"""The OpenAI ``prompt_cache_key``: stable per tenant and prompt prefix, revealing neither."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["prefix_identity", "prompt_cache_key"]

_KEY_PREFIX = "lean-"
_DIGEST_CHARS = 32  # 128 bits: collisions only merge routing hints, never responses


def prefix_identity(parts: Iterable[str]) -> str:
    """A digest of the stable parts of a prompt (system text, tool schemas, template id): two
    requests get the same identity exactly when their stable prefix is the same."""
    digest = hashlib.sha256()
    for part in parts:
        encoded = part.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(8, "big"))  # length-prefixed: ("ab","c") != ("a","bc")
        digest.update(encoded)
    return digest.hexdigest()


def prompt_cache_key(*, prefix: str, tenant: str | None, namespace: str = "") -> str:
    """``lean-`` and 32 hex digits of SHA-256 over (namespace, tenant, prefix identity).

    The same tenant and prefix always give the same key (OpenAI routes equal keys to the same
    cache shard); different tenants get different keys, so one tenant's traffic does not
    crowd another's shard. The tenant name is hashed, never sent.
    """
    identity = prefix_identity([namespace, "" if tenant is None else "t:" + tenant, prefix])
    return _KEY_PREFIX + identity[:_DIGEST_CHARS]
