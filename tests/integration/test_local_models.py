"""The real bundled models, offline: converted SmolLM2, MiniLM, and the tokenizers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lean_core import TokenCounter
from lean_core.assets import minilm_dir

pytestmark = pytest.mark.integration


def test_converted_smollm2_is_a_plain_checkpoint(smollm2_path: Path) -> None:
    names = {p.name for p in smollm2_path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja",
            "generation_config.json"} <= names
    config = json.loads((smollm2_path / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert "quantization_config" not in config


def test_smollm2_greedy_answer_with_transformers(smollm2_path: Path) -> None:
    from lean_backends.local_generation import generate_greedy

    (answer,) = generate_greedy(smollm2_path, ["What is the capital of France?"], max_new_tokens=24)
    assert "Paris" in answer.text
    assert answer.finish_reason == "stop"
    assert answer.prompt_tokens > 5 and 0 < answer.completion_tokens <= 24


def test_local_token_counts_match_transformers(smollm2_path: Path) -> None:
    from transformers import AutoTokenizer

    text = "Refund 48213: the Alpine 2 bag, returned within 30 days (see policy §4)."
    expected = len(AutoTokenizer.from_pretrained(str(smollm2_path))(text, add_special_tokens=False)["input_ids"])
    counter = TokenCounter(local_tokenizers={"my-smollm": smollm2_path})
    for model in ("smollm2-135m-instruct", "my-smollm", str(smollm2_path)):
        count = counter.count(text, model)
        assert count.tokens == expected and count.source == "tokenizer"


def test_minilm_embeds_offline() -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_dir()), device="cpu")
    a, b, c = model.encode(["How do I return boots?", "What is the return policy for shoes?",
                            "The stock market fell today."], normalize_embeddings=True)
    assert a.shape == (384,)
    assert float(a @ b) > float(a @ c) + 0.2


def test_embedder_precisions_agree_and_bad_precision_is_named() -> None:
    import numpy as np

    from lean_core.embeddings import Embedder
    from lean_core.errors import InvalidParameterError

    texts = ["How do I return boots?", "What is the return policy for shoes?", "The stock market fell today.",
             "Refund 48213 was issued on 2024-03-02 to the Alpine 2 bag order."]
    exact = Embedder(precision="float32").encode(texts)
    fast = Embedder(precision="bfloat16").encode(texts)
    assert exact.dtype == fast.dtype == np.float32
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    # bf16 autocast moves vectors by far less than the gaps between related and unrelated texts.
    assert float(np.min(np.sum(exact * fast, axis=1))) > 0.995
    assert Embedder(precision="auto").encode(texts[:1]).shape == (1, 384)
    with pytest.raises(InvalidParameterError, match="precision"):
        Embedder(precision="fp8")  # type: ignore[arg-type]
