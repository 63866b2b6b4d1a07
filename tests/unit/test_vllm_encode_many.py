"""The batch path's prompt encoding: one tokenizer call per kind gives exactly ``encode``'s ids,
in order, with the same checks. No engine starts (the real SmolLM2 tokenizer is set directly)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from lean_backends.vllm_engine import LocalVLLMEngine, PromptTooLongError, VLLMEngineSettings
from lean_core.errors import InvalidParameterError


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> LocalVLLMEngine:
    from transformers import AutoTokenizer

    engine = LocalVLLMEngine(VLLMEngineSettings(model=str(smollm2_path)))
    engine._tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    engine._max_model_len = 256
    engine._engine = object()  # "started": nothing is generated here
    return engine


def test_batch_encoding_equals_one_by_one_in_order(engine: LocalVLLMEngine) -> None:
    prompts = [
        "Raw text, special tokens as for a raw prompt.",
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour. Ünïcödé ✓"}],
        "Another raw prompt\nwith two lines.",
        [{"role": "user", "content": "word " * 150}],
    ]
    assert engine.encode_many(prompts) == [engine.encode(p) for p in prompts]
    assert engine.encode_many([]) == []


def test_batch_encoding_keeps_the_checks(engine: LocalVLLMEngine) -> None:
    with pytest.raises(PromptTooLongError):
        engine.encode_many(["short", [{"role": "user", "content": "word " * 400}]])
    with pytest.raises(InvalidParameterError, match="prompt"):
        engine.encode_many([[{"role": "user", "content": "fine"}], ""])


def test_batch_submission_chunks_cover_every_prompt_once_growing() -> None:
    from lean_backends.vllm_engine import _submission_chunks

    for count in (0, 1, 15, 16, 17, 256, 1000):
        chunks = list(_submission_chunks(count))
        assert [i for start, stop in chunks for i in range(start, stop)] == list(range(count))
        sizes = [stop - start for start, stop in chunks]
        assert all(b == 2 * a for a, b in itertools.pairwise(sizes[:-1]))  # doubling until the last
    assert list(_submission_chunks(256)) == [(0, 16), (16, 48), (48, 112), (112, 240), (240, 256)]
