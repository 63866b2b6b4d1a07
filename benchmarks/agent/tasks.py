"""Agent tasks built from the shared data: NQ-open search tasks and GSM8K calculator tasks.

A search task is an NQ-open question whose gold Wikipedia passage sits in a pool with BM25-retrieved
hard distractors (other questions' gold passages that look relevant but lack the answer; see
:func:`lean_benchmarks.qa_datasets.build_nq_items`). The agent's ``search`` tool hands the pool out
over ``tool_steps`` calls, ``passages_per_call`` at a time, so the gold passage arrives at some step
among distractors and has to survive the later steps' context management. A calculator task is a
GSM8K problem with a ``calculator`` tool; its gold is the final number after ``####``.

Items come from the halves no lean-inference component was tuned on: the NQ "held_out" half of the
compression benchmark's split and the GSM8K "eval" half of the length predictor's split.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lean_core.errors import InvalidParameterError

__all__ = ["AgentTask", "ToolName", "build_agent_tasks"]

ToolName = Literal["search", "calculator"]


@dataclass(frozen=True, slots=True)
class AgentTask:
    """One agent task: the question, its tool, the data the tool serves and the gold answers."""

    task_id: str
    """``nq-<row>`` or ``gsm8k-<row>``: the source file and its row number."""
    tool: ToolName
    """The tool the scripted steps force (``search`` for NQ, ``calculator`` for GSM8K)."""
    question: str
    answers: tuple[str, ...]
    """Gold answer strings (NQ aliases; GSM8K's final number)."""
    passages: tuple[str, ...] = ()
    """Search tasks: the pool the ``search`` tool serves (gold passage + hard distractors)."""
    gold_passage: int | None = None
    """Search tasks: index of the gold passage in :attr:`passages`."""


def _kind_of(path: Path) -> Literal["nq", "gsm8k"]:
    """The file's kind, from its first row."""
    with path.open(encoding="utf-8") as handle:
        first = next((line for line in handle if line.strip()), "")
    if not first:
        raise InvalidParameterError("data", allowed="a non-empty JSON Lines file", received=str(path))
    row = json.loads(first)
    if "ctxs" in row:
        return "nq"
    if isinstance(row.get("answer"), str) and "####" in row["answer"]:
        return "gsm8k"
    raise InvalidParameterError("data", allowed="NQ-open oracle ({question, answers, ctxs}) or GSM8K "
                                "({question, answer '... #### N'}) JSON Lines", received=str(path))


def _nq_tasks(path: Path, *, wanted: int, pool_size: int) -> list[AgentTask]:
    from lean_benchmarks.qa_datasets import build_nq_items, read_jsonl

    rows = read_jsonl(path)
    items = build_nq_items(rows, passages=pool_size, limit=wanted, split="held_out")
    return [AgentTask(task_id=f"nq-{item.item_id}", tool="search", question=item.question, answers=item.answers,
                      passages=tuple(item.context), gold_passage=item.gold_position)
            for item in items]


def _gsm8k_tasks(path: Path, *, wanted: int) -> list[AgentTask]:
    from lean_benchmarks.budget_data import load_budget_queries, split_of

    tasks: list[AgentTask] = []
    # the split is by question text; the ids keep the file's row numbers
    for row, query in enumerate(load_budget_queries(path)):
        if split_of(query.question) != "eval" or not query.gold:
            continue
        tasks.append(AgentTask(task_id=f"gsm8k-{row}", tool="calculator", question=query.question,
                               answers=query.gold))
        if len(tasks) == wanted:
            break
    return tasks


def build_agent_tasks(data: Sequence[str | Path], *, tasks: int = 12, tool_steps: int = 3,
                      passages_per_call: int = 4) -> list[AgentTask]:
    """``tasks`` agent tasks from the NQ-open oracle and/or GSM8K files in ``data``.

    With both kinds of file the tasks are split two search tasks to one calculator task (search
    tasks carry the long tool results that context management is about), interleaved in that
    pattern; each file keeps its own order. Search pools hold ``tool_steps * passages_per_call``
    passages.
    """
    if tasks < 1:
        raise InvalidParameterError("tasks", allowed="a whole number >= 1", received=tasks)
    if tool_steps < 1:
        raise InvalidParameterError("tool_steps", allowed="a whole number >= 1", received=tool_steps)
    if passages_per_call < 1:
        raise InvalidParameterError("passages_per_call", allowed="a whole number >= 1", received=passages_per_call)
    if not data:
        raise InvalidParameterError("data", allowed="at least one NQ-open oracle or GSM8K file", received=list(data))
    paths = [Path(p) for p in data]
    for path in paths:
        if not path.is_file():
            raise InvalidParameterError("data", allowed="existing JSON Lines files (NQ-open oracle, GSM8K)",
                                        received=str(path))
    kinds = {_kind_of(p): p for p in paths}
    if len(kinds) < len(paths):
        raise InvalidParameterError("data", allowed="at most one NQ-open file and one GSM8K file",
                                    received=[str(p) for p in paths])
    n_search = tasks if "gsm8k" not in kinds else (0 if "nq" not in kinds else tasks - tasks // 3)
    n_calc = tasks - n_search
    search = _nq_tasks(kinds["nq"], wanted=n_search, pool_size=tool_steps * passages_per_call) if n_search else []
    calc = _gsm8k_tasks(kinds["gsm8k"], wanted=n_calc) if n_calc else []
    out: list[AgentTask] = []
    i = j = 0
    while i < len(search) or j < len(calc):
        # two search tasks, then one calculator task
        if i < len(search) and (j >= len(calc) or len(out) % 3 != 2):
            out.append(search[i])
            i += 1
        else:
            out.append(calc[j])
            j += 1
    return out
