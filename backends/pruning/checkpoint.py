"""``prune_checkpoint``: from a checkpoint directory to a pruned (optionally healed) plain checkpoint.

Order of work: every input is checked first (architecture, plan against the shape, calibration
length, output directory, healing settings) so that bad input fails in a second, before any model
is loaded. Then: load, score on calibration text, choose, cut, heal, save. The result is written to
``OUT.partial`` and renamed at the end, so a failed run never leaves a half-written ``OUT``. The
healing state lives in ``OUT.heal-state/`` (kept until the run succeeds, so ``resume`` works).

Output: ``model.safetensors``, ``config.json``, ``generation_config.json``, the tokenizer files and
``chat_template.jinja`` copied from the source, and ``pruning.json`` (what was removed, how it was
scored, the parameter counts, the healing run).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lean_core.errors import InvalidParameterError

from .calibration import load_calibration
from .spec import SUPPORTED_ARCHITECTURES, ModelShape, PruningPlan, read_model_shape

__all__ = ["PRUNING_RECORD", "PruneResult", "count_parameters", "prune_checkpoint"]

PRUNING_RECORD = "pruning.json"
RECORD_FORMAT = "lean-inference-pruning/1"


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What ``prune_checkpoint`` wrote."""

    out: Path
    params_before: int
    params_after: int
    num_layers_before: int
    num_layers_after: int
    dropped_layers: tuple[int, ...]
    mlp_size: int
    num_heads: int
    healed_steps: int
    seconds: float

    @property
    def params_reduction(self) -> float:
        """Share of parameters removed (0.2 = 20 % fewer)."""
        return 1.0 - self.params_after / self.params_before


def count_parameters(model: Any) -> int:
    """Parameters of a torch module, tied tensors counted once."""
    seen: set[int] = set()
    total = 0
    for parameter in model.parameters():
        if id(parameter) not in seen:
            seen.add(id(parameter))
            total += parameter.numel()
    return total


def _check_out(out: Path) -> None:
    if out.exists():
        raise InvalidParameterError("out", allowed="a directory that does not exist yet", received=str(out))
    if not out.parent.exists():
        raise InvalidParameterError("out", allowed="a path whose parent directory exists", received=str(out))


def prune_checkpoint(model_dir: str | Path, out: str | Path, *, plan: PruningPlan,
                     calibration: Sequence[str | os.PathLike[str]] | None = None,
                     calibration_tokens: int = 8192, seq_len: int = 256, heal_steps: int = 0,
                     heal_resume: bool = False, heal_options: dict[str, Any] | None = None,
                     device: str = "cpu", show_progress: bool = True) -> PruneResult:
    """Prune ``model_dir`` by ``plan`` into the new directory ``out``.

    ``calibration``: text files (globs allowed; default ``austen-*.txt``), at least
    ``max(4 * seq_len, calibration_tokens // 4)`` tokens. ``heal_steps`` > 0 distils the original
    into a LoRA for that many steps (see :mod:`.heal`; ``heal_options`` are further
    :class:`~.heal.HealSettings` fields) and merges it before saving.
    """
    started = time.perf_counter()
    source, out = Path(model_dir).expanduser(), Path(out).expanduser()
    shape = read_model_shape(source)
    plan.check(shape)
    _check_out(out)
    if seq_len < 16 or calibration_tokens < seq_len:
        raise InvalidParameterError("calibration_tokens", allowed=f"at least seq_len ({seq_len}) and seq_len >= 16",
                                    received=calibration_tokens)
    if heal_steps < 0:
        raise InvalidParameterError("heal_steps", allowed="a whole number >= 0", received=heal_steps)
    settings = None
    if heal_steps:
        from .heal import HealSettings

        try:
            settings = HealSettings(steps=heal_steps, **{"seq_len": seq_len, **(heal_options or {})})
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError("heal_options", allowed="valid HealSettings fields",
                                        received=str(exc)) from None
    calib = load_calibration(calibration, tokenizer_dir=source,
                             min_tokens=max(4 * seq_len, calibration_tokens // 4))

    import torch
    from transformers import AutoModelForCausalLM

    from .heal import copy_side_files
    from .scoring import choose_indices, score_model
    from .surgery import apply_indices

    original: Any = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
    original = original.to(device)
    scores = score_model(original, calib.token_ids, seq_len=seq_len, max_tokens=calibration_tokens,
                         mlp=plan.mlp_size is not None, heads=plan.heads_per_group is not None,
                         show_progress=show_progress)
    indices = choose_indices(scores, num_layers=shape.num_layers, drop_layers=plan.drop_layers,
                             layers=plan.layers, mlp_size=plan.mlp_size, heads_per_group=plan.heads_per_group,
                             num_kv_heads=shape.num_kv_heads)
    config = original.config.to_dict()
    state, new_config = apply_indices(original.state_dict(), config, indices)
    config_class = type(original.config)
    pruned_config = config_class.from_dict({k: v for k, v in new_config.items() if k != "transformers_version"})
    pruned_config.architectures = [SUPPORTED_ARCHITECTURES[shape.model_type]]
    with torch.device(device):
        pruned = AutoModelForCausalLM.from_config(pruned_config, dtype=torch.float32)
    missing, unexpected = pruned.load_state_dict(state, strict=False)
    # lm_head may be absent from the state dict of a tied model; tying restores it.
    if unexpected or [k for k in missing if not (shape.tied_embeddings and k == "lm_head.weight")]:
        raise RuntimeError(f"pruned state dict does not fit: missing {missing}, unexpected {unexpected}")
    pruned.tie_weights()

    heal_record: dict[str, Any] | None = None
    state_dir = out.with_name(out.name + ".heal-state")
    if settings is not None:
        from .heal import heal, merge_lora

        report = heal(pruned, original, calib.token_ids, settings=settings, state_dir=state_dir,
                      resume=heal_resume, show_progress=show_progress,
                      metadata={"kept": indices.to_json(), "teacher": str(source), "calibration": list(calib.paths),
                                "device": device})
        merge_lora(pruned)
        heal_record = {**asdict(report), "calibration": list(calib.paths), "device": device,
                       "method": ("KL distillation from the original into every weight but the tied embedding"
                                  if settings.mode == "full" else
                                  "KL distillation from the original into LoRA (+ RMSNorm weights), merged")}

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    pruned.save_pretrained(str(tmp))
    copy_side_files(source, tmp)
    params_before, params_after = count_parameters(original), count_parameters(pruned)
    dropped = tuple(i for i in range(shape.num_layers) if i not in indices.kept_layers)
    record = {
        "format": RECORD_FORMAT,
        "source_model": str(source),
        "plan": plan.to_json(),
        "removed": {"layers": list(dropped),
                    "mlp": None if plan.mlp_size is None else [shape.intermediate_size, plan.mlp_size],
                    "heads": None if plan.heads_per_group is None else
                    [shape.num_heads, plan.heads_per_group * shape.num_kv_heads]},
        "kept": indices.to_json(),
        "scoring": {
            "layers": "mean angular distance arccos(cos(input, output))/pi per token (lower = removed first)",
            "mlp_channels": "mean |act(gate) * up| x ||down column||, top-k per layer",
            "heads": "mean ||o_proj slice x head output||, top-k inside each KV group",
            "calibration": list(calib.paths), "calibration_tokens": scores.tokens, "seq_len": seq_len,
            "layer_angular_distance": list(scores.layer_angular_distance),
        },
        "shape_before": asdict(shape),
        "shape_after": asdict(ModelShape.from_config(pruned.config.to_dict())),
        "params_before": params_before,
        "params_after": params_after,
        "healing": heal_record,
    }
    (tmp / PRUNING_RECORD).write_text(json.dumps(record, indent=2))
    os.replace(tmp, out)
    shutil.rmtree(state_dir, ignore_errors=True)
    return PruneResult(out=out, params_before=params_before, params_after=params_after,
                       num_layers_before=shape.num_layers, num_layers_after=len(indices.kept_layers),
                       dropped_layers=dropped, mlp_size=int(pruned.config.intermediate_size),
                       num_heads=int(pruned.config.num_attention_heads),
                       healed_steps=0 if settings is None else settings.steps,
                       seconds=time.perf_counter() - started)
