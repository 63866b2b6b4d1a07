"""LoRA adapters for the in-process engine: a PEFT adapter directory checked before any engine
starts, and the engine arguments that let vLLM load it.

vLLM applies an adapter per request (``LoRARequest``), so models with different adapters on one
checkpoint share one engine; the engine only needs LoRA enabled and a ``max_lora_rank`` at least
the adapter's rank (vLLM's default 16 refuses a rank-32 adapter at its first request, not at start).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lean_core.errors import InvalidParameterError

__all__ = ["VLLM_LORA_RANKS", "LoRARequests", "lora_adapter_rank", "lora_engine_kwargs", "lora_on_a_server"]

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The ``max_lora_rank`` values vLLM accepts (``vllm.config.lora.MaxLoRARanks``)."""
_VLLM_DEFAULT_RANK = 16
_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_ALLOWED = "a PEFT LoRA adapter directory (adapter_config.json with peft_type LORA and r, adapter_model.safetensors)"


def lora_adapter_rank(path: str | Path) -> tuple[Path, int]:
    """The adapter directory, resolved, and its rank; InvalidParameterError naming ``lora_adapter``
    for anything vLLM would refuse only at the first request."""
    if not isinstance(path, str | Path) or not str(path).strip():
        raise InvalidParameterError("lora_adapter", allowed=_ALLOWED, received=path)
    directory = Path(path).expanduser().resolve()
    config_file = directory / "adapter_config.json"
    if not config_file.is_file():
        raise InvalidParameterError("lora_adapter", allowed=_ALLOWED, received=f"{path} (no adapter_config.json)")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidParameterError("lora_adapter", allowed=_ALLOWED, received=f"{config_file}: {exc}") from None
    rank = config.get("r") if isinstance(config, dict) else None
    peft_type = str(config.get("peft_type", "LORA")).upper() if isinstance(config, dict) else None
    if peft_type != "LORA" or isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise InvalidParameterError("lora_adapter", allowed=_ALLOWED,
                                    received=f"{config_file}: peft_type {peft_type!r}, r {rank!r}")
    if rank > VLLM_LORA_RANKS[-1]:
        raise InvalidParameterError("lora_adapter", allowed=f"an adapter of rank <= {VLLM_LORA_RANKS[-1]} (vLLM's limit)",
                                    received=f"{directory}: r {rank}")
    if not any((directory / name).is_file() for name in _WEIGHTS):
        raise InvalidParameterError("lora_adapter", allowed=_ALLOWED, received=f"{path} (no adapter weights)")
    return directory, rank


def lora_on_a_server(adapter: object) -> InvalidParameterError:
    """The error for an adapter directory sent to a vLLM server, which serves adapters as models."""
    return InvalidParameterError("lora_adapter", allowed="None with base_url (a vLLM server serves an adapter as a "
                                 "model: start it with --lora-modules NAME=PATH and pass model=NAME)", received=adapter)


def lora_engine_kwargs(adapter: str | Path | None, engine_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``engine_kwargs`` with a ``max_lora_rank`` that fits ``adapter`` where vLLM's default would
    not and the user set none (a rank the user set is theirs: vLLM then names the mismatch)."""
    kwargs = dict(engine_kwargs)
    if adapter is None or "max_lora_rank" in kwargs:
        return kwargs
    _, rank = lora_adapter_rank(adapter)
    if rank > _VLLM_DEFAULT_RANK:
        kwargs["max_lora_rank"] = next(r for r in VLLM_LORA_RANKS if r >= rank)
    return kwargs


class LoRARequests:
    """One engine's vLLM ``LoRARequest`` per adapter directory (vLLM keys its loaded adapters by
    the request's integer id, so one directory must keep one id)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._requests: dict[str, Any] = {}
        self._lock = threading.Lock()

    def request(self, adapter: str | None) -> Any:
        """The request for ``adapter`` (checked the first time), or None without one."""
        if adapter is None:
            return None
        with self._lock:
            request = self._requests.get(adapter)
            if request is not None:
                return request
            directory, _ = lora_adapter_rank(adapter)
            if not self.enabled:
                raise InvalidParameterError("enable_lora", allowed="True for requests with a lora_adapter (this "
                                            "engine started without LoRA)", received=False)
            from vllm.lora.request import LoRARequest

            number = len(self._requests) + 1
            request = LoRARequest(lora_name=f"{directory.name}-{number}", lora_int_id=number, lora_path=str(directory))
            self._requests[adapter] = request
            return request
