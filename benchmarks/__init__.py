"""Benchmarks behind ``lean-inference bench ...``; results go to JSON and BENCHMARKS.md."""

__all__: list[str] = []
