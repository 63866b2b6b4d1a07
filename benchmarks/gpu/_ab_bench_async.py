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
import threading
from collections.abc import Coroutine
from typing import Any

from _ab_bench_parts import AbSettings, Contender, _scheduler_limits, raw_engine_args
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

    values = {"disable_log_stats": True} | raw_engine_args(settings, model_dir)  # as vllm.LLM and ours
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

    async def shutdown() -> None:
        engine.shutdown()

    def close() -> None:  # without it the engine's processes outlive the script and it never exits
        loop.run(shutdown())
        loop.loop.call_soon_threadsafe(loop.loop.stop)

    return Contender(f"raw vllm AsyncLLM ({kind})", run,
                     scheduler=_scheduler_limits(getattr(engine, "vllm_config", None)), close=close)
