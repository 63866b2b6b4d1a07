"""Run one worker function in spawned processes and threads at once, for load and race tests.

Each worker writes its result (or the traceback that stopped it) to a JSON file, so a failure in
a process shows in the test's assertion rather than only on the child's stderr.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["run_workers"]


def _report(work: Callable[..., dict[str, Any]], args: tuple[Any, ...], worker: int, out: str) -> None:
    try:
        result = work(*args, worker=worker)
    except BaseException:
        Path(out).write_text(json.dumps({"error": traceback.format_exc()}))
        raise
    Path(out).write_text(json.dumps(result))


def run_workers(work: Callable[..., dict[str, Any]], args: tuple[Any, ...], *, processes: int, threads: int,
                out_dir: Path, join_timeout_s: float) -> list[dict[str, Any]]:
    """Run ``work(*args, worker=n)`` in ``processes`` spawned processes (workers ``0 .. processes-1``)
    and ``threads`` threads (the next numbers), all at once; ``work`` must be importable by name
    (a module-level function) and return a JSON-able dict.

    Returns the results in worker order, after asserting that no worker raised and every process
    exited with 0.
    """
    ctx = multiprocessing.get_context("spawn")
    outs = [str(out_dir / f"w{worker}.json") for worker in range(processes + threads)]
    jobs = [ctx.Process(target=_report, args=(work, args, w, outs[w])) for w in range(processes)]
    thread_list = [threading.Thread(target=_report, args=(work, args, w, outs[w]))
                   for w in range(processes, processes + threads)]
    for job in jobs:
        job.start()
    for thread in thread_list:
        thread.start()
    for thread in thread_list:
        thread.join()
    for job in jobs:
        job.join(timeout=join_timeout_s)
    results = [json.loads(Path(o).read_text()) for o in outs]
    assert [r["error"] for r in results if "error" in r] == []
    assert [job.exitcode for job in jobs] == [0] * processes
    return results
