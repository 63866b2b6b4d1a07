"""Every example in examples/ runs offline.

The examples that serve the bundled SmolLM2 run in this process, as ``python examples/NAME.py
ARGS`` would run them (``runpy`` with ``__name__ == "__main__"`` and that ``sys.argv``): their
``ChatLeanVLLM`` / ``LeanVLLM`` then use the test session's shared in-process vLLM engine (equal
engine settings share one engine) instead of starting one per example (~40 s each on this 2-core
machine: three processes importing vLLM, then a 5 s shutdown), and the session's loopback-only
socket guard (tests/conftest.py) applies to them, which the subprocesses never had.
"""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def run_example_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> Callable[..., str]:
    """``run(script, *args)``: the example's stdout, run in this process from ``tmp_path``."""

    def run(script: str, *args: str) -> str:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "argv", [str(EXAMPLES / script), *args])
        capsys.readouterr()
        runpy.run_path(str(EXAMPLES / script), run_name="__main__")
        return capsys.readouterr().out

    return run


def test_ledger_with_langchain_example(tmp_path: Path, smollm2_path: Path,
                                       run_example_here: Callable[..., str]) -> None:
    out = run_example_here("ledger_with_langchain.py", "--ledger", str(tmp_path / "l.sqlite3"),
                           "--png", str(tmp_path / "l.png"))
    assert "30 days" in out  # the local model answers from the policy in its prompt
    assert "smollm2-135m-instruct" in out and "lean-vllm" in out
    assert (tmp_path / "l.png").read_bytes()[:4] == b"\x89PNG"


def test_template_and_budget_example(tmp_path: Path, smollm2_path: Path,
                                     run_example_here: Callable[..., str]) -> None:
    out = run_example_here("template_and_budget_chain.py", "--ledger", str(tmp_path / "l.sqlite3"))
    assert out.count("\nA: ") + out.startswith("Q:") >= 3
    # the lean template's stable part is served from the prefix cache after the first question
    # (the example counts its own requests only, not the shared engine's earlier ones)
    cached = int(out.split("prefix cache: ")[1].split(" ")[0])
    assert cached > 0
    for layer in ("template", "output"):
        assert f"│ {layer}" in out or f"{layer} " in out


def _run_example(script: str, *args: str, cwd: Path) -> str:
    out = subprocess.run([sys.executable, str(EXAMPLES / script), *args],
                         capture_output=True, text=True, timeout=600, cwd=cwd)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _int(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match is not None, f"{pattern!r} not in the output"
    return int(match.group(1))


def test_lcel_compress_chain_example(tmp_path: Path, smollm2_path: Path,
                                     run_example_here: Callable[..., str]) -> None:
    from lean_core import CostLedger

    out = run_example_here("lcel_compress_chain.py", "--ledger", str(tmp_path / "l.sqlite3"))
    before = _int(r"notes tokens before compression: (\d+)", out)
    after = _int(r"notes tokens after compression: (\d+)", out)
    assert 0 < after <= 0.25 * before  # the default --ratio is a hard budget
    match = re.search(r"model prompt tokens: (\d+) without LeanCompress, (\d+) with it", out)
    assert match is not None
    without, with_ = int(match.group(1)), int(match.group(2))
    # the model really received the shorter prompt: its own count fell by what was cut
    assert abs((without - with_) - (before - after)) <= 3
    seen = out.split("notes the model saw:\n")[1].split("\n")[0]
    assert "Every rental includes a lock, a helmet" in seen  # query-aware: the answer survived
    assert "│ compression" in out
    ledger = CostLedger(tmp_path / "l.sqlite3")
    (event,) = ledger.savings()
    assert (event.layer, event.input_tokens_before, event.input_tokens_after) == ("compression", before, after)
    assert len(ledger.calls()) == 1  # the comparison run without compression is not in the ledger
    ledger.close()


_FERRY_DOCS = {  # doc_id -> (source, section), as written in examples/langchain_rag_chain.py
    "tf-01": ("timetable.md", "crossings"), "tf-02": ("timetable.md", "crossings"),
    "tf-03": ("fares.md", "tickets"), "tf-04": ("fares.md", "vehicles"), "tf-05": ("fleet.md", "vessels"),
    "tf-06": ("policies.md", "pets"), "tf-07": ("policies.md", "delays"), "tf-08": ("services.md", "on board"),
    "tf-09": ("services.md", "booking"), "tf-10": ("history.md", "company"),
}


def test_langchain_rag_chain_example(tmp_path: Path, smollm2_path: Path,
                                     run_example_here: Callable[..., str]) -> None:
    from lean_core import CostLedger

    out = run_example_here("langchain_rag_chain.py", "--ledger", str(tmp_path / "l.sqlite3"))
    blocks = re.split(r"^Q: ", out, flags=re.MULTILINE)[1:]
    assert len(blocks) == 2
    kept_ids = []
    for block in blocks:
        docs = re.findall(r"kept\s+(\d+)/(\d+)\s+tokens of (tf-\d+) \(([^,]+), ([^)]+)\): (.*)", block)
        assert docs, block
        for kept, original, doc_id, source, section, _text in docs:
            assert _FERRY_DOCS[doc_id] == (source, section)  # every document kept its own metadata
            assert 0 < int(kept) <= int(original)
        kept_ids.append({d[2]: d[5] for d in docs})
    assert "55 minutes" in kept_ids[0]["tf-01"]
    assert "Ilse Varga" in kept_ids[1]["tf-10"]
    cuts = re.findall(r"compression: (\d+) -> (\d+) tokens", out)
    assert len(cuts) == 2 and all(int(a) <= 45 < int(b) for b, a in cuts)
    assert "│ compression" in out and "smollm2-135m-instruct" in out
    ledger = CostLedger(tmp_path / "l.sqlite3")
    assert len(ledger.calls()) == 2
    assert [e.layer for e in ledger.savings()] == ["compression", "compression"]
    ledger.close()


_GARDEN_DOCS = {  # doc_id -> (source, section), as written in examples/llamaindex_rag_query_engine.py
    "bg-01": ("visiting.md", "hours"), "bg-02": ("visiting.md", "tickets"),
    "bg-03": ("collections.md", "glasshouses"), "bg-04": ("collections.md", "alpine"),
    "bg-05": ("collections.md", "trees"), "bg-06": ("events.md", "tours"), "bg-07": ("events.md", "night"),
    "bg-08": ("rules.md", "visitors"), "bg-09": ("services.md", "access"), "bg-10": ("services.md", "cafe"),
}


def test_llamaindex_rag_query_engine_example(tmp_path: Path, smollm2_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             run_example_here: Callable[..., str]) -> None:
    from llama_index.core import Settings

    from lean_core import CostLedger

    # The example sets LlamaIndex's process-wide Settings.llm / embed_model: undone after the test.
    monkeypatch.setattr(Settings, "_llm", Settings._llm)
    monkeypatch.setattr(Settings, "_embed_model", Settings._embed_model)
    out = run_example_here("llamaindex_rag_query_engine.py", "--ledger", str(tmp_path / "l.sqlite3"),
                           "--cache", str(tmp_path / "c.sqlite3"))
    answers = re.findall(r"^A \((model|cache)\): (.*)$", out, flags=re.MULTILINE)
    assert [served for served, _ in answers] == ["model", "model", "cache"]
    assert answers[2][1] == answers[0][1]  # the repeated question got the first answer back
    blocks = re.split(r"^Q: ", out, flags=re.MULTILINE)[1:]
    sources = []
    for block in blocks[:3]:
        nodes = re.findall(r"score (-?\d\.\d+)\s+(bg-\d+) \(([^,]+), ([^)]+)\): (.*)", block)
        assert nodes, block
        for _score, doc_id, source, section, _text in nodes:
            assert _GARDEN_DOCS[doc_id] == (source, section)  # every node kept its own metadata
        scores = [float(n[0]) for n in nodes]
        assert scores == sorted(scores, reverse=True)
        sources.append({n[1]: n[4] for n in nodes})
    assert "6 pm" in sources[0]["bg-01"] and "75 minutes" in sources[1]["bg-06"]
    assert "exact hits 1," in out
    assert "│ compression" in out and "│ cache" in out
    ledger = CostLedger(tmp_path / "l.sqlite3")
    assert len(ledger.calls()) == 2  # the cache hit did not reach the model
    cache_events = [e for e in ledger.savings() if e.layer == "cache"]
    assert [e.cache_hit for e in cache_events] == [False, False, True]
    assert sum(1 for e in ledger.savings() if e.layer == "compression") == 3
    ledger.close()


def test_cached_agent_example(tmp_path: Path, smollm2_path: Path, run_example_here: Callable[..., str]) -> None:
    from lean_core import CostLedger

    out = run_example_here("cached_agent.py", "--ledger", str(tmp_path / "l.sqlite3"),
                           "--cache", str(tmp_path / "c.sqlite3"))
    step = r"(?:model|cache exact|cache semantic)"
    rows = re.findall(rf"^\[(\w+)\s*\] ({step}(?: \+ {step})*)\s+[\d.]+s  (.*)$", out, flags=re.MULTILINE)
    assert [tenant for tenant, _, _ in rows] == ["acme"] * 6 + ["globex"]
    assert [served for _, served, _ in rows] == [
        # The 135M model's text answers run into their budget ("length"), and a cut answer is
        # never cached: a repeat is served its tool-call step, and the model answers again.
        "model + model",
        "cache exact + model",          # the same question: the tool call from the cache, the tool runs
        "cache semantic + model",       # reworded: step 1 by meaning; step 2 holds a tool result: exact only
        "model + model",
        "cache exact + model",
        "model + model",                # another room: another tool result, a miss
        "model + model"]                # another tenant never gets acme's entries
    tools = re.findall(r"^ {9}tool (\w+)\((.*)\)(?: \[compressed (\d+) -> (\d+) tokens\])?$", out,
                       flags=re.MULTILINE)
    # the tools ran on every question, cache hits included
    assert [name for name, *_ in tools] == ["search_faq"] * 3 + ["room_status"] * 3 + ["search_faq"]
    assert all(int(before) > int(after) for name, _, before, after in tools if name == "search_faq")
    assert "B4" in tools[3][1] and "C2" in tools[5][1]
    cached = [int(n) for n in re.findall(r"prefix-cached input tokens: (\d+)", out)]
    assert cached[0] > 0 and cached[3] > 0  # step 2 reuses step 1's prefix in vLLM's cache
    assert "│ cache" in out and "│ compression" in out and "smollm2-135m-instruct" in out
    ledger = CostLedger(tmp_path / "l.sqlite3")
    acme, globex = ledger.calls(tenant="acme"), ledger.calls(tenant="globex")
    assert len(acme) == 9 and len(globex) == 2  # one row per paid step; cache hits are not calls
    assert [c.tags for c in globex] == [("agent", "step:1"), ("agent", "step:2")]
    hits = [e.cache_hit for e in ledger.savings(tenant="acme") if e.layer == "cache"]
    assert hits.count(True) == 3
    assert {e.layer for e in ledger.savings(tenant="acme")} >= {"cache", "compression", "output"}
    ledger.close()


def test_otel_export_example(tmp_path: Path) -> None:
    out = _run_example("otel_export.py", "--cache", str(tmp_path / "c.sqlite3"), cwd=tmp_path)
    assert out.count("\nA: ") + out.startswith("A: ") == 4
    assert _int(r"(\d+) spans exported", out) == 7  # 3 model calls + 4 cache lookups (3 misses, 1 hit)
    blocks = re.split(r"^span ", out, flags=re.MULTILINE)[1:]
    calls = [b for b in blocks if b.startswith("'chat o4-mini'")]
    savings = [b for b in blocks if b.startswith("'lean.savings cache'")]
    assert len(calls) == 3 and len(savings) == 4
    cached = [_int(r"gen_ai\.usage\.cache_read\.input_tokens = (\d+)", b) for b in calls]
    assert cached[0] == 0 and cached[1] > 0 and cached[1] == cached[2]  # the system prompt, from the 2nd call on
    assert all(_int(r"gen_ai\.usage\.reasoning\.output_tokens = (\d+)", b) == 64 for b in calls)
    assert all("gen_ai.provider.name = 'openai'" in b and "lean.tenant = 'acme'" in b for b in calls)
    (hit,) = [b for b in savings if "lean.cache_hit = True" in b]
    # the hit saved the whole first call: its input and output tokens, at o4-mini's prices
    assert _int(r"lean\.tokens_saved = (\d+)", hit) == (_int(r"gen_ai\.usage\.input_tokens = (\d+)", calls[0])
                                                         + _int(r"gen_ai\.usage\.output_tokens = (\d+)", calls[0]))
    saved = float(re.search(r"lean\.cost_saved_usd = ([\d.e-]+)", hit).group(1))  # type: ignore[union-attr]
    assert saved == float(re.search(r"lean\.cost_usd = ([\d.e-]+)", calls[0]).group(1))  # type: ignore[union-attr]
    assert "ledger: 3 calls, 4 savings records" in out
