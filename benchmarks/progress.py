"""Progress for long benchmark runs, on a terminal and when piped.

On a terminal the benchmarks show ``rich`` progress bars. Piped into a file or CI log, rich draws
nothing until the end, so a run of half an hour would look dead: there :class:`LineProgress` prints
one plain line whenever a task's description changes, and at every tenth of its total.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import IO, Any

__all__ = ["LineProgress", "bench_progress"]


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0
    printed_tenth: int = -1


class LineProgress:
    """The subset of ``rich.progress.Progress`` the benchmarks use, writing a line per step."""

    def __init__(self, *, stream: IO[str] | None = None, disable: bool = False) -> None:
        self._stream = stream
        self._disable = disable
        self._tasks: list[_Task] = []
        self._started = time.perf_counter()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, **_: Any) -> int:
        self._tasks.append(_Task(description, total))
        self._say(self._tasks[-1])
        return len(self._tasks) - 1

    def update(self, task_id: int, *, description: str | None = None, total: float | None = None,
               completed: float | None = None, advance: float | None = None, **_: Any) -> None:
        task = self._tasks[task_id]
        renamed = description is not None and description != task.description
        if description is not None:
            task.description = description
        if total is not None:
            task.total = total
        if completed is not None:
            task.completed = completed
        if advance is not None:
            task.completed += advance
        tenth = int(10 * task.completed / task.total) if task.total else -1
        if renamed:
            task.printed_tenth = tenth
            self._say(task)
        elif tenth > task.printed_tenth:
            task.printed_tenth = tenth
            self._say(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def _say(self, task: _Task) -> None:
        if self._disable:
            return
        done = f" {task.completed:g}/{task.total:g}" if task.total else ""
        stream = self._stream or sys.stderr
        print(f"[{time.perf_counter() - self._started:7.1f} s] {task.description}{done}", file=stream, flush=True)


def bench_progress(*, show: bool = True) -> Any:
    """``rich`` progress bars on a terminal, :class:`LineProgress` otherwise (both context managers)."""
    if show and sys.stderr.isatty():
        from rich.progress import Progress

        return Progress(disable=False)
    return LineProgress(disable=not show)
