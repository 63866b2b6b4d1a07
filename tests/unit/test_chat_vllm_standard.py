"""LangChain's standard unit tests for ChatLeanVLLM (no engine is started)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from langchain_tests.unit_tests import ChatModelUnitTests
from pydantic import ValidationError

from lean_chain import ChatLeanVLLM
from lean_core import InvalidParameterError
from tests.support.chat_vllm_properties import ChatLeanVLLMProperties


class TestChatLeanVLLMStandard(ChatLeanVLLMProperties, ChatModelUnitTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {}


def test_construction_does_no_io_and_imports_no_engine() -> None:
    code = ("import sys; from lean_chain import ChatLeanVLLM; m = ChatLeanVLLM(model='/nonexistent'); "
            "m2 = ChatLeanVLLM(base_url='http://127.0.0.1:9/v1'); "
            "print(sorted(k for k in ('torch', 'vllm', 'transformers', 'openai') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(("field", "value"), [("max_tokens", 0), ("max_tokens", -5), ("temperature", -0.1),
                                              ("top_p", 0.0), ("top_p", 1.5), ("n", 0), ("max_model_len", 4)])
def test_invalid_sampling_values_are_rejected_at_construction(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        ChatLeanVLLM(**{field: value})
    assert field in str(info.value)


def test_bad_model_path_names_the_problem(tmp_path: Any) -> None:
    with pytest.raises(InvalidParameterError, match="checkpoint directory"):
        ChatLeanVLLM(model=str(tmp_path)).invoke("hi")


def test_unknown_call_option_is_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="call option"):
        ChatLeanVLLM(model="/nonexistent")._call_options(None, {"frequency_penalty_typo": 1})


def test_missing_vllm_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from lean_backends import vllm_engine
    from lean_core import MissingExtraError

    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "vllm" or name.startswith("vllm."):
            raise ModuleNotFoundError("No module named 'vllm'", name="vllm")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    with pytest.raises(MissingExtraError, match=r"lean-inference\[vllm-cpu\]"):
        vllm_engine._vllm()


def test_unreachable_server_is_a_clear_error() -> None:
    from lean_backends.remote_vllm import RemoteEngineError

    llm = ChatLeanVLLM(base_url="http://127.0.0.1:9/v1", timeout=5, max_retries=0)
    with pytest.raises(RemoteEngineError, match=r"cannot reach the vLLM server at http://127\.0\.0\.1:9/v1"):
        llm.invoke("hello")


def test_bad_base_url_is_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="base_url"):
        ChatLeanVLLM(base_url="localhost:8000").invoke("hello")
