"""Binding an output budget onto a LangChain chat model: shared by ``LeanBudget`` and the
pipeline's ``ChatModelPort``, so both bind the same keywords the same way (the LlamaIndex side
shares ``lean_index.budget_llm.budgeted_llm`` likewise)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable

from lean_core.budget import budget_parameter

__all__ = ["bind_budget"]


def bind_budget(llm: BaseChatModel, *, max_tokens: int, stop: Sequence[str] = (), early_stop: Any = None,
                parameter: str | None = None, strict: bool = False) -> Runnable[Any, BaseMessage]:
    """``llm`` bound to answer within ``max_tokens``, under ``parameter`` or else the keyword its
    class takes (``max_tokens``, ``max_output_tokens``, ``num_predict``, ...; ``strict`` raises for
    an unknown class instead of using ``max_tokens``); stop sequences when given; ``early_stop``
    only for ``ChatLeanVLLM``, the one class that takes it."""
    name = parameter or budget_parameter(llm, strict=strict).name
    kwargs: dict[str, Any] = {name: max_tokens}
    if stop:
        kwargs["stop"] = list(stop)
    if early_stop is not None and type(llm).__name__ == "ChatLeanVLLM":
        kwargs["early_stop"] = early_stop
    return llm.bind(**kwargs)
