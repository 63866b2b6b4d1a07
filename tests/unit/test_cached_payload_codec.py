"""The one payload codec of LeanCache and LeanCacheMiddleware: refuses what it cannot revive."""

from __future__ import annotations

import logging

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from lean_chain._payload import PayloadCodec

CODEC = PayloadCodec(field="messages", allowed=[AIMessage], expected=AIMessage, owner="test")


class _Opaque:
    """Not serialisable by LangChain: dumpd writes a ``not_implemented`` stub for it."""


def test_round_trip_keeps_tool_calls() -> None:
    message = AIMessage(content="", tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "call_1"}])
    payload = CODEC.encode([message])
    assert payload is not None
    (back,) = CODEC.decode(payload) or []
    assert back.tool_calls == message.tool_calls


def test_unserialisable_objects_are_not_encoded(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert CODEC.encode([AIMessage(content="hi", additional_kwargs={"raw": _Opaque()})]) is None
    assert "cannot serialise" in caplog.text


@pytest.mark.parametrize("payload", ["not json", '{"v": 2, "messages": []}', '{"v": 1, "messages": []}'])
def test_unreadable_payloads_are_misses(payload: str) -> None:
    assert CODEC.decode(payload) is None


def test_a_class_outside_the_allowed_list_does_not_revive() -> None:
    wide = PayloadCodec(field="messages", allowed=[AIMessage, HumanMessage], expected=AIMessage, owner="test")
    payload = wide.encode([HumanMessage(content="hi")])
    assert payload is not None
    assert CODEC.decode(payload) is None  # HumanMessage is not allowed here
    assert wide.decode(payload) is None  # allowed, but not the expected class
