"""The five-layer demo (what `make demo` runs) on a reduced workload, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _reduced_stream(path: Path) -> int:
    """The built-in stream's first 15 questions and its q-024 (q-009 again with a doubled space: an
    exact repeat once normalised), in stream order: 16 requests, one wave of the demo's 16 in
    flight. (The stream's first exact repeat is its 24th question, so ``--limit 24`` was needed for
    a cache hit, and its second wave of 8 requests decoding up to 256 tokens each took ~40 % of
    every row.) It keeps a case-only repeat (q-005), another tenant's repeat (q-012), a paraphrase
    and lookalikes."""
    from lean_benchmarks.demo.workload import builtin_questions_path

    lines = builtin_questions_path().read_text().splitlines()
    kept = lines[:15] + [line for line in lines if json.loads(line)["id"] == "q-024"]
    path.write_text("\n".join(kept) + "\n")
    return len(kept)


def test_demo_command_runs_end_to_end(tmp_path: Path, smollm2_path: Path) -> None:
    questions = _reduced_stream(tmp_path / "questions.jsonl")
    out = subprocess.run(
        [sys.executable, "-m", "lean_cli", "demo", "--out", str(tmp_path), "--questions",
         str(tmp_path / "questions.jsonl")],
        capture_output=True, text=True, timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for row in ("baseline", "+ template", "+ compression", "+ output budget", "+ cache (all layers)"):
        assert row in out.stdout
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    base, best = rows[0], rows[-1]
    assert [r["requests"] for r in rows] == [questions] * 5
    assert base["cache_hits"] == 0 and best["cache_hits"] > 0  # the stream's repeats are served
    assert rows[2]["input_tokens"] < rows[1]["input_tokens"] < base["input_tokens"]  # template, then compression
    assert rows[3]["output_tokens"] < rows[2]["output_tokens"]  # output budget
    assert best["cost_per_mtok"] < base["cost_per_mtok"] and 0 < best["cost_reduction"] < 1
    answers = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == questions and all(a["baseline"] for a in answers)
    # Tenant isolation on a real stream: a question first asked by another tenant is a miss.
    ledger = json.loads((tmp_path / "ledger.json").read_text())
    assert {e["layer"] for e in ledger["savings"]} >= {"cache", "compression", "template", "output"}
    # globex's only questions are a new one and acme's q-003 again: neither may be served from the cache
    assert not [e for e in ledger["savings"] if e["layer"] == "cache" and e["cache_hit"] and e["tenant"] == "globex"]
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    # The output is the table, not vLLM's start-up log, and the engine shuts down without the
    # "Exception ignored in AsyncLLM.__del__" traceback it printed at interpreter exit.
    from lean_core._hardware import cpu_has_native_bf16

    assert f"smollm2-135m-instruct in {'bfloat16' if cpu_has_native_bf16() else 'float32'}" in out.stdout
    assert "Exception ignored" not in out.stderr and " INFO " not in out.stderr, out.stderr[-3000:]
    # Nor the MiniLM load bar, torch's NUMA-binding note or the worker's deprecation warnings.
    for noise in ("Loading weights", "NUMA binding", "FutureWarning"):
        assert noise not in out.stderr, out.stderr[-3000:]
