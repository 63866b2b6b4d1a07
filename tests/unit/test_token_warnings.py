"""An unknown model's token counts are cl100k estimates, and ``count_tokens`` says so once per model."""

from __future__ import annotations

import threading
import uuid
import warnings

import pytest

from lean_core.tokens import EstimatedTokensWarning, TokenCounter, count_tokens


def _fresh_name() -> str:
    # Warnings are once per model name per process: every test asks about a name nobody asked before.
    return f"no-such-model-{uuid.uuid4().hex[:8]}"


def test_unknown_model_warns_once_and_still_counts() -> None:
    model = _fresh_name()
    with pytest.warns(EstimatedTokensWarning) as record:
        first = count_tokens("The quick brown fox jumps over the lazy dog.", model)
        second = count_tokens("Another sentence for the same model.", model)
    assert len(record) == 1
    message = str(record[0].message)
    assert model in message and "cl100k_base" in message and "estimate" in message
    assert record[0].filename == __file__  # points at the caller, not at lean_core
    assert first.estimated and second.estimated and first.tokens > 0
    assert issubclass(EstimatedTokensWarning, UserWarning)


def test_each_unknown_model_warns_once() -> None:
    a, b = _fresh_name(), _fresh_name()
    with pytest.warns(EstimatedTokensWarning) as record:
        for model in (a, b, a, b, a):
            count_tokens("hello", model)
    assert sorted(str(w.message).split("'")[1] for w in record) == sorted([a, b])


def test_known_models_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not count_tokens("hello", "gpt-4").estimated
        assert count_tokens("hello", "smollm2-135m-instruct").source == "tokenizer"
        # A known o200k model without its offline file is estimated, but it is not an unknown model.
        count_tokens("hello", "gpt-4o")


def test_warning_is_once_per_process_across_threads() -> None:
    model = _fresh_name()
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        count_tokens("some text", model)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [w.category for w in caught if model in str(w.message)] == [EstimatedTokensWarning]


def test_token_counter_warns_only_when_asked() -> None:
    quiet, loud = _fresh_name(), _fresh_name()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TokenCounter().count("hello", quiet).estimated  # the library's own counters stay quiet
    counter = TokenCounter(warn_unknown_models=True)
    with pytest.warns(EstimatedTokensWarning, match=loud) as record:
        counter.count("hello", loud)
        counter.count_messages([("user", "hello")], loud)
        TokenCounter(warn_unknown_models=True).count("hello", loud)
    assert len(record) == 1
