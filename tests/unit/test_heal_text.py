"""The GPU healing helpers' text rules: Wikipedia-style passages from the QA data, never WikiText."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("build_heal_text", REPO / "benchmarks" / "gpu" / "build_heal_text.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")


def test_healing_passages_are_the_qa_passages_each_once(tmp_path: Path) -> None:
    shared = {"title": "Tern", "text": "Terns are seabirds."}
    _write(tmp_path / "nq_open_oracle.jsonl", [{"ctxs": [shared, {"title": "Gull", "text": "Gulls are loud."}]},
                                               {"ctxs": [shared]}])
    _write(tmp_path / "squad_v2_dev.jsonl", [{"context": "The Rhine flows north."}, {"context": "The Rhine flows north."}])
    _write(tmp_path / "hotpotqa_dev_distractor.jsonl", [{"context": [["Oslo", ["Oslo is a city.", " It is old."]]]}])
    passages = _module().healing_passages(tmp_path)
    assert passages == ["Tern\nTerns are seabirds.", "Gull\nGulls are loud.", "The Rhine flows north.",
                        "Oslo\nOslo is a city. It is old."]


def test_gpu_healing_refuses_the_evaluation_text_by_name(tmp_path: Path) -> None:
    for name in ("wikitext-2-raw-v1.test.joined.txt", "wiki.valid.tokens"):
        text = tmp_path / name
        text.write_text("Some text.", encoding="utf-8")
        done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu" / "heal_pruned.py"), "--teacher", "x",
                               "--pruned", "x", "--text", str(text), "--out", str(tmp_path / "o")],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode != 0 and "WikiText" in done.stderr
