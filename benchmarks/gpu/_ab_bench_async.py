"""Raw vLLM ``AsyncLLM`` as a contender of the throughput section (``--raw-async``): where the gap
between our classes and raw ``vllm.LLM.generate`` comes from.

Our classes run vLLM's ``AsyncLLM`` on a private event loop; ``vllm.LLM`` drives the synchronous
engine. This contender is ``AsyncLLM`` with none of our code: the same engine arguments as our
classes (``LLM_CLASS`` usage context, stats off), pre-tokenized prompts as raw ``LLM.generate``
gets them, every request submitted at once and gathered, final outputs only. One engine per event
loop kind (``asyncio`` and, where installed, ``uvloop``), each resident beside the others. Ours /
raw-async isolates our own layers; raw-async / raw-sync isolates vLLM's async front end.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any

from _ab_bench_parts import AbSettings, Contender, _on_cpu, _scheduler_limits
from _vllm_bench_measure import final_outputs

__all__ = ["raw_async_contenders"]


class _Loop:
    """An event loop of the given kind on a daemon thread."""

    def __init__(self, kind: str) -> None:
        if kind == "uvloop":
            import uvloop

            self.loop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name=f"ab-{kind}", daemon=True).start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


def _loop_kinds() -> list[str]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return ["asyncio"]
    return ["asyncio", "uvloop"]


def raw_async_contenders(settings: AbSettings, model_dir: str) -> list[Contender]:
    """One ``AsyncLLM`` contender per event loop kind, each on its own resident engine."""
    return [_raw_async(settings, model_dir, kind) for kind in _loop_kinds()]


def _raw_async(settings: AbSettings, model_dir: str, kind: str) -> Contender:
    from vllm import SamplingParams
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.sampling_params import RequestOutputKind
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.async_llm import AsyncLLM

    on_cpu = _on_cpu()
    if on_cpu:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{settings.kv_cache_gib:g}")
    values: dict[str, Any] = dict(model=model_dir, dtype=settings.dtype, enforce_eager=on_cpu, seed=0,
                                  max_model_len=settings.max_model_len, enable_prefix_caching=True,
                                  trust_remote_code=False, disable_log_stats=True)
    values.update({"block_size": 32} if on_cpu else {"gpu_memory_utilization": settings.memory_share})
    values.update(settings.engine_kwargs)
    loop = _Loop(kind)

    async def build() -> Any:
        return AsyncLLM.from_engine_args(AsyncEngineArgs(**values), usage_context=UsageContext.LLM_CLASS)

    engine = loop.run(build())
    params = SamplingParams(temperature=0.0, max_tokens=settings.max_tokens, ignore_eos=True,
                            output_kind=RequestOutputKind.FINAL_ONLY)

    batch = final_outputs(engine, params)

    def run(ids: list[list[int]], chats: list[list[dict[str, str]]]) -> tuple[list[str], int]:
        outputs = loop.run(batch(ids))
        return [o.outputs[0].text for o in outputs], sum(len(o.outputs[0].token_ids) for o in outputs)

    return Contender(f"raw vllm AsyncLLM ({kind})", run,
                     scheduler=_scheduler_limits(getattr(engine, "vllm_config", None)))
