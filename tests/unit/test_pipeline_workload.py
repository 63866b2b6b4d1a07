"""`bench pipeline`'s workload: NQ RAG items and chat prompts, interleaved in proportion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lean_benchmarks.pipeline_bench import MAX_STREAM_PROMPT_CHARS, load_pipeline_workload
from lean_core.errors import InvalidParameterError
from tests.conftest import SHARED_DATA

NQ = SHARED_DATA / "qa" / "nq_open_oracle.jsonl"


@pytest.mark.skipif(not NQ.is_file(), reason="needs ../shared/data")
def test_rag_and_chat_items_interleave_and_long_or_odd_prompts_are_handled(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"prompt": "first\u2028line"}, {"prompt": "x" * (MAX_STREAM_PROMPT_CHARS + 1)}, {"prompt": "  "},
            {"prompt": "second"}, {"prompt": "third"}]
    prompts.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    items, counts = load_pipeline_workload([NQ, prompts], rag_limit=3, stream_limit=3, passages=5)
    assert counts == {"rag": 3, "chat": 3}
    assert [bool(i.context) for i in items] == [True, False, True, False, True, False]
    assert [i.question for i in items if not i.context] == ["first\u2028line", "second", "third"]
    assert all(len(i.context) == 5 and i.answers for i in items if i.context)


def test_unknown_or_missing_files_are_named(tmp_path: Path) -> None:
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"text": "no prompt field"}\n', encoding="utf-8")
    with pytest.raises(InvalidParameterError, match="data"):
        load_pipeline_workload([odd], rag_limit=1, stream_limit=1, passages=2)
    with pytest.raises(InvalidParameterError, match="data"):
        load_pipeline_workload([tmp_path / "missing.jsonl"], rag_limit=1, stream_limit=1, passages=2)


@pytest.mark.skipif(not NQ.is_file(), reason="needs ../shared/data")
def test_split_picks_one_half_of_the_nq_questions() -> None:
    from lean_benchmarks.budget_data import split_of

    held_out, _ = load_pipeline_workload([NQ], rag_limit=8, stream_limit=1, passages=2)
    dev, _ = load_pipeline_workload([NQ], rag_limit=8, stream_limit=1, passages=2, split="fit")
    assert [split_of(i.question) for i in held_out] == ["eval"] * 8
    assert [split_of(i.question) for i in dev] == ["fit"] * 8
    assert not {i.question for i in held_out} & {i.question for i in dev}
