"""Cached LangChain objects as payload strings, and back: one codec for ``LeanCache`` (generations)
and ``LeanCacheMiddleware`` (an agent step's messages).

A payload is ``{"v": 1, FIELD: dumpd(objects)}``. Writing refuses what LangChain cannot serialise
(``dumpd`` writes a ``not_implemented`` stub that would revive as something else). Reading revives
only the classes the caller allows (no class with side effects in its constructor; see
``langchain_core.load``'s threat model) and treats anything unreadable as a miss, never an error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from langchain_core.load import dumpd
from langchain_core.load.load import Reviver

__all__ = ["PayloadCodec"]

_VERSION = 1


class PayloadCodec:
    """Encode a list of LangChain objects under ``field``; decode them if all are ``expected``.

    Args:
        field: the payload key holding the objects (``"generations"``, ``"messages"``).
        allowed: the classes a payload may revive into.
        expected: the class (or classes) every revived object must be.
        owner: the adapter's name, for log lines.
    """

    def __init__(self, *, field: str, allowed: Sequence[type], expected: type | tuple[type, ...], owner: str) -> None:
        self.field = field
        self.expected = expected
        self.owner = owner
        # ``loads`` is this same reviver as a json object_hook, but marked beta: calling it would
        # warn in users' processes.
        self._reviver = Reviver(allowed_objects=list(allowed), secrets_from_env=False)

    def encode(self, objects: Sequence[Any]) -> str | None:
        """The payload, or None when LangChain cannot serialise one of the objects (logged)."""
        data = dumpd(list(objects))
        if _unserialisable(data):
            _log.warning("%s: not caching a response that LangChain cannot serialise", self.owner)
            return None
        return json.dumps({"v": _VERSION, self.field: data}, ensure_ascii=False)

    def decode(self, payload: str) -> list[Any] | None:
        """The revived objects, or None (logged) for a payload that is unreadable or holds none."""
        try:
            data = json.loads(payload, object_hook=self._reviver)
            objects = data[self.field] if isinstance(data, dict) and data.get("v") == _VERSION else None
        except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
            _log.warning("%s: treating an unreadable cached payload as a miss (%s)", self.owner, exc)
            return None
        if not isinstance(objects, list) or not objects or not all(isinstance(o, self.expected) for o in objects):
            _log.warning("%s: treating a cached payload that holds no %s as a miss", self.owner, self.field)
            return None
        return objects


_log = logging.getLogger(__name__)


def _unserialisable(value: object) -> bool:
    if isinstance(value, dict):
        if value.get("lc") == 1 and value.get("type") == "not_implemented":
            return True
        return any(_unserialisable(v) for v in value.values())
    if isinstance(value, list):
        return any(_unserialisable(v) for v in value)
    return False
