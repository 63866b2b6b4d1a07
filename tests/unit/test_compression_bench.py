"""The compression benchmark harness: BM25, the NQ passage builder, the metrics and an end-to-end run."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from lean_benchmarks._bm25 import BM25
from lean_benchmarks.compression_bench import (
    BenchRow,
    TruncateCompressor,
    build_nq_items,
    contains_answer,
    join_context,
    load_items,
    longbench_question,
    normalize,
    run_compression_bench,
)
from lean_cli import main
from lean_core.compression.base import Compressor, ContextInput
from lean_core.compression.types import CompressionBudget, CompressionResult
from lean_core.errors import InvalidParameterError
from lean_core.tokens import TokenCounter
from tests.conftest import SHARED_DATA

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QA = SHARED_DATA / "qa"
SHARED_FILES = ("squad_v2_dev.jsonl", "nq_open_oracle.jsonl", "hotpotqa_dev_distractor.jsonl",
                "minilongbench_en.jsonl")
needs_shared = pytest.mark.skipif(
    not all((QA / f).is_file() for f in SHARED_FILES),
    reason=f"shared evaluation data not found under {QA} (it lives beside the checkout, not in it)")
ROW_KEYS = {"dataset", "method", "target_ratio", "achieved_ratio", "kept_share", "answer_retention",
            "tokens_per_s", "items", "support_retention", "budget_met_share", "answerable_items",
            "impossible_items", "accuracy_original", "accuracy_compressed"}
FILLER = " ".join(f"Filler sentence number {k} talks about nothing in particular." for k in range(30))


class FirstHalf(Compressor):
    """Keeps the first half of the characters: a compressor whose output the test can predict."""

    name = "first-half"

    def __init__(self) -> None:
        self.calls = 0

    def compress(self, context: ContextInput, *, budget: CompressionBudget,
                 question: str | None = None,
                 titles: Sequence[str | None] | None = None) -> CompressionResult:
        self.calls += 1
        text = join_context(context)
        kept = text[: len(text) // 2]
        return CompressionResult(text=kept, method=self.name, original_tokens=len(text.split()),
                                 compressed_tokens=len(kept.split()), target_tokens=1, tokenizer="words",
                                 estimated_counts=True, budget_met=True)


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _nq_row(question: str, answers: list[str], title: str, text: str) -> dict[str, Any]:
    return {"question": question, "answers": answers,
            "ctxs": [{"title": title, "text": text, "hasanswer": True, "isgold": True}]}


NQ_ROWS = [
    _nq_row("who painted the mona lisa", ["Leonardo da Vinci"], "Mona Lisa",
            "The Mona Lisa is a portrait painted by Leonardo da Vinci in Florence."),
    _nq_row("where is the mona lisa displayed", ["the Louvre"], "Louvre",
            "The Mona Lisa is displayed at the Louvre in Paris since 1797."),
    _nq_row("when was the mona lisa stolen", ["1911"], "Mona Lisa theft",
            "The Mona Lisa was stolen from its museum in 1911 by Vincenzo Peruggia."),
    _nq_row("how tall is mount everest", ["8,849 metres"], "Mount Everest",
            "Mount Everest is 8,849 metres tall, the highest mountain above sea level."),
    _nq_row("who painted the last supper", ["Leonardo da Vinci"], "The Last Supper",
            "The Last Supper is a mural by Leonardo da Vinci in Milan."),
    _nq_row("what is the capital of peru", ["Lima"], "Peru", "Lima is the capital and largest city of Peru."),
    _nq_row("largest desert in the world", ["Antarctica"], "Desert",
            "The largest desert is Antarctica; the largest hot desert is the Sahara."),
]


# -- BM25 -----------------------------------------------------------------------------------------
def test_bm25_ranks_the_relevant_passage_first() -> None:
    docs = ["The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
            "Photosynthesis converts light energy into chemical energy in plants.",
            "The Great Wall of China stretches across northern China.",
            "Bananas are botanically berries and grow in tropical climates."]
    bm25 = BM25(docs)
    assert bm25.rank("how do plants convert light into chemical energy")[0] == 1
    assert bm25.rank("which tower stands in Paris")[0] == 0
    ranking = bm25.rank("great wall")
    assert ranking[0] == 2 and sorted(ranking) == [0, 1, 2, 3]
    assert bm25.scores("quantum chromodynamics") == {}
    with pytest.raises(ValueError, match="b"):
        BM25(docs, b=1.5)


# -- the NQ passage builder -----------------------------------------------------------------------
def test_hard_distractors_never_contain_a_gold_answer_and_are_lexically_close() -> None:
    items = build_nq_items(NQ_ROWS, passages=4)
    assert len(items) == len(NQ_ROWS)
    for i, item in enumerate(items):
        assert isinstance(item.context, tuple) and item.gold_position is not None
        gold = item.context[item.gold_position]
        assert gold.startswith(NQ_ROWS[i]["ctxs"][0]["title"])
        for k, passage in enumerate(item.context):
            if k != item.gold_position:
                assert not any(normalize(a) in normalize(passage) for a in item.answers), (i, passage)
    # the Mona Lisa questions get each other's passages first, except those holding their answer
    louvre = items[1]
    others = [p for k, p in enumerate(louvre.context) if k != louvre.gold_position]
    assert others[0].startswith("Mona Lisa") and all("Louvre:" not in p for p in others)
    # "who painted the mona lisa": the Last Supper passage also names Leonardo, so it is excluded
    assert not any(p.startswith("The Last Supper") for p in items[0].context)


def test_passage_builder_is_deterministic_and_moves_the_gold_passage() -> None:
    first = build_nq_items(NQ_ROWS, passages=5)
    assert first == build_nq_items(NQ_ROWS, passages=5)
    assert len({item.gold_position for item in first}) > 1
    assert build_nq_items(NQ_ROWS, passages=5, limit=2) == first[:2]
    single = build_nq_items(NQ_ROWS, passages=None)
    assert all(len(item.context) == 1 and item.gold_position == 0 for item in single)
    with pytest.raises(InvalidParameterError):
        build_nq_items(NQ_ROWS, passages=0)


@needs_shared
def test_shared_nq_contexts_have_twenty_passages_and_no_leaked_answers() -> None:
    kind, items = load_items(QA / "nq_open_oracle.jsonl", passages=20, limit=25)
    assert kind == "nq" and len(items) == 25
    for item in items:
        assert len(item.context) == 20 and item.gold_position is not None
        assert contains_answer(item.context[item.gold_position], item.answers)
        for k, passage in enumerate(item.context):
            if k != item.gold_position:
                assert not any(normalize(a) in normalize(passage) for a in item.answers)


# -- matching and parsing -------------------------------------------------------------------------
def test_answer_matching_is_case_and_space_insensitive_and_word_bounded() -> None:
    assert contains_answer("It was  built by\nLeonardo   DA vinci.", ["leonardo da vinci"])
    assert not contains_answer("They sailed north.", ["no"])
    assert contains_answer("The answer is no.", ["No"])
    assert not contains_answer("anything", ["", "  "])


def test_longbench_question_extraction() -> None:
    assert longbench_question("passages...\n\nQuestion: Who won?\nAnswer:") == "Who won?"
    assert longbench_question("text\nQuestion:\nWhich film?\nAnswer:\n") == "Which film?"
    assert longbench_question("transcript\n\nQuery: Summarize the talk.\nAnswer:") == "Summarize the talk."
    assert longbench_question("report\n\nNow, write a one-page summary of the report.\n\nSummary:") == (
        "Now, write a one-page summary of the report.")


def test_truncate_keeps_head_and_tail_within_budget() -> None:
    counter = TokenCounter()
    text = "HEADWORD " + FILLER + " TAILWORD"
    budget = CompressionBudget(ratio=0.25, target_model="gpt-4o")
    result = TruncateCompressor(counter=counter).compress(text, budget=budget)
    assert result.text.startswith("HEADWORD") and result.text.endswith("TAILWORD")
    assert result.compressed_tokens == counter.count(result.text, "gpt-4o").tokens <= result.target_tokens
    assert result.target_tokens - result.compressed_tokens <= 12  # the search uses nearly all the budget
    assert result.budget_met and result.ratio > 3.5
    whole = TruncateCompressor().compress(["short", "text"], budget=CompressionBudget(ratio=1.0))
    assert whole.text == "short\n\ntext" and whole.ratio == 1.0


# -- metrics --------------------------------------------------------------------------------------
def test_metrics_on_a_first_half_compressor(tmp_path: Path) -> None:
    squad = _write_jsonl(tmp_path / "squad.jsonl", [
        {"id": "early", "context": "Paris is the capital. " + FILLER, "question": "capital?",
         "answers": ["Paris"], "is_impossible": False},
        {"id": "late", "context": FILLER + " The river is the Seine.", "question": "river?",
         "answers": ["the Seine", "Seine"], "is_impossible": False},
        {"id": "impossible", "context": FILLER, "question": "moon?", "answers": [""], "is_impossible": True},
        {"id": "absent", "context": FILLER, "question": "king?", "answers": ["Louis"], "is_impossible": False},
    ])
    hotpot = _write_jsonl(tmp_path / "hotpot.jsonl", [
        {"_id": "h1", "question": "q1", "answer": "Alpha",
         "supporting_facts": [["A", 0], ["A", 1], ["A", 9]],  # index 9 does not exist: ignored
         "context": [["A", ["Alpha is first.", " Beta is second."]], ["B", [FILLER]]]},
        {"_id": "h2", "question": "q2", "answer": "Omega",
         "supporting_facts": [["A", 0], ["C", 0]],
         "context": [["A", ["Alpha is first."]], ["B", [FILLER]], ["C", ["Omega is last."]]]},
    ])
    longbench = _write_jsonl(tmp_path / "longbench.jsonl", [
        {"task": "2wikimqa", "idx": "0", "answers": ["Ann Smith"],
         "prompt": f"Ann Smith was born in 1900. {FILLER}\n\nQuestion: Who was born first, Ann Smith or Bob?\nAnswer:"},
        {"task": "hotpotqa", "idx": "1", "answers": ["Lyon"],
         "prompt": f"The author lived in Lyon. {FILLER}\n\nQuestion: Where did the author live?\nAnswer:"},
    ])
    fake = FirstHalf()
    result = run_compression_bench([squad, hotpot, longbench], ratios=[0.5], methods=[fake],
                                   show_progress=False, out=tmp_path / "out" / "bench.json")
    rows = {row.dataset: row for row in result.rows}
    assert set(rows) == {"squad", "hotpot", "longbench"} and result.methods == ["first-half"]
    assert fake.calls == 8 + 1  # every item once, plus one untimed warm-up

    lb = rows["longbench"]  # the first question names its answer: counted apart, not scored
    assert (lb.items, lb.answerable_items, lb.answer_in_question_items, lb.answer_retention) == (2, 1, 1, 1.0)

    s = rows["squad"]
    assert (s.items, s.answerable_items, s.impossible_items) == (4, 2, 1)
    assert s.answer_retention == 0.5  # "Paris" is in the first half, "the Seine" is not

    counter = TokenCounter()
    squad_texts = [json.loads(line)["context"] for line in squad.read_text().splitlines()]
    originals = [counter.count(t, "gpt-4o").tokens for t in squad_texts]
    halves = [counter.count(t[: len(t) // 2], "gpt-4o").tokens for t in squad_texts]
    assert s.original_tokens == sum(originals) and s.compressed_tokens == sum(halves)
    assert s.achieved_ratio == pytest.approx(statistics.fmean(o / h for o, h in zip(originals, halves, strict=True)))
    assert s.kept_share == pytest.approx(statistics.fmean(h / o for o, h in zip(originals, halves, strict=True)))
    assert s.budget_met_share == pytest.approx(
        sum(h <= max(1, int(o * 0.5)) for o, h in zip(originals, halves, strict=True)) / 4)
    assert s.tokens_per_s is not None and s.tokens_per_s > 0 and s.seconds > 0

    h = rows["hotpot"]
    assert (h.items, h.support_items) == (2, 2)
    assert h.support_retention == 0.5  # item 1 keeps paragraph A whole; item 2 loses "Omega is last."
    assert h.answer_retention == 0.5
    assert s.support_retention is None and s.accuracy_original is None

    saved = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert {r["dataset"] for r in saved["rows"]} == {"squad", "hotpot", "longbench"}
    assert (tmp_path / "out" / "bench.png").read_bytes()[:8] == PNG_MAGIC


def test_bad_options_name_the_parameter(tmp_path: Path) -> None:
    data = _write_jsonl(tmp_path / "nq.jsonl", NQ_ROWS)
    with pytest.raises(InvalidParameterError, match="method"):
        run_compression_bench([data], methods=["no-such-method"], show_progress=False)
    with pytest.raises(InvalidParameterError, match="ratios"):
        run_compression_bench([data], ratios=[1.5], show_progress=False)
    with pytest.raises(InvalidParameterError, match="data"):
        run_compression_bench([tmp_path / "missing.jsonl"], show_progress=False)
    with pytest.raises(InvalidParameterError, match="data file"):
        run_compression_bench([_write_jsonl(tmp_path / "odd.jsonl", [{"x": 1}])], show_progress=False)


# -- end to end -----------------------------------------------------------------------------------
@needs_shared
def test_end_to_end_truncate_on_every_shared_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "compression.json"
    argv = ["bench", "compression", "--ratio", "0.33", "--ratio", "0.25", "--method", "truncate",
            "--passages", "20", "--limit", "3", "--out", str(out)]
    for name in SHARED_FILES:
        argv += ["--data", str(QA / name)]
    assert main(argv) == 0
    assert "written:" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["benchmark"] == "compression" and saved["target_model"] == "gpt-4o"
    assert [d["kind"] for d in saved["datasets"]] == ["squad", "nq", "hotpotqa", "longbench"]
    assert [d["passages"] for d in saved["datasets"]] == [None, 20, 10, None]
    assert len(saved["rows"]) == 4 * 2
    for row in saved["rows"]:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["method"] == "truncate" and row["items"] == 3
        assert row["achieved_ratio"] > 2.5 and row["budget_met_share"] == 1.0
        assert row["kept_share"] <= row["target_ratio"] + 1e-9
        assert row["answer_retention"] is None or 0.0 <= row["answer_retention"] <= 1.0
        assert (row["support_retention"] is not None) == row["dataset"].startswith("hotpotqa")
    assert BenchRow.__dataclass_fields__.keys() == set(saved["rows"][0])
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC


def test_accuracy_asks_the_chat_model_with_original_and_compressed_contexts(tmp_path: Path) -> None:
    from langchain_core.language_models.chat_models import SimpleChatModel

    class Echo(SimpleChatModel):
        """Answers with its whole prompt, so a reply is right exactly when the context holds the answer."""

        prompts: list[str] = []  # noqa: RUF012

        @property
        def _llm_type(self) -> str:
            return "echo"

        def _call(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> str:
            self.prompts.append(str(messages[-1].content))
            return str(messages[-1].content)

    squad = _write_jsonl(tmp_path / "squad.jsonl", [
        {"id": "early", "context": "Paris is the capital. " + FILLER, "question": "capital?",
         "answers": ["Paris"], "is_impossible": False},
        {"id": "late", "context": FILLER + " The river is the Seine.", "question": "river?",
         "answers": ["Seine"], "is_impossible": False},
        {"id": "impossible", "context": FILLER, "question": "moon?", "answers": [""], "is_impossible": True},
    ])
    echo = Echo()
    result = run_compression_bench([squad], ratios=[0.5], methods=[FirstHalf()], accuracy=True,
                                   chat_model=echo, show_progress=False)
    (row,) = result.rows
    assert (row.accuracy_items, row.accuracy_original, row.accuracy_compressed) == (2, 1.0, 0.5)
    assert len(echo.prompts) == 4 and all(p.endswith("Answer briefly.") for p in echo.prompts)
