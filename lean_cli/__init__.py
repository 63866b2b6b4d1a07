"""The ``lean-inference`` command line, on top of the house: it reaches the core, the adapters, the
backends and the benchmarks; nothing imports it."""

from lean_cli.app import build_parser, main

__all__ = ["build_parser", "main"]
