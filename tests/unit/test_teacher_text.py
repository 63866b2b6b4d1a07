"""Teacher samples for healing: paragraph openings and sampled continuations (tiny random model)."""

from __future__ import annotations

from typing import Any

import pytest

from lean_backends.pruning.teacher_text import paragraph_openings, sample_continuations
from tests.unit.test_pruning_surgery import tiny_model


def _tokenizer(text: str, add_special_tokens: bool = False) -> dict[str, Any]:
    return {"input_ids": [len(word) + 2 for word in text.split()]}


def test_openings_are_the_first_tokens_of_each_long_enough_paragraph() -> None:
    text = "one two three four five\n\nshort one\n\n\n  alpha beta gamma delta epsilon zeta  "
    assert paragraph_openings(text, _tokenizer, prompt_tokens=4) == [[5, 5, 7, 6], [7, 6, 7, 7]]
    with pytest.raises(ValueError, match="prompt_tokens"):
        paragraph_openings(text, _tokenizer, prompt_tokens=0)


def test_continuations_start_with_their_prompt_and_stop_at_the_end_token() -> None:
    model = tiny_model("llama")
    prompts = [[3, 4, 5, 6], [7, 8, 9, 10], [11, 12, 13, 14]]
    samples = sample_continuations(model, prompts, new_tokens=12, batch_size=2, eos_token_id=1,
                                   show_progress=False)
    assert len(samples) == 3
    for prompt, sample in zip(prompts, samples, strict=True):
        assert sample[:4] == prompt and 4 < len(sample) <= 16 and 1 not in sample[4:]
    again = sample_continuations(model, prompts, new_tokens=12, batch_size=2, eos_token_id=1, show_progress=False)
    assert again == samples  # seeded
    with pytest.raises(ValueError, match="common length"):
        sample_continuations(model, [[1, 2], [1, 2, 3]], new_tokens=4, show_progress=False)
