from __future__ import annotations

import pytest

from lean_core import InvalidParameterError, TokenCounter, count_tokens


def test_gpt4_counts_match_tiktoken_cl100k_exactly() -> None:
    import tiktoken

    from lean_core.assets import seed_tiktoken_cache

    seed_tiktoken_cache()
    text = "Refunds are issued within 5 business days. Order #48213, 'Alpine 2' bag; ünïcödé ok."
    expected = len(tiktoken.get_encoding("cl100k_base").encode(text))
    result = count_tokens(text, "gpt-4")
    assert result.tokens == expected
    assert result.source == "tokenizer" and not result.estimated
    assert count_tokens(text, "openai:gpt-3.5-turbo").tokens == expected


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-2024-08-06", "claude-3-5-sonnet", "gemini-2.0-flash"])
def test_models_without_an_offline_tokenizer_are_marked_estimated(model: str) -> None:
    result = count_tokens("The quick brown fox jumps over the lazy dog.", model)
    assert result.estimated
    assert "estimate" in result.tokenizer
    assert result.tokens > 0


def test_bad_arguments_name_the_parameter() -> None:
    counter = TokenCounter()
    with pytest.raises(InvalidParameterError, match="model"):
        counter.count("hi", "")
    with pytest.raises(InvalidParameterError, match="text"):
        counter.count(b"bytes", "gpt-4")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="local tokenizer"):
        TokenCounter(local_tokenizers={"mine": "/nonexistent/dir"}).count("hi", "mine")


def test_chat_counts_include_framing_and_are_estimates() -> None:
    counter = TokenCounter()
    plain = counter.count("hello", "gpt-4").tokens
    chat = counter.count_messages([("user", "hello")], "gpt-4")
    assert chat.tokens > plain and chat.estimated


def test_empty_text_counts_zero() -> None:
    assert count_tokens("", "gpt-4").tokens == 0
