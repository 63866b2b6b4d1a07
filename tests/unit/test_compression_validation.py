"""The public compression API refuses bad arguments where they are given, naming the parameter
(issue 22, part 7): an InvalidParameterError (a ValueError), never a TypeError or AttributeError
from deep inside a compressor, nor a pydantic error about an internal model."""

from __future__ import annotations

from typing import Any

import pytest

from lean_core import TokenCounter
from lean_core.compression import (
    CoarseToFineCompressor,
    CompressionBudget,
    CompressionOptions,
    LeanCompressor,
    LLMLinguaCompressor,
    compress_messages,
    compressor_for,
)
from lean_core.compression.select import RelevanceScorer
from lean_core.errors import InvalidParameterError

COUNTER = TokenCounter()
TEXT = "Paris is the capital of France. It has 2.1 million people. The Seine flows through it."


def lexical() -> LeanCompressor:
    return LeanCompressor(scorer=RelevanceScorer(semantic_weight=0.0), token_counter=COUNTER)


def _named(parameter: str, call: Any, *args: Any, **kwargs: Any) -> InvalidParameterError:
    with pytest.raises(InvalidParameterError) as error:
        call(*args, **kwargs)
    assert error.value.parameter == parameter, str(error.value)
    assert f"invalid {parameter}: expected " in str(error.value)
    return error.value


BAD_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("context", {"context": None}),
    ("context", {"context": 42}),
    ("context", {"context": {"a": "dict"}}),
    ("context", {"context": b"bytes"}),
    ("context[1]", {"context": ["ok", 3]}),
    ("budget", {"budget": None}),
    ("budget", {"budget": 1}),  # an int is ambiguous (all of it, or one token): refused
    ("budget", {"budget": 1.5}),
    ("budget", {"budget": 0.0}),
    ("budget", {"budget": "0.3"}),
    ("budget", {"budget": {"ratio": 0.3}}),
    ("question", {"question": 3}),
    ("question", {"question": ["Who?"]}),
    ("titles", {"titles": 5}),
    ("titles", {"titles": "one title"}),
    ("titles", {"titles": ["a", "b"]}),
    ("titles", {"titles": [3]}),
]


def _compressors() -> list[Any]:
    # constructing an LLMLinguaCompressor loads nothing; bad arguments fail before any model loads
    return [lexical(), CoarseToFineCompressor(lexical(), lexical(), token_counter=COUNTER),
            LLMLinguaCompressor(token_counter=COUNTER)]


@pytest.mark.parametrize(("parameter", "bad"), BAD_CALLS, ids=[f"{p}-{i}" for i, (p, _) in enumerate(BAD_CALLS)])
@pytest.mark.parametrize("which", [0, 1, 2], ids=["lean", "coarse-to-fine", "llmlingua"])
def test_compress_names_the_bad_argument(which: int, parameter: str, bad: dict[str, Any]) -> None:
    call = {"context": TEXT, "budget": CompressionBudget(ratio=0.5), "question": "Who?", **bad}
    compressor = _compressors()[which]
    _named(parameter, compressor.compress, call.pop("context"), **call)


def test_a_float_budget_is_a_ratio() -> None:
    as_float = lexical().compress(TEXT, budget=0.4, question="How many people live in Paris?")
    as_budget = lexical().compress(TEXT, budget=CompressionBudget(ratio=0.4), question="How many people live in Paris?")
    assert as_float == as_budget.model_copy(update={"seconds": as_float.seconds})
    assert CompressionBudget.of(0.3) == CompressionBudget(ratio=0.3)


@pytest.mark.parametrize(("parameter", "kwargs"), [
    ("ratio", {"ratio": 0.0}), ("ratio", {"ratio": 1.5}), ("ratio", {"ratio": True}), ("ratio", {"ratio": "half"}),
    ("ratio", {"ratio": 0.5, "target_tokens": 10}), ("ratio", {}),
    ("target_tokens", {"target_tokens": 0}), ("target_tokens", {"target_tokens": 2.5}),
    ("target_tokens", {"target_tokens": True}), ("target_model", {"ratio": 0.5, "target_model": ""}),
    ("target_model", {"ratio": 0.5, "target_model": 4}), ("ratoi", {"ratoi": 0.5}),
])
def test_budget_construction_names_the_field(parameter: str, kwargs: dict[str, Any]) -> None:
    _named(parameter, CompressionBudget, **kwargs)


@pytest.mark.parametrize(("parameter", "kwargs"), [
    ("protect_kinds", {"protect_kinds": ["numbers"]}), ("protect_kinds", {"protect_kinds": "number"}),
    ("protect_kinds", {"protect_kinds": None}), ("protect_patterns", {"protect_patterns": ["("]}),
    ("protect_patterns", {"protect_patterns": r"ID-\d+"}), ("protect_patterns", {"protect_patterns": [3]}),
    ("order", {"order": "random"}), ("granularity", {"granularity": "word"}),
    ("require_question", {"require_question": "yes"}), ("normalize", {"normalize": None}),
    ("dedupe", {"dedupe": 1}), ("scorer", {"scorer": "minilm"}), ("token_counter", {"token_counter": "gpt-4o"}),
    ("ledger", {"ledger": "ledger.db"}),
])
def test_lean_compressor_construction_names_the_parameter(parameter: str, kwargs: dict[str, Any]) -> None:
    _named(parameter, LeanCompressor, **kwargs)


def test_protect_kinds_error_lists_the_kinds() -> None:
    error = _named("protect_kinds", LeanCompressor, protect_kinds=["numbers"])
    assert "'number'" in str(error) and "'code_block'" in str(error) and "numbers" in str(error)


@pytest.mark.parametrize(("parameter", "kwargs"), [
    ("protect_kinds", {"protect_kinds": ["numbers"]}), ("protect_patterns", {"protect_patterns": ["("]}),
    ("raw", {"raw": "no"}), ("contrastive", {"contrastive": 1}), ("token_counter", {"token_counter": 3}),
    ("device", {"device": "tpu"}), ("iterative_size", {"iterative_size": 10}), ("model_path", {"model_path": 3}),
])
def test_llmlingua_compressor_construction_names_the_parameter(parameter: str, kwargs: dict[str, Any]) -> None:
    _named(parameter, LLMLinguaCompressor, **kwargs)


@pytest.mark.parametrize(("parameter", "args", "kwargs"), [
    ("coarse", ("lean",), {}), ("fine", (None, "llmlingua"), {}), ("coarse_factor", (), {"coarse_factor": 20}),
    ("token_counter", (), {"token_counter": "x"}),
])
def test_coarse_to_fine_construction_names_the_parameter(parameter: str, args: tuple[Any, ...],
                                                         kwargs: dict[str, Any]) -> None:
    _named(parameter, CoarseToFineCompressor, *args, **kwargs)


@pytest.mark.parametrize(("parameter", "kwargs"), [
    ("method", {"method": "zip"}), ("protect_kinds", {"protect_kinds": ["numbers"]}),
    ("protect_patterns", {"protect_patterns": "("}),
])
def test_compressor_for_names_the_parameter(parameter: str, kwargs: dict[str, Any]) -> None:
    _named(parameter, compressor_for, kwargs.pop("method", "lean"), **kwargs)


@pytest.mark.parametrize(("parameter", "kwargs"), [
    ("ratio", {"ratio": 1.5}), ("ratio", {"ratio": None}), ("target_tokens", {"target_tokens": -1}),
    ("method", {"method": "fast"}), ("protect_kinds", {"protect_kinds": ["numbers"]}),
    ("protect_patterns", {"protect_patterns": ["("]}), ("compressor", {"compressor": "lean"}),
    ("ledger", {"ledger": "ledger.db"}), ("ration", {"ration": 0.3}), ("title_key", {"title_key": 3}),
])
def test_options_raise_the_named_error_itself(parameter: str, kwargs: dict[str, Any]) -> None:
    """Not a pydantic ValidationError wrapping it: ``except InvalidParameterError`` catches it, and
    a misspelt option is refused rather than silently leaving the default budget."""
    _named(parameter, CompressionOptions, **kwargs)


@pytest.mark.parametrize(("parameter", "kwargs"), [
    ("compressor", {"compressor": "lean", "budget": 0.5}), ("compressor", {"compressor": None, "budget": 0.5}),
    ("budget", {"budget": None}), ("budget", {"budget": 3}),
    ("messages", {"messages": None}), ("messages[0]", {"messages": [{"content": "no role"}]}),
])
def test_compress_messages_names_the_parameter(parameter: str, kwargs: dict[str, Any]) -> None:
    call = {"messages": [{"role": "user", "content": "Hi?"}], "compressor": lexical(), "budget": 0.5, **kwargs}
    _named(parameter, compress_messages, call.pop("messages"), **call)
    messages = [{"role": "tool", "content": TEXT}, {"role": "user", "content": "How many people?"}]
    assert compress_messages(messages, compressor=lexical(), budget=0.5).result is not None
