"""Healing a pruned model: distillation from the original into a small LoRA (or all weights), then merged.

The student (pruned) model's linear layers get low-rank adapters (a plain-torch LoRA: ``W + s·B·A``,
``B`` starting at zero so step 0 is the unhealed model) and, optionally, trainable RMSNorm weights;
everything else is frozen. ``mode="full"`` instead trains every weight but the (tied) token
embedding: more capacity, and an "adapter" as large as the transformer layers. The loss is the KL divergence from the teacher's (original model's)
next-token distribution, optionally plus the language-model loss, on random windows of the
calibration text only. The adapter is checkpointed every N steps (resumable); at the end it is
merged into the weights, so the pruned checkpoint stays a plain one.

This module imports only torch, transformers, safetensors, numpy, tqdm and the standard library
at module level (no lean_core, no pydantic): ``benchmarks/gpu/heal_pruned.py`` runs it on a GPU
image that lacks pydantic. Merge a GPU-trained adapter here with
``python -m lean_backends.pruning.heal merge --checkpoint PRUNED --adapter FILE --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

__all__ = ["ADAPTER_FILE", "HEAL_MODES", "HealReport", "HealSettings", "LoRALinear", "adapter_tensors",
           "attach_full", "attach_lora", "copy_side_files", "heal", "load_adapter", "merge_adapter", "merge_adapter_into_checkpoint",
           "merge_lora", "save_adapter", "trained_on_same_pruning"]

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_FILE = "adapter.safetensors"
_STATE_FILE = "heal_state.pt"
HEAL_MODES = ("lora", "full")


@dataclass(frozen=True, slots=True, kw_only=True)
class HealSettings:
    """How to heal. Defaults suit a short CPU run; the GPU script raises steps, batch and length."""

    steps: int = 50
    """Optimizer steps (>= 1)."""
    batch_size: int = 4
    """Windows per step (>= 1)."""
    seq_len: int = 256
    """Tokens per window (>= 16)."""
    lr: float = 5e-4
    """Peak learning rate (linear warm-up over 5 % of the steps, cosine decay to 10 %)."""
    rank: int = 16
    """LoRA rank (>= 1). Adapter size ~ rank x (in + out) per linear layer."""
    alpha: float = 32.0
    """LoRA scale numerator: the update is ``alpha / rank * B @ A``."""
    kl_weight: float = 1.0
    """Weight of KL(teacher || student) on next-token distributions."""
    lm_weight: float = 0.0
    """Weight of the plain next-token cross-entropy."""
    temperature: float = 1.0
    """Distillation temperature (the KL term is scaled by its square)."""
    train_norms: bool = True
    """Also train the RMSNorm weights (a few thousand numbers per layer). LoRA mode only: full mode
    trains the norms with every other weight."""
    checkpoint_every: int = 25
    """Save the adapter and optimizer state every N steps (and at the end)."""
    seed: int = 0
    autocast_bf16: bool = False
    """bfloat16 autocast for the forward passes (GPU); LoRA weights stay float32."""
    mode: str = "lora"
    """``"lora"``: adapters on the linear layers (rank, alpha apply); ``"full"``: every weight but the
    token embedding is trained (rank and alpha are ignored)."""

    def __post_init__(self) -> None:
        if self.mode not in HEAL_MODES:
            raise ValueError(f"invalid mode: expected one of {HEAL_MODES}, received {self.mode!r}")
        for name in ("steps", "batch_size", "rank", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"invalid {name}: expected a whole number >= 1, received {getattr(self, name)!r}")
        if self.seq_len < 16:
            raise ValueError(f"invalid seq_len: expected >= 16, received {self.seq_len!r}")
        if not self.lr > 0 or self.kl_weight < 0 or self.lm_weight < 0 or self.kl_weight + self.lm_weight <= 0:
            raise ValueError("invalid loss settings: lr > 0 and non-negative weights, at least one positive")


@dataclass(slots=True)
class HealReport:
    """What a healing run did."""

    steps: int
    """Steps completed in total (including resumed ones)."""
    resumed_from: int
    """Step the run resumed from (0: a fresh start)."""
    tokens_per_step: int
    seconds: float
    """Wall time of this run (not of resumed-from runs)."""
    first_loss: float | None
    last_loss: float | None
    """Mean loss of the first and the last up-to-10 steps."""
    settings: dict[str, Any] = field(default_factory=dict)


class LoRALinear(torch.nn.Module):
    """``base(x) + alpha/rank * x A^T B^T`` with the base frozen and ``B`` starting at zero."""

    def __init__(self, base: torch.nn.Linear, *, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.lora_A = torch.nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = torch.nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        torch.nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = (x.to(self.lora_A.dtype) @ self.lora_A.t()) @ self.lora_B.t()
        return self.base(x) + (self.scale * update).to(x.dtype)

    def delta(self) -> torch.Tensor:
        return self.scale * (self.lora_B @ self.lora_A)


def _weight(model: torch.nn.Module, name: str) -> torch.Tensor:
    weight = model.get_submodule(name).weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{name} has no weight tensor")
    return weight


def _norm_names(model: torch.nn.Module) -> list[str]:
    return [name for name, module in model.named_modules()
            if type(module).__name__.endswith("RMSNorm") and getattr(module, "weight", None) is not None]


def attach_lora(model: torch.nn.Module, *, rank: int, alpha: float, train_norms: bool,
                targets: Sequence[str] = LORA_TARGETS) -> list[str]:
    """Freeze ``model``, wrap its target linear layers in :class:`LoRALinear`; returns their names."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    names = [name for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(getattr(parent, child), rank=rank, alpha=alpha))
    if train_norms:
        for name in _norm_names(model):
            _weight(model, name).requires_grad_(True)
    return names


def attach_full(model: torch.nn.Module) -> list[str]:
    """Make every parameter trainable except the token embedding (and the LM head tied to it).

    The embedding stays frozen because it is tied to the output layer in the models we prune and
    is 21 % of SmolLM2: training it would double what a GPU run has to bring back for little gain.
    Returns the names of the trainable parameters.
    """
    hf_model: Any = model  # a transformers PreTrainedModel
    frozen = {id(module.weight) for module in (hf_model.get_input_embeddings(), hf_model.get_output_embeddings())
              if module is not None}
    names = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(id(parameter) not in frozen)
        if parameter.requires_grad:
            names.append(name)
    return names


def _lora_modules(model: torch.nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def adapter_tensors(model: torch.nn.Module, *, train_norms: bool, mode: str = "lora") -> dict[str, torch.Tensor]:
    """The trainable state: ``lora::NAME::A``/``::B`` and, if trained, ``norm::NAME`` weights.

    In ``mode="full"``: ``full::NAME`` for every trainable parameter (norms included, so
    ``train_norms`` does not apply).
    """
    tensors: dict[str, torch.Tensor] = {}
    if mode == "full":
        return {f"full::{name}": p.detach().float().cpu().contiguous()
                for name, p in model.named_parameters() if p.requires_grad}
    for name, module in _lora_modules(model).items():
        tensors[f"lora::{name}::A"] = module.lora_A.detach().float().cpu().contiguous()
        tensors[f"lora::{name}::B"] = module.lora_B.detach().float().cpu().contiguous()
    if train_norms:
        for name in _norm_names(model):
            tensors[f"norm::{name}"] = _weight(model, name).detach().float().cpu().contiguous()
    return tensors


def save_adapter(tensors: dict[str, torch.Tensor], path: str | Path, *, metadata: dict[str, Any]) -> Path:
    """Write an adapter atomically (safetensors, with JSON metadata under the key ``lean``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"lean": json.dumps(metadata)})
    os.replace(tmp, path)
    return path


def load_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read an adapter written by :func:`save_adapter`: tensors and metadata."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        raw = (handle.metadata() or {}).get("lean")
    if raw is None:
        raise ValueError(f"{path} is not a lean-inference healing adapter (no 'lean' metadata)")
    return load_file(str(path)), json.loads(raw)


def merge_adapter(model: torch.nn.Module, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> int:
    """Add every LoRA update into the plain linear weights of ``model`` and set trained norms.

    Returns how many tensors were changed. ``model`` must have the adapter's module names.
    ``full::NAME`` tensors (a ``mode="full"`` run) replace the parameter outright.
    """
    changed = 0
    with torch.no_grad():
        for key, value in tensors.items():
            kind, name, *part = key.split("::")
            if kind == "full":
                parameter = model.get_parameter(name)
                parameter.copy_(value.to(parameter.dtype))
                changed += 1
            elif kind == "lora" and part == ["A"]:
                scale = float(metadata["alpha"]) / float(metadata["rank"])
                weight = _weight(model, name)
                delta = scale * (tensors[f"lora::{name}::B"].double() @ value.double())
                weight.copy_((weight.double() + delta.to(weight.device)).to(weight.dtype))
                changed += 1
            elif kind == "norm":
                weight = _weight(model, name)
                weight.copy_(value.to(weight.dtype))
                changed += 1
    return changed


def merge_lora(model: torch.nn.Module) -> None:
    """Fold in-place trained :class:`LoRALinear` wrappers back into plain linear layers."""
    with torch.no_grad():
        for name, module in _lora_modules(model).items():
            base = module.base
            base.weight.add_(module.delta().to(base.weight.dtype))
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, base)
    for parameter in model.parameters():
        parameter.requires_grad_(True)


def _lr_at(step: int, settings: HealSettings) -> float:
    warmup = max(1, settings.steps // 20)
    if step < warmup:
        return settings.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, settings.steps - warmup)
    return settings.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _batch(ids: torch.Tensor, step: int, settings: HealSettings) -> torch.Tensor:
    # Windows depend only on (seed, step), so a resumed run sees exactly the batches it would have.
    rng = np.random.default_rng([settings.seed, step])
    starts = rng.integers(0, ids.numel() - settings.seq_len - 1, size=settings.batch_size)
    return torch.stack([ids[s:s + settings.seq_len] for s in starts.tolist()])


def _loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, batch: torch.Tensor,
          settings: HealSettings) -> torch.Tensor:
    f = torch.nn.functional
    s = student_logits[:, :-1].float()
    loss = torch.zeros((), device=s.device)
    if settings.kl_weight:
        t = teacher_logits[:, :-1].float() / settings.temperature
        log_p_t = f.log_softmax(t, dim=-1)
        log_p_s = f.log_softmax(s / settings.temperature, dim=-1)
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean()
        loss = loss + settings.kl_weight * settings.temperature**2 * kl
    if settings.lm_weight:
        ce = f.cross_entropy(s.reshape(-1, s.shape[-1]), batch[:, 1:].reshape(-1))
        loss = loss + settings.lm_weight * ce
    return loss


def heal(student: torch.nn.Module, teacher: torch.nn.Module, token_ids: Sequence[int] | torch.Tensor, *,
         settings: HealSettings, state_dir: str | Path | None = None, resume: bool = False,
         show_progress: bool = True, metadata: dict[str, Any] | None = None,
         on_checkpoint: Callable[[int], None] | None = None) -> HealReport:
    """Distil ``teacher`` into LoRA adapters on ``student`` (attached here), or into all its weights
    but the embedding (``settings.mode == "full"``), in place.

    ``state_dir`` receives ``adapter.safetensors`` (+ optimizer state) every
    ``settings.checkpoint_every`` steps; with ``resume=True`` training continues from it. The
    adapters stay attached: call :func:`merge_lora` to fold them in, or save
    :func:`adapter_tensors` to merge elsewhere.
    """
    device = next(student.parameters()).device
    ids = torch.as_tensor(token_ids, dtype=torch.long)
    if ids.numel() < settings.seq_len + 2:
        raise ValueError(f"calibration text has {ids.numel()} tokens; healing needs more than {settings.seq_len + 1}")
    if settings.mode == "full":
        attach_full(student)
    else:
        attach_lora(student, rank=settings.rank, alpha=settings.alpha, train_norms=settings.train_norms)
    student.to(device)
    trainable = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=0.0)
    meta = {**(metadata or {}), **_adapter_meta(settings)}
    start, losses = 0, []
    state_path = Path(state_dir) / _STATE_FILE if state_dir is not None else None
    if resume and state_path is not None and state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=True)
        tensors, _ = load_adapter(Path(state_dir) / ADAPTER_FILE)  # type: ignore[arg-type]
        _load_trainable(student, tensors)
        optimizer.load_state_dict(state["optimizer"])
        start, losses = int(state["step"]), [float(x) for x in state["losses"]]
    teacher.eval()
    student.train()
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=settings.autocast_bf16)
    started = time.perf_counter()
    bar = tqdm(total=settings.steps, initial=start, desc="healing", unit="step", disable=not show_progress)
    for step in range(start, settings.steps):
        batch = _batch(ids, step, settings).to(device)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, settings)
        with torch.no_grad(), autocast:
            teacher_logits = teacher(input_ids=batch, use_cache=False).logits
        with autocast:
            student_logits = student(input_ids=batch, use_cache=False).logits
        loss = _loss(student_logits, teacher_logits, batch, settings)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        done = step + 1
        if state_path is not None and (done % settings.checkpoint_every == 0 or done == settings.steps):
            save_adapter(adapter_tensors(student, train_norms=settings.train_norms, mode=settings.mode),
                         state_path.parent / ADAPTER_FILE, metadata={**meta, "steps_done": done, "losses": losses})
            tmp = state_path.with_suffix(".tmp")
            torch.save({"optimizer": optimizer.state_dict(), "step": done, "losses": losses}, tmp)
            os.replace(tmp, state_path)
            if on_checkpoint is not None:
                on_checkpoint(done)
    bar.close()
    return HealReport(steps=settings.steps, resumed_from=start, tokens_per_step=settings.batch_size * settings.seq_len,
                      seconds=time.perf_counter() - started,
                      first_loss=float(np.mean(losses[:10])) if losses else None,
                      last_loss=float(np.mean(losses[-10:])) if losses else None, settings=asdict(settings))


def _adapter_meta(settings: HealSettings) -> dict[str, Any]:
    if settings.mode == "full":
        return {"format": "lean-inference-full/1", "mode": "full", "settings": asdict(settings)}
    return {"format": "lean-inference-lora/1", "mode": "lora", "rank": settings.rank, "alpha": settings.alpha,
            "train_norms": settings.train_norms, "settings": asdict(settings)}


def _load_trainable(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    modules = _lora_modules(model)
    with torch.no_grad():
        for key, value in tensors.items():
            kind, name, *part = key.split("::")
            if kind == "full":
                model.get_parameter(name).copy_(value)
            elif kind == "lora":
                target = modules[name].lora_A if part == ["A"] else modules[name].lora_B
                target.copy_(value)
            elif kind == "norm":
                _weight(model, name).copy_(value)


_CHECKPOINT_SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                          "merges.txt", "tokenizer.model", "added_tokens.json", "chat_template.jinja",
                          "chat_template.json", "generation_config.json")


def copy_side_files(source: Path, target: Path) -> list[str]:
    """Copy tokenizer, chat template and generation config from ``source`` to ``target``."""
    copied = []
    for name in _CHECKPOINT_SIDE_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
            copied.append(name)
    return copied


def trained_on_same_pruning(adapter_meta: dict[str, Any], record: dict[str, Any] | None) -> bool:
    """False only when both name their kept layers/channels/heads and these differ."""
    kept = (record or {}).get("kept")
    return adapter_meta.get("kept") is None or kept is None or adapter_meta["kept"] == kept


def merge_adapter_into_checkpoint(checkpoint: str | Path, adapter: str | Path, out: str | Path) -> Path:
    """Write ``out``: the pruned ``checkpoint`` with ``adapter`` merged, as a plain checkpoint.

    Checks that the adapter was trained on this pruning (same kept layers/channels/heads) and
    records the healing in ``pruning.json``.
    """
    from transformers import AutoModelForCausalLM

    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists():
        raise FileExistsError(f"output directory {out} exists; choose a new one")
    tensors, meta = load_adapter(adapter)
    record_path = checkpoint / "pruning.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if not trained_on_same_pruning(meta, record):
        raise ValueError(f"adapter {adapter} was trained on a different pruning than {checkpoint}")
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch.float32)
    merge_adapter(model, tensors, meta)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    copy_side_files(checkpoint, tmp)
    record["healing"] = {key: meta.get(key) for key in ("format", "mode", "rank", "alpha", "train_norms", "settings",
                                                         "steps_done", "teacher", "calibration", "device",
                                                         "continued_from")}
    record["healing"]["adapter"] = str(adapter)
    losses = meta.get("losses") or []
    record["healing"]["first_loss"] = float(np.mean(losses[:10])) if losses else None
    record["healing"]["last_loss"] = float(np.mean(losses[-10:])) if losses else None
    (tmp / "pruning.json").write_text(json.dumps(record, indent=2))
    os.replace(tmp, out)
    return out


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lean_backends.pruning.heal",
                                     description="Merge a healing adapter into a pruned checkpoint.")
    sub = parser.add_subparsers(dest="command", required=True)
    merge = sub.add_parser("merge", help="merge adapter.safetensors (from heal_pruned.py) into a pruned checkpoint")
    merge.add_argument("--checkpoint", required=True, help="the pruned checkpoint the adapter was trained on")
    merge.add_argument("--adapter", required=True, help="adapter.safetensors written by the healing run")
    merge.add_argument("--out", required=True, help="new directory for the healed checkpoint (must not exist)")
    args = parser.parse_args(argv)
    print(f"healed checkpoint written to {merge_adapter_into_checkpoint(args.checkpoint, args.adapter, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
