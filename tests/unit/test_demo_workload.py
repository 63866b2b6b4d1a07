"""lean_benchmarks.demo.workload: the bundled knowledge base and question stream, and answer scoring."""

from __future__ import annotations

import json
import re
import tomllib
from collections import Counter
from fnmatch import fnmatch
from pathlib import Path

import pytest

from lean_benchmarks.demo.workload import (
    DEFAULT_PASSAGES,
    DEFAULT_QUESTIONS,
    KnowledgeDoc,
    StreamQuestion,
    WorkloadFileError,
    answer_is_correct,
    builtin_kb_path,
    builtin_questions_path,
    expected_cache_hits,
    load_demo_kb,
    load_demo_questions,
)
from lean_core.errors import InvalidParameterError

KB = load_demo_kb()
QUESTIONS = load_demo_questions()
DOCS = {doc.id: doc for doc in KB}


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.casefold()))


def _similarity(a: str, b: str) -> float:
    wa, wb = _words(a), _words(b)
    return len(wa & wb) / len(wa | wb)


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.casefold()))


def test_knowledge_base_loads_with_realistic_documents() -> None:
    assert 20 <= len(KB) <= 30
    assert [doc.id for doc in KB] == [f"kb-{n:02d}" for n in range(1, len(KB) + 1)]
    for doc in KB:
        assert 120 <= len(doc.text.split()) <= 350, doc.id
    titles = [doc.title for doc in KB]
    assert len(set(titles)) == len(titles)


def test_knowledge_base_repeats_boilerplate_paragraphs() -> None:
    paragraphs = Counter(p for doc in KB for p in doc.text.split("\n\n"))
    repeated = [p for p, count in paragraphs.items() if count >= 2]
    assert len(repeated) >= 2
    assert max(paragraphs.values()) >= 10  # the publication disclaimer


def test_question_stream_loads_in_arrival_order() -> None:
    assert 80 <= len(QUESTIONS) <= 100
    assert [q.id for q in QUESTIONS] == [f"q-{n:03d}" for n in range(1, len(QUESTIONS) + 1)]
    assert all(isinstance(q, StreamQuestion) for q in QUESTIONS)


def test_every_first_gold_answer_is_verbatim_in_a_cited_document() -> None:
    for q in QUESTIONS:
        assert set(q.doc_ids) <= DOCS.keys(), q.id
        texts = [DOCS[doc_id].text for doc_id in q.doc_ids]
        assert any(q.answers[0] in text for text in texts), (q.id, q.answers[0])
        assert any(answer_is_correct(text, q.answers[:1]) for text in texts), q.id
        assert all(len(answer.split()) <= 6 for answer in q.answers), q.id


def test_repeats_and_paraphrases_follow_an_earlier_question_of_their_group() -> None:
    earlier: dict[str, list[StreamQuestion]] = {}
    for q in QUESTIONS:
        group = earlier.setdefault(q.group, [])
        if q.kind in ("new", "lookalike"):
            assert not group, q.id
        else:
            assert group, q.id
            assert all(p.answers == q.answers and p.doc_ids == q.doc_ids for p in group), q.id
            same_text = [p for p in group if _norm(p.question) == _norm(q.question)]
            if q.kind == "repeat":
                assert same_text, q.id
            else:
                assert not same_text and all(_similarity(p.question, q.question) < 0.7 for p in group), q.id
        group.append(q)


def test_lookalikes_resemble_an_earlier_question_but_have_other_answers() -> None:
    for index, q in enumerate(QUESTIONS):
        if q.kind != "lookalike":
            continue
        closest = max(QUESTIONS[:index], key=lambda p: _similarity(p.question, q.question))
        assert _similarity(closest.question, q.question) >= 0.6, q.id
        assert closest.group != q.group
        assert not answer_is_correct(" ".join(closest.answers), q.answers[:1]), q.id
        assert not answer_is_correct(" ".join(q.answers), closest.answers[:1]), q.id


def test_kind_and_tenant_counts() -> None:
    kinds = Counter(q.kind for q in QUESTIONS)
    assert 40 <= kinds["new"] <= 50
    assert 16 <= kinds["repeat"] <= 24
    assert 12 <= kinds["paraphrase"] <= 18
    assert 8 <= kinds["lookalike"] <= 13
    tenants = Counter(q.tenant for q in QUESTIONS)
    assert set(tenants) == {"acme", "globex"}
    assert tenants["acme"] >= 0.7 * len(QUESTIONS) and tenants["globex"] >= 10


def test_some_identical_questions_come_from_both_tenants_and_the_second_must_miss() -> None:
    hits = expected_cache_hits(QUESTIONS)
    first_asker: dict[str, str] = {}
    crossed = 0
    for q, hit in zip(QUESTIONS, hits, strict=True):
        text = _norm(q.question)
        if text in first_asker and first_asker[text] != q.tenant and not hit:
            crossed += 1
        first_asker.setdefault(text, q.tenant)
    assert crossed >= 3


def test_the_first_24_questions_exercise_the_cache() -> None:
    head = load_demo_questions(limit=24)
    assert head == QUESTIONS[:24]
    kinds = Counter(q.kind for q in head)
    assert kinds["repeat"] >= 3 and kinds["paraphrase"] >= 2 and kinds["lookalike"] >= 2
    hits = expected_cache_hits(head)
    assert sum(hits) >= 6
    assert any(q.kind == "repeat" and not hit for q, hit in zip(head, hits, strict=True))


def test_the_default_demo_workload_keeps_every_kind_of_question() -> None:
    head = load_demo_questions(limit=DEFAULT_QUESTIONS)
    assert len(head) == DEFAULT_QUESTIONS < len(QUESTIONS)
    kinds = Counter(q.kind for q in head)
    assert min(kinds[k] for k in ("repeat", "paraphrase", "lookalike")) >= 5
    assert len({q.tenant for q in head}) == 2 and sum(expected_cache_hits(head)) >= 15


def test_demo_cli_defaults_and_limit_all() -> None:
    from lean_cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["demo"])
    assert (args.limit, args.passages) == (None, DEFAULT_PASSAGES)  # run_demo picks the stream's default
    assert parser.parse_args(["demo", "--limit", "all"]).limit == "all"
    assert parser.parse_args(["demo", "--limit", "24"]).limit == 24
    for bad in ("0", "some"):
        with pytest.raises(SystemExit):
            parser.parse_args(["demo", "--limit", bad])


@pytest.mark.parametrize(("option", "value"), [("passages", 0), ("passages", -2), ("passages", True),
                                               ("passages", 1.5), ("limit", 0), ("limit", "some"), ("limit", False)])
def test_demo_rejects_bad_options_before_any_work(tmp_path: Path, option: str, value: object) -> None:
    from lean_benchmarks.demo.runner import run_demo

    with pytest.raises(InvalidParameterError) as caught:
        run_demo(out_dir=tmp_path / "out", show_progress=False, **{option: value})  # type: ignore[arg-type]
    assert caught.value.parameter == option
    assert not (tmp_path / "out").exists()


def test_expected_cache_hits_is_per_tenant_and_group() -> None:
    def q(n: int, group: str, tenant: str) -> StreamQuestion:
        return StreamQuestion(id=f"q{n}", question="x", answers=("1",), doc_ids=("kb-01",), group=group,
                              kind="new", tenant=tenant)

    stream = [q(1, "g1", "a"), q(2, "g1", "a"), q(3, "g1", "b"), q(4, "g2", "a"), q(5, "g1", "b")]
    assert expected_cache_hits(stream) == [False, True, False, False, True]


@pytest.mark.parametrize(("answer", "gold", "expected"), [
    ("Refunds are possible within 28 days.", ["28 days"], True),
    ("THE REFUND WINDOW IS 28 DAYS!", ["28 days"], True),
    ("within twenty-eight days", ["28 days", "twenty-eight days"], True),
    ("It has 1300 spaces.", ["130"], False),
    ("Top speed: 130 km/h", ["1300"], False),
    ("It has 1,300 spaces.", ["1300"], True),
    ("It has 1300 spaces.", ["1,300"], True),
    ("It costs £14.80.", ["£4.80"], False),
    ("It costs £9.", ["£9.00"], True),
    ("The first train leaves at 5:42 am.", ["05:42"], True),
    ("The code is kc-stu.", ["KC-STU"], True),
    ("The code is KC-STD.", ["KC-STU"], False),
    ("She is Marguerite  Oduya.", ["the Marguerite Oduya"], True),
    ("Oduya", ["Marguerite Oduya"], False),
    ("Oduya, Marguerite", ["Marguerite Oduya"], False),
    ("4 zones cost more than 3", ["3 zones"], False),
    ("Reach them at lostproperty@kestrelcoastrail.example", ["lostproperty@kestrelcoastrail.example"], True),
    ("anything", ["", "the", "?"], False),
    ("anything", [], False),
])
def test_answer_is_correct(answer: str, gold: list[str], expected: bool) -> None:
    assert answer_is_correct(answer, gold) is expected


GOOD_ROW = {"id": "q-001", "question": "Q?", "answers": ["1"], "doc_ids": ["kb-01"], "group": "g-01",
            "kind": "new", "tenant": "acme"}


def _write(tmp_path: Path, rows: list[object]) -> Path:
    path = tmp_path / "stream.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("second", "field"), [
    ({**GOOD_ROW, "id": "q-002", "answers": []}, "answers"),
    ({**GOOD_ROW, "id": "q-002", "kind": "duplicate"}, "kind"),
    ({k: v for k, v in GOOD_ROW.items() if k != "tenant"} | {"id": "q-002"}, "tenant"),
    ({**GOOD_ROW, "id": "q-002", "colour": "red"}, "colour"),
    ({**GOOD_ROW}, "id"),
    ({**GOOD_ROW, "id": "q-002", "kind": "repeat", "group": "g-09"}, "group"),
    ({**GOOD_ROW, "id": "q-002"}, "group"),  # a second "new" row may not reuse group g-01
    ("{not json", "<row>"),
])
def test_bad_rows_name_the_file_line_and_field(tmp_path: Path, second: object, field: str) -> None:
    path = _write(tmp_path, [GOOD_ROW, "", second])
    with pytest.raises(WorkloadFileError) as info:
        load_demo_questions(path)
    assert isinstance(info.value, InvalidParameterError)
    assert (info.value.line, info.value.field) == (3, field)
    assert "stream.jsonl line 3" in str(info.value) and repr(field) in str(info.value)


def test_bad_knowledge_doc_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "kb.jsonl"
    path.write_text(json.dumps({"id": "kb-01", "title": "T", "text": ""}) + "\n", encoding="utf-8")
    with pytest.raises(WorkloadFileError, match=r"kb\.jsonl line 1 field 'text'"):
        load_demo_kb(path)


def test_custom_files_load(tmp_path: Path) -> None:
    path = _write(tmp_path, [GOOD_ROW, {**GOOD_ROW, "id": "q-002", "kind": "repeat"}])
    assert [q.kind for q in load_demo_questions(str(path))] == ["new", "repeat"]
    kb = tmp_path / "kb.jsonl"
    kb.write_text(json.dumps({"id": "d", "title": "T", "text": "body"}) + "\n", encoding="utf-8")
    assert load_demo_kb(kb) == [KnowledgeDoc(id="d", title="T", text="body")]


@pytest.mark.parametrize("limit", [0, -1, True, 2.5])
def test_limit_must_be_a_positive_integer(limit: object) -> None:
    with pytest.raises(InvalidParameterError, match="limit"):
        load_demo_questions(limit=limit)  # type: ignore[arg-type]


def test_missing_or_empty_files_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="existing JSON Lines file"):
        load_demo_kb(tmp_path / "absent.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(InvalidParameterError, match="at least one row"):
        load_demo_questions(empty)


def test_rows_are_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        QUESTIONS[0].kind = "repeat"  # type: ignore[misc]


def test_bundled_files_are_package_data() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["lean_benchmarks.demo"]
    for path in (builtin_kb_path(), builtin_questions_path()):
        assert path.is_file()
        relative = path.relative_to(Path(__file__).parents[2] / "benchmarks" / "demo").as_posix()
        assert any(fnmatch(relative, pattern) for pattern in patterns), relative


def test_demo_table_never_prints_minus_zero(tmp_path: Path) -> None:
    from rich.console import Console

    from lean_benchmarks.demo.runner import study_table, write_study_chart
    from lean_benchmarks.demo.study import LayerStudy

    recorded = json.loads((Path(__file__).resolve().parents[2] / "benchmarks/results/demo_rows.json").read_text())
    study = LayerStudy.model_validate({k: v for k, v in recorded.items() if k in LayerStudy.model_fields}
                                      | {"answers": {}})
    rows = [study.rows[0], study.rows[1].model_copy(update={"cost_reduction": -0.004}), *study.rows[2:]]
    study = study.model_copy(update={"rows": rows})
    console = Console(record=True, width=200)
    console.print(study_table(study, title="t"))
    text = console.export_text()
    assert "-0%" not in text and " 0% " in text.replace("│", " ")
    assert write_study_chart(study, tmp_path / "r.png", title="t").read_bytes()[:4] == b"\x89PNG"


def test_table_and_chart_sign_a_cost_change_the_same_way(tmp_path: Path) -> None:
    from rich.console import Console

    from lean_benchmarks.demo.runner import AGREEMENT_NOTE, cost_change_label, study_table
    from lean_benchmarks.demo.study import LayerStudy

    recorded = json.loads((Path(__file__).resolve().parents[2] / "benchmarks/results/demo_rows.json").read_text())
    study = LayerStudy.model_validate({k: v for k, v in recorded.items() if k in LayerStudy.model_fields}
                                      | {"answers": {}})
    cheaper = study.rows[1].model_copy(update={"cost_reduction": 0.71})
    dearer = study.rows[2].model_copy(update={"cost_reduction": -0.04})
    assert cost_change_label(cheaper) == "-71%" and cost_change_label(dearer) == "+4%"
    study = study.model_copy(update={"rows": [study.rows[0], cheaper, dearer, *study.rows[3:]]})
    console = Console(record=True, width=250)
    console.print(study_table(study, title="t"))
    text = console.export_text()
    cells = [c.strip() for c in text.replace("┃", "│").split("│")]
    assert "-71%" in cells and "+4%" in cells and "baseline" in cells
    assert "agree:" in AGREEMENT_NOTE and "agree:" in text
