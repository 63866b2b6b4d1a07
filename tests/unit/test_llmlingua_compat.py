"""The llmlingua x transformers 5 cache layer, on small tensors and a tiny random Llama (offline)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from lean_core.compression.llmlingua_backend import (
    LLMLinguaCompressor,
    _cache_from_legacy,
    _compat_classes,
    _fit_schedule_to_tail,
    _legacy_from_cache,
    _trim_to,
)
from lean_core.compression.types import CompressionBudget
from lean_core.errors import InvalidParameterError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
llmlingua = pytest.importorskip("llmlingua")

LAYERS, HEADS, HEAD_DIM = 3, 2, 4


def _legacy(seq: int, seed: int = 0) -> list[tuple[Any, Any]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(1, HEADS, seq, HEAD_DIM, generator=generator),
             torch.randn(1, HEADS, seq, HEAD_DIM, generator=generator)) for _ in range(LAYERS)]


def test_legacy_round_trip_keeps_every_tensor() -> None:
    past = _legacy(7)
    cache = _cache_from_legacy(past)
    assert isinstance(cache, transformers.DynamicCache)
    assert cache.get_seq_length() == 7
    back = _legacy_from_cache(cache)
    assert len(back) == LAYERS
    for (k, v), (k2, v2) in zip(past, back, strict=True):
        assert torch.equal(k, k2) and torch.equal(v, v2)


def test_cache_is_indexable_the_way_llmlingua_reads_it() -> None:
    cache = _cache_from_legacy(_legacy(5))
    assert cache[0][0].shape[2] == 5  # llmlingua: past_length = past_key_values[0][0].shape[2]
    key, value = cache[LAYERS - 1]
    assert key.shape == value.shape == (1, HEADS, 5, HEAD_DIM)


def test_llmlingua_style_slicing_then_back_to_a_cache() -> None:
    past = _legacy_from_cache(_cache_from_legacy(_legacy(10)))
    sliced = [[k[:, :, :6], v[:, :, :6]] for k, v in past]  # what iterative_compress_prompt does
    cache = _cache_from_legacy(sliced)
    assert cache.get_seq_length() == 6
    assert torch.equal(cache[1][0], past[1][0][:, :, :6])


def test_none_and_caches_pass_through() -> None:
    assert _cache_from_legacy(None) is None
    cache = transformers.DynamicCache()
    assert _cache_from_legacy(cache) is cache
    assert _legacy_from_cache(_legacy(2))[0][0].shape[2] == 2  # already legacy: unchanged


def _tiny_scorer(base: Any) -> Any:
    config = transformers.LlamaConfig(vocab_size=97, hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=2, num_attention_heads=2,
                                      num_key_value_heads=2, max_position_embeddings=1024)
    torch.manual_seed(0)
    scorer = base.__new__(base)  # skip PromptCompressor.__init__ (it loads a checkpoint)
    scorer.model = transformers.LlamaForCausalLM(config).eval()
    scorer.device = "cpu"
    scorer.max_position_embeddings = config.max_position_embeddings
    return scorer


def test_get_ppl_with_a_fed_back_cache_matches_one_full_pass() -> None:
    """The chunked scoring llmlingua does for contexts > iterative_size equals a single pass."""
    scorer = _tiny_scorer(_compat_classes()[1])
    ids = torch.randint(0, 97, (1, 300), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    full = scorer.get_ppl("", "token", ids, mask)
    first, past = scorer.get_ppl("", "token", ids, mask, return_kv=True, end=200)
    assert isinstance(past, list) and all(isinstance(kv, tuple) and len(kv) == 2 for kv in past)
    assert past[0][0].shape[2] == 200
    past = [[k[:, :, :150], v[:, :, :150]] for k, v in past]
    rest, past = scorer.get_ppl("", "token", ids, mask, past_key_values=past, return_kv=True, end=300)
    assert past[0][0].shape[2] == 300
    torch.testing.assert_close(first, full[:199], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(rest, full[150:], atol=1e-4, rtol=1e-4)


def test_plain_llmlingua_still_breaks_on_transformers_5() -> None:
    """Guards the reason the layer exists; when this fails, upstream has been fixed."""
    scorer = _tiny_scorer(llmlingua.PromptCompressor)
    ids = torch.randint(0, 97, (1, 40), generator=torch.Generator().manual_seed(2))
    _, past = scorer.get_ppl("", "token", ids, torch.ones_like(ids), return_kv=True, end=20)
    with pytest.raises(ValueError, match="too many values to unpack"):
        [[k[:, :, :10], v[:, :, :10]] for k, v in past]


def test_schedule_absorbs_the_tail_llmlingua_never_compresses() -> None:
    schedule = [[(200, 0.3)], [(150, 0.3), (50, 0.5)], [(100, 0.3)]]
    # 500 tokens: two windows compressed, a 100-token tail kept whole; aim for 150 kept in all
    fitted = _fit_schedule_to_tail(schedule, 500, 150.0, 200)
    assert [size for window in fitted for size, _ in window] == [200, 150, 50, 100]
    factor = (150 - 100) * 500 / (150 * 400)
    assert fitted[0][0][1] == pytest.approx(0.3 * factor)
    assert _fit_schedule_to_tail(schedule, 400, 150.0, 200) == schedule  # no tail: unchanged
    assert all(rate == 0.0 for window in _fit_schedule_to_tail(schedule, 500, 80.0, 200)
               for _, rate in window)  # the tail alone is over the target: cut the rest fully
    assert all(rate <= 1.0 for window in _fit_schedule_to_tail([[(200, 0.9)]], 210, 205.0, 200)
               for _, rate in window)


def test_trim_keeps_the_longest_word_prefix_within_target() -> None:
    def words(text: str) -> int:
        return len(text.split())

    assert _trim_to("one two  three four", 2, words) == "one two"
    assert _trim_to("one two", 5, words) == "one two"
    assert _trim_to("one two", 0, words) == ""


def test_constructor_does_no_io_and_a_missing_checkpoint_fails_at_use(tmp_path: Any) -> None:
    compressor = LLMLinguaCompressor(tmp_path / "does-not-exist")  # no error: nothing is read yet
    with pytest.raises(InvalidParameterError, match="model_path"):
        compressor.compress("word " * 50, budget=CompressionBudget(ratio=0.5))


@pytest.mark.parametrize(("option", "value"), [
    ("device", "gpu"), ("reorder", "random"), ("dynamic_ratio", 1.0), ("iterative_size", 10),
    ("max_attempts", 0), ("first_attempt_share", 0.0), ("max_attempts", True),
])
def test_invalid_options_name_the_parameter(option: str, value: Any) -> None:
    with pytest.raises(InvalidParameterError, match=option):
        LLMLinguaCompressor(**{option: value})


def test_input_within_budget_is_returned_without_loading_a_model() -> None:
    compressor = LLMLinguaCompressor("/nonexistent")
    result = compressor.compress(["a short passage.", "  ", "another."],
                                 budget=CompressionBudget(ratio=1.0))
    assert result.text == "a short passage.\n\nanother." and result.budget_met
    assert compressor._scorer.compressor is None


def test_import_and_construction_pull_in_no_heavy_dependency() -> None:
    code = ("import sys; from lean_core.compression.llmlingua_backend import LLMLinguaCompressor; "
            "LLMLinguaCompressor(); print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'transformers', 'llmlingua', 'numpy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
