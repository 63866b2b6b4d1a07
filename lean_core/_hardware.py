"""Facts about the machine that pick fast defaults (kept apart so no caller repeats the probes)."""

from __future__ import annotations

import contextlib

__all__ = ["cpu_has_native_bf16"]


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bfloat16 in hardware (AVX512-BF16 or AMX).

    Elsewhere bf16 is emulated and slower than float32, so "auto" precision keeps float32 there.
    Needs torch (only callers that already load it ask).
    """
    import torch

    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        probe = getattr(torch.cpu, name, None)
        with contextlib.suppress(Exception):
            if probe is not None and probe():
                return True
    return False
