"""The agent's tools: ``search`` over a task's passage pool and a safe arithmetic ``calculator``.

``search`` ranks the passages it has not returned yet by BM25 against the query the model wrote and
returns the best ``passages_per_call`` of them; every passage of the pool is returned exactly once
over ``len(pool) / passages_per_call`` calls, so the gold passage always reaches the agent, at a
step that depends on the model's queries. Both tools are deterministic.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from lean_benchmarks.agent.tasks import AgentTask

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

__all__ = ["SearchSession", "evaluate_arithmetic", "make_task_tools"]

_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    ast.USub: operator.neg, ast.UAdd: operator.pos,
}
_MAX_EXPONENT = 100


def evaluate_arithmetic(expression: str) -> str:
    """The value of a plain arithmetic expression (+ - * / // % ** and parentheses), as text.

    Anything else (names, calls, huge powers, bad syntax) gives an ``error: ...`` text the model
    reads, as a real tool would return, instead of raising.
    """

    def value(node: ast.AST) -> float | int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
                raise ValueError("exponent too large")
            return _OPERATORS[type(node.op)](left, right)  # type: ignore[no-any-return]
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.operand))  # type: ignore[no-any-return]
        raise ValueError(f"unsupported element {type(node).__name__}")

    text = expression.replace(",", "").replace("x", "*").replace("×", "*").replace("÷", "/").strip()
    try:
        result = value(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, TypeError) as exc:
        return f"error: {exc}"
    if isinstance(result, float) and result.is_integer():
        result = int(result)
    return f"{expression.strip()} = {result}"


class SearchSession:
    """The state of one task's ``search`` tool: which passages it has returned so far."""

    def __init__(self, passages: tuple[str, ...], *, passages_per_call: int) -> None:
        from lean_benchmarks._bm25 import BM25

        self.passages = passages
        self.passages_per_call = passages_per_call
        self.returned: list[int] = []
        self._index = BM25(list(passages))

    def search(self, query: str) -> str:
        """The next ``passages_per_call`` unseen passages, best BM25 match to ``query`` first."""
        seen = set(self.returned)
        ranked = [i for i in self._index.rank(query) if i not in seen]
        # BM25 ranks only passages sharing a term with the query; the rest follow in pool order
        ranked += [i for i in range(len(self.passages)) if i not in seen and i not in ranked]
        page = ranked[:self.passages_per_call]
        self.returned.extend(page)
        if not page:
            return "No more results."
        return "\n\n".join(f"[{n}] {self.passages[i]}" for n, i in enumerate(page, start=len(self.returned) - len(page) + 1))


class _SearchArgs(BaseModel):
    query: str = Field(description="What to look up in the encyclopedia.", max_length=120)


class _CalculatorArgs(BaseModel):
    expression: str = Field(description="An arithmetic expression, e.g. 12 * (3 + 4).", max_length=80)


def make_task_tools(task: AgentTask, *, passages_per_call: int) -> tuple[list[BaseTool], SearchSession | None]:
    """Both tools for one task (the model is offered both; the script forces ``task.tool``).

    Returns the tools and the task's search session (None for calculator tasks), whose
    ``returned`` list tells at which step the gold passage arrived.
    """
    from langchain_core.tools import StructuredTool

    session = SearchSession(task.passages, passages_per_call=passages_per_call) if task.passages else None

    def search(query: str) -> str:
        return session.search(query) if session is not None else "No results."

    search_tool = StructuredTool.from_function(
        func=search, name="search", args_schema=_SearchArgs,
        description="Search an encyclopedia; returns several passages per call, new ones each call.")
    calculator_tool = StructuredTool.from_function(
        func=evaluate_arithmetic, name="calculator", args_schema=_CalculatorArgs,
        description="Evaluate an arithmetic expression exactly.")
    return [search_tool, calculator_tool], session
