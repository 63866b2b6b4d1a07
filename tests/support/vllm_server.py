"""The remote-mode tests' ``vllm serve`` on loopback: the benchmarks' launcher, under the tests' name."""

from __future__ import annotations

from lean_benchmarks.vllm_serve import VLLMServe as VLLMServer
from lean_benchmarks.vllm_serve import free_port

__all__ = ["VLLMServer", "free_port"]
