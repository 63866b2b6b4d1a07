"""``python -m lean_cli``: the same command line as ``lean-inference``."""

from lean_cli.app import main

if __name__ == "__main__":  # vLLM starts worker processes that import __main__: keep it guarded
    raise SystemExit(main())
