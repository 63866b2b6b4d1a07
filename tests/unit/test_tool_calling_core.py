"""Tool calling core (lean_backends.tool_calling / tool_prompt / _vllm_tools) without a vLLM engine."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema
import pytest

from lean_backends._vllm_tools import guided_options, tool_choice_of, tool_stream
from lean_backends.tool_calling import (
    ToolCall,
    ToolCallingChoice,
    ToolCallingChunk,
    ToolCallOutputError,
    ToolRequest,
    ToolSpec,
)
from lean_backends.tool_prompt import fallback_messages, has_tool_turns, template_supports_tools
from lean_core import InvalidParameterError
from lean_core.generation import Choice, GenerationChunk, SamplingOptions
from lean_core.usage import TokenUsage

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather at a place.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
MAGIC = {"name": "magic", "description": "Magic.",  # the flat form is accepted too
         "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}
TOOLS = [WEATHER, MAGIC]


@pytest.mark.parametrize(("choice", "mode", "forced"), [
    (None, "auto", None), ("auto", "auto", None), ("required", "required", None), ("any", "required", None),
    (True, "required", None), ("none", "none", None), (False, "none", None), ("magic", "named", "magic"),
    ({"type": "function", "function": {"name": "get_weather"}}, "named", "get_weather"),
    ({"name": "magic"}, "named", "magic"),
])
def test_tool_choice_forms_are_normalised(choice: Any, mode: str, forced: str | None) -> None:
    request = ToolRequest.build(TOOLS, choice)
    assert (request.mode, request.forced_tool) == (mode, forced)
    assert request.names == ("get_weather", "magic")


@pytest.mark.parametrize("choice", ["unbound_tool", {"type": "function", "function": {"name": "nope"}}])
def test_choosing_a_tool_that_is_not_bound_names_the_bound_ones(choice: Any) -> None:
    with pytest.raises(InvalidParameterError) as info:
        ToolRequest.build(TOOLS, choice)
    assert info.value.parameter == "tool_choice"
    assert "get_weather" in info.value.allowed and "magic" in info.value.allowed


@pytest.mark.parametrize(("tools", "choice", "parameter"), [
    (TOOLS, 3, "tool_choice"),
    ([WEATHER, {**WEATHER, "function": {**WEATHER["function"], "parameters": {"type": "object"}}}], None, "tools"),
    ([{"type": "retrieval"}], None, "tools"),
    ([{"name": "has space"}], None, "tools"),
    ([{"name": "t", "parameters": {"type": "string"}}], None, "tools[t].parameters"),
    ([], "required", "tool_choice"),
    (WEATHER, None, "tools"),
])
def test_bad_tools_and_choices_are_rejected(tools: Any, choice: Any, parameter: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        ToolRequest.build(tools, choice)
    assert info.value.parameter == parameter


def test_named_schema_is_the_tools_own_argument_schema() -> None:
    request = ToolRequest.build(TOOLS, "magic")
    assert request.guided_schema() == {"type": "object", **MAGIC["parameters"]}  # type: ignore[dict-item]
    assert ToolRequest.build(TOOLS, "auto").guided_schema() is None
    assert ToolRequest.build(TOOLS, "none").guided_schema() is None


def test_required_schema_accepts_exactly_calls_of_bound_tools() -> None:
    schema = ToolRequest.build(TOOLS, "required").guided_schema()
    assert schema is not None
    jsonschema.validate({"name": "magic", "arguments": {"x": 3}}, schema)
    jsonschema.validate({"name": "get_weather", "arguments": {"city": "Paris"}}, schema)
    for bad in ({"name": "other", "arguments": {}}, {"name": "magic", "arguments": {"x": "three"}},
                {"name": "magic"}, [{"name": "magic", "arguments": {"x": 1}}]):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    parallel = ToolRequest.build(TOOLS, "required", parallel_tool_calls=True).guided_schema()
    assert parallel is not None
    jsonschema.validate([{"name": "magic", "arguments": {"x": 1}}, {"name": "get_weather",
                                                                   "arguments": {"city": "Oslo"}}], parallel)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([], parallel)
    single = ToolRequest.build([MAGIC], "any").guided_schema()
    assert single is not None and single["properties"]["name"] == {"type": "string", "enum": ["magic"]}


def test_guided_output_is_parsed_and_checked() -> None:
    (call,) = ToolRequest.build(TOOLS, "magic").parse_guided('{"x": 3}')
    assert (call.name, call.arguments) == ("magic", {"x": 3}) and call.id.startswith("call_")
    calls = ToolRequest.build(TOOLS, "required", parallel_tool_calls=True).parse_guided(
        '[{"name": "magic", "arguments": {"x": 1}}, {"name": "get_weather", "arguments": {"city": "Rome"}}]')
    assert [c.name for c in calls] == ["magic", "get_weather"] and len({c.id for c in calls}) == 2
    required = ToolRequest.build(TOOLS, "required")
    with pytest.raises(ToolCallOutputError, match="bound tools"):
        required.parse_guided('{"name": "rm_rf", "arguments": {}}')
    with pytest.raises(ToolCallOutputError, match="valid JSON") as info:
        required.parse_guided('{"name": "magic", "arguments": {"x": ')
    assert isinstance(info.value, InvalidParameterError) and info.value.received.startswith('{"name"')
    with pytest.raises(ToolCallOutputError, match="JSON object of arguments"):
        required.checked_call("magic", "[1, 2]")
    assert required.checked_call("magic", '{"x": 2}', "id-1") == ToolCall(id="id-1", name="magic", arguments={"x": 2})
    assert required.checked_call("magic", "").arguments == {}


def test_wire_forms() -> None:
    request = ToolRequest.build(TOOLS, "get_weather")
    assert request.openai_tool_choice() == {"type": "function", "function": {"name": "get_weather"}}
    assert ToolRequest.build(TOOLS, "any").openai_tool_choice() == "required"
    assert request.openai_tools()[1]["function"]["name"] == "magic"
    assert ToolSpec.from_openai({"name": "noargs"}).parameters == {"type": "object", "properties": {}}
    call = ToolCall(id="c1", name="magic", arguments={"x": "é"})
    assert json.loads(call.to_openai()["function"]["arguments"]) == {"x": "é"}


def test_smollm2_template_has_no_tool_format_and_a_tool_template_is_detected(smollm2_path: Any) -> None:
    template = (smollm2_path / "chat_template.jinja").read_text(encoding="utf-8")
    assert not template_supports_tools(template)
    assert template_supports_tools("{% if tools %}{{ tools | tojson }}{% endif %}")
    assert not template_supports_tools(None)


def test_fallback_renders_tools_calls_and_results_in_plain_messages() -> None:
    request = ToolRequest.build(TOOLS, "auto")
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
            {"role": "tool", "content": "Sunny", "tool_call_id": "c1"}]
    assert has_tool_turns(chat) and not has_tool_turns(chat[:2])
    out = fallback_messages(chat, request)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    assert out[0]["content"].startswith("Be brief.") and '"name": "magic"' in out[0]["content"]
    assert json.loads(out[2]["content"].split("<tool_call>")[1].split("</tool_call>")[0]) == {
        "name": "get_weather", "arguments": {"city": "Oslo"}}
    response = json.loads(out[3]["content"].split("<tool_response>")[1].split("</tool_response>")[0])
    assert response == {"name": "get_weather", "tool_call_id": "c1", "content": "Sunny"}  # name from the call
    no_system = fallback_messages(chat[1:2], request)
    assert no_system[0]["role"] == "system" and "<tools>" in no_system[0]["content"]
    assert fallback_messages(chat[1:2], None) == [{"role": "user", "content": "Weather in Oslo?"}]
    with pytest.raises(InvalidParameterError, match="messages"):
        fallback_messages([{"role": "robot", "content": "x"}], request)
    with pytest.raises(InvalidParameterError, match="tool_calls"):
        fallback_messages([{"role": "assistant", "content": "", "tool_calls": [
            {"id": "c", "function": {"name": "magic", "arguments": "{oops"}}]}], request)


def test_forced_calls_conflict_with_a_json_schema() -> None:
    options = SamplingOptions(max_tokens=8)
    assert guided_options(options, ToolRequest.build(TOOLS, "auto")) is options
    assert guided_options(options, ToolRequest.build(TOOLS, "magic")).json_schema == ToolRequest.build(
        TOOLS, "magic").guided_schema()
    with pytest.raises(InvalidParameterError, match="json_schema"):
        guided_options(SamplingOptions(json_schema={"type": "object"}), ToolRequest.build(TOOLS, "required"))


def test_finished_choice_carries_calls_and_a_cut_off_call_says_max_tokens() -> None:
    done = tool_choice_of(Choice(text='{"x": 4}', finish_reason="stop", completion_tokens=5),
                          ToolRequest.build(TOOLS, "magic"), None)
    assert isinstance(done, ToolCallingChoice) and done.text == "" and done.tool_calls[0].arguments == {"x": 4}
    plain = tool_choice_of(Choice(text="Hello", finish_reason="stop", completion_tokens=1),
                           ToolRequest.build(TOOLS, "auto"), None)
    assert plain.text == "Hello" and plain.tool_calls == ()
    with pytest.raises(ToolCallOutputError, match="max_tokens"):
        tool_choice_of(Choice(text='{"x": ', finish_reason="length", completion_tokens=3),
                       ToolRequest.build(TOOLS, "magic"), None)


def test_streamed_forced_call_arrives_whole_before_the_usage_chunk() -> None:
    async def pieces() -> AsyncIterator[GenerationChunk]:
        for text in ('{"name": "ma', 'gic", "arguments": {"x"', ': 7}}'):
            yield GenerationChunk(text=text)
        yield GenerationChunk(text="", finish_reason="stop")
        yield GenerationChunk(text="", model="m", usage=TokenUsage(input_tokens=3, output_tokens=9))

    async def run() -> list[GenerationChunk]:
        return [c async for c in tool_stream(pieces(), ToolRequest.build(TOOLS, "required"), None)]

    call_chunk, usage_chunk = asyncio.run(run())
    assert isinstance(call_chunk, ToolCallingChunk) and usage_chunk.usage is not None
    (delta,) = call_chunk.tool_call_deltas
    assert (delta.index, delta.name, json.loads(delta.arguments)) == (0, "magic", {"x": 7}) and delta.id


class _ToolServer:
    """A loopback server speaking vLLM's OpenAI wire format that answers every chat with a scripted
    tool call -- to prove the remote client checks what a server returns."""

    def __init__(self, name: str, arguments: str) -> None:
        self.requests: list[dict[str, Any]] = []
        reply = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
                 "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                     "role": "assistant", "content": None, "tool_calls": [
                         {"id": "call_x", "type": "function", "function": {"name": name, "arguments": arguments}}]}}],
                 "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send({"object": "list", "data": [{"id": "m", "object": "model", "created": 0,
                                                        "owned_by": "vllm", "max_model_len": 2048}]})

            def do_POST(self) -> None:
                server.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self._send(reply)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def __enter__(self) -> str:
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def remote_client() -> Iterator[Any]:
    from lean_backends.remote_vllm import RemoteVLLMClient

    clients: list[RemoteVLLMClient] = []

    def make(url: str) -> RemoteVLLMClient:
        clients.append(RemoteVLLMClient(url, max_retries=0, timeout_s=10))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.mark.parametrize(("name", "arguments", "match"), [
    ("rm_rf", '{"path": "/"}', "bound tools"), ("magic", '{"x": ', "valid JSON"), ("magic", "[1]", "JSON object")])
def test_remote_calls_of_unknown_tools_or_bad_arguments_raise(remote_client: Any, name: str, arguments: str,
                                                              match: str) -> None:
    server = _ToolServer(name, arguments)
    with server as url:
        client = remote_client(url)
        with pytest.raises(ToolCallOutputError, match=match):
            client.generate([{"role": "user", "content": "hi"}], SamplingOptions(max_tokens=8),
                            tools=ToolRequest.build(TOOLS, "auto"))
    body = server.requests[0]
    assert body["tools"][1]["function"]["name"] == "magic" and body["tool_choice"] == "auto"
    assert body["parallel_tool_calls"] is False


def test_remote_tool_history_goes_out_in_wire_format(remote_client: Any) -> None:
    server = _ToolServer("magic", '{"x": 1}')
    chat = [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": "", "tool_calls": [ToolCall(id="c9", name="magic", arguments={"x": 1})]},
            {"role": "tool", "content": "2", "tool_call_id": "c9"}]
    with server as url:
        result = remote_client(url).generate(chat, SamplingOptions(max_tokens=8),
                                             tools=ToolRequest.build(TOOLS, "magic"))
    (call,) = result.choices[0].tool_calls  # type: ignore[attr-defined]
    assert (call.id, call.name, call.arguments) == ("call_x", "magic", {"x": 1})
    sent = server.requests[0]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "magic"}}
    assert sent["messages"][1]["tool_calls"][0]["function"] == {"name": "magic", "arguments": '{"x": 1}'}
    assert sent["messages"][2] == {"role": "tool", "content": "2", "tool_call_id": "c9"}


def test_the_same_tool_bound_twice_is_one_tool() -> None:
    titled = {"name": "magic", "description": "Magic.", "parameters": {
        "type": "object", "title": "Magic", "properties": {"x": {"type": "integer", "title": "X"}}, "required": ["x"]}}
    assert ToolRequest.build([MAGIC, titled]).names == ("magic",)


CHAT = [{"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [ToolCall(id="c1", name="get_weather",
                                                                     arguments={"city": "Oslo"})]},
        {"role": "tool", "content": "Sunny", "tool_call_id": "c1"}]


def test_a_tool_aware_template_gets_tools_calls_and_results(smollm2_path: Any) -> None:
    from transformers import AutoTokenizer

    from lean_backends.tool_prompt import render_tool_chat

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    request = ToolRequest.build(TOOLS, "auto")
    fallback = render_tool_chat(tokenizer, CHAT, request)  # SmolLM2's own template: the fallback
    assert "<|im_start|>system\nYou can call these tools:" in fallback
    assert '<|im_start|>user\n<tool_response>\n{"name": "get_weather"' in fallback
    tokenizer.chat_template = (
        "{% for t in tools %}[T:{{ t.function.name }}]{% endfor %}{% for m in messages %}<{{ m.role }}>"
        "{{ m.content }}{% for c in m.tool_calls or [] %}[C:{{ c.function.name }}:{{ c.function.arguments.city }}]"
        "{% endfor %}{% if m.tool_call_id %}[R:{{ m.tool_call_id }}]{% endif %}{% endfor %}")
    assert render_tool_chat(tokenizer, CHAT, request) == (
        "[T:get_weather][T:magic]<user>Weather in Oslo?<assistant>[C:get_weather:Oslo]<tool>Sunny[R:c1]")
