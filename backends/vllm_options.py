"""Options of the local vLLM LLM classes, declared once for LangChain and LlamaIndex alike.

Both ``lean_chain.ChatLeanVLLM`` and ``lean_index.LeanVLLM`` inherit these fields; with no
arguments they serve the bundled SmolLM2 on whatever vLLM build is installed, ``model=`` takes a
checkpoint directory, and ``base_url=`` targets a running vLLM server instead.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from lean_backends.lora_adapter import lora_adapter_rank, lora_engine_kwargs, lora_on_a_server
from lean_backends.text_backend import TextBackend
from lean_backends.vllm_engine_args import check_engine_kwarg_names
from lean_core.generation import SamplingOptions

__all__ = ["VLLMOptions", "backend_for"]


class VLLMOptions(BaseModel):
    """Which model serves the calls, and the default sampling options of every call."""

    model: str | None = None
    """Checkpoint directory for the in-process engine (None: the bundled SmolLM2-135M-Instruct), or a
    model-hub name (``org/name``) that vLLM resolves itself where the machine can reach a hub (nothing
    is downloaded here); with ``base_url``, the served model's name (None: the server's first model)."""
    base_url: str | None = None
    """URL of a running vLLM OpenAI-compatible server (e.g. ``http://localhost:8000/v1``);
    None runs vLLM in this process."""
    api_key: SecretStr | None = None
    """API key of the server (``vllm serve --api-key``), remote mode only."""
    max_tokens: int = Field(256, ge=1)
    """Most tokens to generate per call (>= 1). Never vLLM's silent default of 16."""
    temperature: float = Field(0.0, ge=0.0)
    """Sampling temperature (>= 0); the default 0 is greedy and reproducible."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass in (0, 1]."""
    seed: int | None = None
    """Random seed per request, for reproducible sampling at temperature > 0."""
    n: int = Field(1, ge=1, le=64)
    """Candidates per call (1..64); streaming supports 1."""
    stop: list[str] | None = None
    """Default stop strings (added to any given per call)."""
    tenant: str | None = None
    """Default tenant: its name salts the prefix cache, so tenants never share cached prefixes.
    Per call, ``metadata={"tenant": ...}`` in the run config (LangChain) overrides it."""
    max_model_len: int | None = Field(None, ge=16)
    """Context length of the in-process engine (None: the model's own)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights dtype of the in-process engine (auto: float32 on CPU, the checkpoint's on GPU)."""
    enforce_eager: bool | None = None
    """None: eager on CPU (the compiled CPU path is unreliable), CUDA graphs on GPU."""
    gpu_memory_utilization: float = Field(0.85, gt=0.0, le=1.0)
    """Share of GPU memory the in-process engine may take (GPU only)."""
    kv_cache_gib: float = Field(2.0, gt=0.0)
    """KV-cache size in GiB on CPU."""
    enable_prefix_caching: bool = True
    """Reuse the KV cache of shared prompt prefixes (per tenant) in the in-process engine."""
    tensor_parallel_size: int = Field(1, ge=1)
    """GPUs each layer is split over (vLLM tensor parallelism), in-process engine."""
    pipeline_parallel_size: int = Field(1, ge=1)
    """Pipeline stages the layers are spread over (vLLM pipeline parallelism), in-process engine."""
    quantization: str | None = None
    """vLLM quantization method (e.g. ``"fp8"``, ``"awq"``; checked against the installed vLLM's
    list before the engine starts); None: as the checkpoint says."""
    enable_lora: bool = False
    """Let the in-process engine serve LoRA adapters (``max_lora_rank`` etc. via ``engine_kwargs``);
    implied by ``lora_adapter``."""
    lora_adapter: str | None = None
    """A LoRA adapter directory (PEFT format) applied to every call of this model, in process; the
    engine starts with LoRA enabled and a ``max_lora_rank`` that fits the adapter. Models with
    different adapters (or none) on one checkpoint share one engine, each request naming its own.
    Per call: ``lora_adapter=`` as a call option. With ``base_url``: None (see ``SamplingOptions``)."""
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Any other ``vllm.engine.arg_utils.EngineArgs`` argument of the in-process engine, by name,
    e.g. ``{"max_num_seqs": 128, "kv_cache_dtype": "fp8"}``. Names and values are checked against
    the installed vLLM before the engine starts (:mod:`lean_backends.vllm_engine_args`); arguments
    with a typed option above are refused here (use the option)."""
    tool_parser: str | None = None
    """vLLM tool parser (``vllm.tool_parsers``, e.g. ``"hermes"``) that finds calls in the model's
    own tool format when ``tool_choice="auto"``, in process. None: ``auto`` is plain text generation
    and returns no calls (the bundled SmolLM2 has no tool format); ``"required"`` and a named tool
    need no parser (guided decoding). With ``base_url`` the server's ``--tool-call-parser`` applies."""
    timeout: float = Field(600.0, gt=0.0)
    """Seconds to wait for a remote server's answer."""
    max_retries: int = Field(2, ge=0)
    """Retries of a failed request to a remote server (connection errors, 5xx)."""

    @field_validator("engine_kwargs")
    @classmethod
    def _engine_kwarg_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_engine_kwarg_names(value)

    @field_validator("lora_adapter")
    @classmethod
    def _lora_adapter_dir(cls, value: str | None) -> str | None:
        return None if value is None else str(lora_adapter_rank(value)[0])

    @model_validator(mode="after")
    def _lora_in_process(self) -> VLLMOptions:
        if self.lora_adapter is not None and self.base_url:
            raise lora_on_a_server(self.lora_adapter)
        return self

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def sampling_options(self, *, stop: list[str] | None = None, **overrides: Any) -> SamplingOptions:
        """This call's options: the defaults above, per-call ``stop`` added, ``overrides`` applied."""
        values: dict[str, Any] = {
            "max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p,
            "seed": self.seed, "n": self.n, "stop": tuple((self.stop or []) + list(stop or [])),
            "lora_adapter": self.lora_adapter,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return SamplingOptions(**values)

    def backend(self) -> TextBackend:
        """The backend serving this configuration (shared with equal configurations)."""
        return backend_for(self)


_REMOTES: dict[tuple[Any, ...], TextBackend] = {}
_REMOTES_LOCK = threading.Lock()


def backend_for(options: VLLMOptions) -> TextBackend:
    if options.base_url:
        from lean_backends.remote_vllm import RemoteVLLMClient

        key = options.api_key.get_secret_value() if options.api_key else None
        cache_key = (options.base_url, options.model, key, options.timeout, options.max_retries)
        with _REMOTES_LOCK:
            client = _REMOTES.get(cache_key)
            if client is None:
                client = _REMOTES[cache_key] = RemoteVLLMClient(
                    options.base_url, model=options.model, api_key=key, timeout_s=options.timeout,
                    max_retries=options.max_retries)
            return client
    from lean_backends.vllm_engine import VLLMEngineSettings, get_engine, resolve_model

    return get_engine(VLLMEngineSettings(
        model=resolve_model(options.model), dtype=options.dtype,
        enforce_eager=options.enforce_eager, max_model_len=options.max_model_len,
        gpu_memory_utilization=options.gpu_memory_utilization, kv_cache_gib=options.kv_cache_gib,
        enable_prefix_caching=options.enable_prefix_caching, tensor_parallel_size=options.tensor_parallel_size,
        pipeline_parallel_size=options.pipeline_parallel_size, quantization=options.quantization,
        enable_lora=options.enable_lora or options.lora_adapter is not None,
        engine_kwargs=lora_engine_kwargs(options.lora_adapter, options.engine_kwargs),
    ))
