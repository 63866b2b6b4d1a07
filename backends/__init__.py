"""lean-inference backends (import name ``lean_backends``): the vLLM engine and model pruning.

Heavy dependencies (torch, transformers, vllm) are imported inside the modules that use them.
"""

from lean_backends.local_generation import GreedyAnswer, generate_greedy

__all__ = ["GreedyAnswer", "generate_greedy"]
