"""Healing: LoRA maths, adapter save/merge, resumable training (tiny random models, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lean_backends.pruning.heal import (
    ADAPTER_FILE,
    HealSettings,
    adapter_tensors,
    heal,
    load_adapter,
    merge_adapter,
    merge_lora,
)
from tests.unit.test_pruning_surgery import logits, tiny_model

TOKENS = [(i * 7919) % 127 + 1 for i in range(600)]
SETTINGS = HealSettings(steps=4, batch_size=2, seq_len=16, lr=1e-2, rank=4, alpha=8.0, checkpoint_every=2)


def test_heal_trains_the_adapter_and_merging_keeps_the_function(tmp_path: Path) -> None:
    teacher, student = tiny_model("llama"), tiny_model("llama", layers=3)
    before = logits(student)
    report = heal(student, teacher, TOKENS, settings=SETTINGS, state_dir=tmp_path, show_progress=False,
                  metadata={"kept": None})
    assert report.steps == 4 and report.resumed_from == 0 and report.first_loss is not None
    with_lora = logits(student)
    assert not torch.allclose(with_lora, before)
    tensors, meta = load_adapter(tmp_path / ADAPTER_FILE)
    assert meta["rank"] == 4 and meta["steps_done"] == 4 and len(meta["losses"]) == 4
    assert any(k.startswith("norm::") for k in tensors) and any(k.endswith("::A") for k in tensors)
    merge_lora(student)
    assert not any("lora" in name for name, _ in student.named_parameters())
    torch.testing.assert_close(logits(student), with_lora, atol=1e-4, rtol=1e-4)
    fresh = tiny_model("llama", layers=3)
    merge_adapter(fresh, tensors, meta)  # the path used for adapters trained on a GPU
    torch.testing.assert_close(logits(fresh), with_lora, atol=1e-4, rtol=1e-4)


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    teacher = tiny_model("llama")
    full = tiny_model("llama", layers=3)
    torch.manual_seed(1)
    heal(full, teacher, TOKENS, settings=SETTINGS, state_dir=tmp_path / "a", show_progress=False)
    part = tiny_model("llama", layers=3)
    torch.manual_seed(1)
    heal(part, teacher, TOKENS, settings=HealSettings(**{**_fields(SETTINGS), "steps": 2}),
         state_dir=tmp_path / "b", show_progress=False)
    # A new process would rebuild the student from scratch; resume from the saved state.
    resumed = tiny_model("llama", layers=3)
    torch.manual_seed(2)  # the fresh LoRA init is overwritten by the checkpoint
    heal(resumed, teacher, TOKENS, settings=SETTINGS, state_dir=tmp_path / "b", resume=True, show_progress=False)
    a = adapter_tensors(full, train_norms=True)
    b = adapter_tensors(resumed, train_norms=True)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


def _fields(settings: HealSettings) -> dict[str, object]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


@pytest.mark.parametrize(("field", "value"), [("steps", 0), ("rank", 0), ("seq_len", 4), ("lr", 0.0),
                                                 ("mode", "qlora")])
def test_heal_settings_are_validated(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field if field != "lr" else "loss settings"):
        HealSettings(**{field: value})  # type: ignore[arg-type]


def test_full_mode_trains_every_layer_weight_but_not_the_tied_embedding(tmp_path: Path) -> None:
    teacher, student = tiny_model("llama"), tiny_model("llama", layers=3)
    embedding_before = student.get_input_embeddings().weight.detach().clone()
    layer_before = student.model.layers[0].mlp.down_proj.weight.detach().clone()
    settings = HealSettings(**{**_fields(SETTINGS), "mode": "full", "lr": 1e-3})
    heal(student, teacher, TOKENS, settings=settings, state_dir=tmp_path, show_progress=False)
    healed = logits(student)
    torch.testing.assert_close(student.get_input_embeddings().weight, embedding_before)
    assert student.get_output_embeddings().weight is student.get_input_embeddings().weight
    assert not torch.allclose(student.model.layers[0].mlp.down_proj.weight, layer_before)
    tensors, meta = load_adapter(tmp_path / ADAPTER_FILE)
    assert meta["format"] == "lean-inference-full/1" and meta["steps_done"] == 4
    assert tensors and all(k.startswith("full::") for k in tensors)
    assert not any("embed_tokens" in k or "lm_head" in k for k in tensors)
    fresh = tiny_model("llama", layers=3)
    assert merge_adapter(fresh, tensors, meta) == len(tensors)  # the path for a GPU-trained full adapter
    torch.testing.assert_close(logits(fresh), healed, atol=1e-5, rtol=1e-5)


def test_a_resumed_full_run_ends_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    settings = HealSettings(**{**_fields(SETTINGS), "mode": "full", "lr": 1e-3})
    teacher = tiny_model("llama")
    whole = tiny_model("llama", layers=3)
    heal(whole, teacher, TOKENS, settings=settings, state_dir=tmp_path / "a", show_progress=False)
    part = tiny_model("llama", layers=3)
    heal(part, teacher, TOKENS, settings=HealSettings(**{**_fields(settings), "steps": 2}),
         state_dir=tmp_path / "b", show_progress=False)
    resumed = tiny_model("llama", layers=3)
    heal(resumed, teacher, TOKENS, settings=settings, state_dir=tmp_path / "b", resume=True, show_progress=False)
    a = adapter_tensors(whole, train_norms=True, mode="full")
    b = adapter_tensors(resumed, train_norms=True, mode="full")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)
