"""EngineModel: the local vLLM engine or a vLLM server as the model at the end of a LeanPipeline."""

from __future__ import annotations

import os
from typing import Any

from lean_backends.text_backend import TextBackend
from lean_core.cache.tenancy import current_prefix_salt
from lean_core.generation import SamplingOptions
from lean_core.pipeline.types import ModelCall, ModelReply

__all__ = ["EngineModel"]


class EngineModel:
    """Adapts a :class:`TextBackend` (``LocalVLLMEngine`` or ``RemoteVLLMClient``) to the pipeline's
    model port. Greedy by default.

    **Prefix-cache salt.** Inside a :class:`~lean_core.pipeline.LeanPipeline` every call is salted
    by its request (:func:`lean_core.cache.prefix_salt_scope`): a tenant's requests share the salt
    of the tenant; a request without a tenant gets a salt of its own, so its prefix blocks are
    never shared with another request. ``cache_salt`` adds a fixed partition on top (e.g. one per
    experiment): the salt sent is ``"<cache_salt>/<request salt>"``. Called outside a pipeline, the
    salt is ``cache_salt`` alone (None: the engine's unsalted partition)."""

    def __init__(self, engine: TextBackend, *, temperature: float = 0.0, cache_salt: str | None = None) -> None:
        self.engine = engine
        self.temperature = temperature
        self.cache_salt = cache_salt

    @classmethod
    def local(cls, model: str | os.PathLike[str] | None = None, **engine_settings: Any) -> EngineModel:
        """The in-process vLLM engine on ``model`` (default: the bundled SmolLM2; a checkpoint
        directory or a model-hub name). ``engine_settings`` are
        :class:`~lean_backends.vllm_engine.VLLMEngineSettings` fields: the typed ones
        (``max_model_len``, ``gpu_memory_utilization``, ``tensor_parallel_size``, ``quantization``, ...)
        and ``engine_kwargs`` for any other vLLM engine argument, checked before the engine starts."""
        from lean_backends.vllm_engine import VLLMEngineSettings, get_engine, resolve_model

        return cls(get_engine(VLLMEngineSettings(model=resolve_model(model), **engine_settings)))

    @classmethod
    def remote(cls, base_url: str, *, model: str | None = None, api_key: str | None = None) -> EngineModel:
        """A vLLM server's OpenAI-compatible API."""
        from lean_backends.remote_vllm import RemoteVLLMClient

        return cls(RemoteVLLMClient(base_url, model=model, api_key=api_key))

    @property
    def model_name(self) -> str:
        return self.engine.model_name

    def _options(self, call: ModelCall) -> SamplingOptions:
        # Early stopping runs in the in-process engine only; a server call simply omits it.
        from lean_backends.vllm_engine import LocalVLLMEngine

        early = call.early_stop if isinstance(self.engine, LocalVLLMEngine) else None
        return SamplingOptions(max_tokens=call.max_tokens, temperature=self.temperature, stop=call.stop,
                               early_stop=early)

    def salt(self) -> str | None:
        """The prefix-cache salt of a call made here and now (see the class docstring)."""
        scoped = current_prefix_salt()
        if scoped is None or self.cache_salt is None:
            return self.cache_salt if scoped is None else scoped
        return f"{self.cache_salt}/{scoped}"

    def complete(self, call: ModelCall) -> ModelReply:
        result = self.engine.generate(list(call.messages), self._options(call), cache_salt=self.salt())
        return _reply(result)

    async def acomplete(self, call: ModelCall) -> ModelReply:
        result = await self.engine.agenerate(list(call.messages), self._options(call), cache_salt=self.salt())
        return _reply(result)


def _reply(result: Any) -> ModelReply:
    choice = result.choices[0]
    return ModelReply(text=choice.text, finish_reason=choice.finish_reason, usage=result.usage,
                      early_stop=None if choice.early_stop is None else str(choice.early_stop))
