"""Piped benchmark runs print a line per step (rich draws nothing until the end when piped)."""

from __future__ import annotations

import io

from lean_benchmarks.progress import LineProgress, bench_progress


def test_line_progress_prints_on_each_tenth_and_on_a_new_description() -> None:
    out = io.StringIO()
    with LineProgress(stream=out) as progress:
        task = progress.add_task("embedding", total=None)
        progress.update(task, description="lookups", total=20, completed=0)
        for _ in range(20):
            progress.advance(task)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("embedding")
    assert lines[1].endswith("lookups 0/20")
    # one line per tenth of 20 (every 2 lookups), the last at completion
    assert [line.split()[-1] for line in lines[2:]] == [f"{n}/20" for n in range(2, 21, 2)]


def test_disabled_progress_prints_nothing() -> None:
    out = io.StringIO()
    with LineProgress(stream=out, disable=True) as progress:
        progress.advance(progress.add_task("x", total=3))
    assert out.getvalue() == ""


def test_piped_runs_get_line_progress() -> None:
    # pytest captures stderr, so it is not a terminal here, as in CI and `| tee`.
    assert isinstance(bench_progress(show=True), LineProgress)
