"""LeanVLLM without an engine: lazy construction, metadata from config.json, validation."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.llms import ChatMessage
from pydantic import ValidationError

from lean_core import CostLedger, InvalidParameterError, TokenUsage
from lean_core.generation import Choice, GenerationChunk, GenerationResult, SamplingOptions
from lean_index import LeanCostHandler, LeanVLLM

USAGE = TokenUsage(input_tokens=40, cached_input_tokens=32, output_tokens=2)


class FakeBackend:
    """Stands in for the engine: records each request and answers "Paris" with USAGE."""

    def __init__(self, usage: TokenUsage = USAGE) -> None:
        self.usage = usage
        self.requests: list[tuple[Any, SamplingOptions, str | None]] = []

    def _result(self, prompt: Any, options: SamplingOptions, cache_salt: str | None) -> GenerationResult:
        self.requests.append((prompt, options, cache_salt))
        return GenerationResult(model="fake-model", usage=self.usage, choices=(
            Choice(text="Paris", finish_reason="stop", completion_tokens=2),))

    def _chunks(self, prompt: Any, options: SamplingOptions, cache_salt: str | None) -> list[GenerationChunk]:
        self.requests.append((prompt, options, cache_salt))
        return [GenerationChunk(text="Par"), GenerationChunk(text="is", finish_reason="stop"),
                GenerationChunk(text="", model="fake-model", usage=self.usage)]

    def generate(self, prompt: Any, options: SamplingOptions, *, cache_salt: str | None = None,
                 tools: Any = None) -> GenerationResult:
        return self._result(prompt, options, cache_salt)

    async def agenerate(self, prompt: Any, options: SamplingOptions, *,
                        cache_salt: str | None = None, tools: Any = None) -> GenerationResult:
        return self._result(prompt, options, cache_salt)

    def stream(self, prompt: Any, options: SamplingOptions, *,
               cache_salt: str | None = None, tools: Any = None) -> Iterator[GenerationChunk]:
        yield from self._chunks(prompt, options, cache_salt)

    async def astream(self, prompt: Any, options: SamplingOptions, *,
                      cache_salt: str | None = None, tools: Any = None) -> AsyncIterator[GenerationChunk]:
        for chunk in self._chunks(prompt, options, cache_salt):
            yield chunk


def _checkpoint(path: Path, **config: object) -> Path:
    """A directory that passes the checkpoint check (config.json plus a weights file)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama", **config}))
    (path / "model.safetensors").write_bytes(b"")
    return path


def test_construction_and_metadata_start_no_engine(tmp_path: Path) -> None:
    model = _checkpoint(tmp_path / "tiny-llama", max_position_embeddings=4096)
    code = (
        "import sys, json; from lean_index import LeanVLLM; "
        "LeanVLLM(); LeanVLLM(model='/does/not/exist'); LeanVLLM(base_url='http://localhost:9/v1'); "
        f"m = LeanVLLM(model={str(model)!r}, max_tokens=32).metadata; "
        "from lean_backends import vllm_engine; "
        "print(json.dumps([m.context_window, m.num_output, m.model_name, "
        "any(e.running for e in vllm_engine._ENGINES.values()), "
        "sorted(n for n in sys.modules if n.split('.')[0] in ('vllm', 'torch', 'transformers', 'openai'))]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [4096, 32, "tiny-llama", False, []]


def test_default_model_is_the_bundled_smollm2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = _checkpoint(tmp_path / "smollm2-135m-instruct", max_position_embeddings=8192)
    monkeypatch.setenv("LEAN_INFERENCE_SMOLLM2_DIR", str(bundled))
    metadata = LeanVLLM(max_tokens=16).metadata
    assert (metadata.context_window, metadata.num_output, metadata.model_name) == (
        8192, 16, "smollm2-135m-instruct")
    assert metadata.is_chat_model and metadata.is_function_calling_model


@pytest.mark.parametrize(("config", "max_model_len", "expected"), [
    ({"max_position_embeddings": 8192}, 2048, 2048),  # capped by max_model_len
    ({"max_position_embeddings": 1024}, 2048, 1024),
    ({"n_positions": 1024}, None, 1024),  # GPT-2 style
    ({"text_config": {"max_position_embeddings": 32768}}, None, 32768),  # multimodal wrapper
])
def test_context_window_comes_from_config(tmp_path: Path, config: dict[str, object],
                                          max_model_len: int | None, expected: int) -> None:
    model = _checkpoint(tmp_path / "m", **config)
    assert LeanVLLM(model=str(model), max_model_len=max_model_len).metadata.context_window == expected


def test_class_name_gives_the_ledger_provider() -> None:
    assert LeanVLLM.class_name() == "lean-vllm_llm"


@pytest.mark.parametrize(("field", "value"), [
    ("temperature", -1), ("top_p", 0.0), ("max_tokens", 0), ("n", 2), ("max_model_len", 8),
    ("dtype", "int4"),
])
def test_invalid_options_fail_at_construction(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        LeanVLLM(**{field: value})


def test_non_checkpoint_dir_fails_on_first_call_not_at_construction(tmp_path: Path) -> None:
    llm = LeanVLLM(model=str(tmp_path))
    with pytest.raises(InvalidParameterError, match="model"):
        llm.complete("hi")
    with pytest.raises(InvalidParameterError, match="model"):
        llm.chat([ChatMessage(role="user", content="hi")])


def test_unknown_call_option_fails_before_any_engine(tmp_path: Path) -> None:
    llm = LeanVLLM(model=str(_checkpoint(tmp_path / "m", max_position_embeddings=512)))
    with pytest.raises(InvalidParameterError, match=r"frequency_penalty") as info:
        llm.complete("hi", frequency_penalty=1.0)
    assert "max_tokens" in info.value.allowed and "tenant" in info.value.allowed
    with pytest.raises(InvalidParameterError, match="tool"):
        llm.chat([ChatMessage(role="function", content="42")])  # tool results are role "tool"


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    backend = FakeBackend()
    monkeypatch.setattr(LeanVLLM, "backend", lambda self: backend)
    monkeypatch.setenv("LEAN_INFERENCE_SMOLLM2_DIR",
                       str(_checkpoint(tmp_path / "fake-model", max_position_embeddings=8192)))
    return backend


@pytest.fixture
def handler() -> Iterator[LeanCostHandler]:
    h = LeanCostHandler(ledger=CostLedger(":memory:")).register()
    yield h
    h.unregister()
    h.ledger.close()


async def _call(llm: LeanVLLM, endpoint: str, **kwargs: Any) -> list[Any]:
    chat = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Capital?")]
    if endpoint == "complete":
        return [llm.complete("Capital?", **kwargs)]
    if endpoint == "chat":
        return [llm.chat(chat, **kwargs)]
    if endpoint == "acomplete":
        return [await llm.acomplete("Capital?", **kwargs)]
    if endpoint == "achat":
        return [await llm.achat(chat, **kwargs)]
    if endpoint == "stream_complete":
        return list(llm.stream_complete("Capital?", **kwargs))
    if endpoint == "stream_chat":
        return list(llm.stream_chat(chat, **kwargs))
    if endpoint == "astream_complete":
        return [r async for r in await llm.astream_complete("Capital?", **kwargs)]
    return [r async for r in await llm.astream_chat(chat, **kwargs)]


ENDPOINTS = ["complete", "chat", "acomplete", "achat", "stream_complete", "stream_chat",
             "astream_complete", "astream_chat"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_usage_with_cached_tokens_reaches_the_cost_handler(
        fake: FakeBackend, handler: LeanCostHandler, endpoint: str) -> None:
    responses = await _call(LeanVLLM(), endpoint)
    last = responses[-1]
    assert (last.text if "complete" in endpoint else last.message.content) == "Paris"
    assert last.raw["usage"] == {"prompt_tokens": 40, "completion_tokens": 2, "total_tokens": 42,
                                 "prompt_tokens_details": {"cached_tokens": 32}}
    assert last.additional_kwargs == {"prompt_tokens": 40, "completion_tokens": 2, "cached_tokens": 32,
                                      "total_tokens": 42}
    if "stream" in endpoint:
        assert [r.delta for r in responses] == ["Par", "is", ""]
        assert all(r.raw is None for r in responses[:-1])
    (record,) = handler.ledger.calls()
    assert record.usage == USAGE and record.model == "fake-model"


async def test_requests_carry_template_choice_options_and_tenant(fake: FakeBackend) -> None:
    llm = LeanVLLM(max_tokens=32, stop=["END"], tenant="acme")
    llm.complete("Capital?")
    llm.complete("<raw>", formatted=True, max_tokens=4, temperature=0.5, top_p=0.9, seed=3,
                 stop="STOP", tenant="globex")
    await _call(llm, "astream_chat")
    (p1, o1, s1), (p2, o2, s2), (p3, _, s3) = fake.requests
    assert p1 == [{"role": "user", "content": "Capital?"}] and p2 == "<raw>"
    assert p3 == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital?"}]
    assert (o1.max_tokens, o1.temperature, o1.stop) == (32, 0.0, ("END",))
    assert (o2.max_tokens, o2.temperature, o2.top_p, o2.seed, o2.stop) == (4, 0.5, 0.9, 3, ("END", "STOP"))
    assert (s1, s2, s3) == ("acme", "globex", "acme")


async def test_unreported_usage_is_left_to_the_tokenizer(fake: FakeBackend, handler: LeanCostHandler) -> None:
    fake.usage = TokenUsage(source="estimate")  # a server that sent no usage
    (response,) = await _call(LeanVLLM(), "complete")
    assert "usage" not in response.raw and response.additional_kwargs == {}
    (record,) = handler.ledger.calls()
    assert record.usage.source != "provider"


async def test_ledger_provider_is_lean_vllm(fake: FakeBackend, handler: LeanCostHandler) -> None:
    await _call(LeanVLLM(), "complete")
    assert handler.ledger.calls()[0].provider == "lean-vllm"
