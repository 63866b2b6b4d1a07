"""Heal a pruned model on a GPU: distil the original into a LoRA and write ONLY the adapter.

Standalone: imports torch, transformers, safetensors, numpy, tqdm and the repository's pure-torch
pruning modules (``backends/pruning/{heal,surgery,depth,width}.py``, loaded as the package
``pruning`` from ``backends/``), so it runs on the lent GPU image without pydantic or lean_core.

The pruned model comes from ``--pruned``: either a pruned checkpoint directory, or just its
``pruning.json`` (a file, or a directory holding it) - then the model is rebuilt from the teacher's
weights with the recorded kept layers/channels/heads, so no pruned checkpoint has to travel (a
135M float32 checkpoint is ~400 MB; a run call carries 64 MiB). ``--teacher`` is an HF checkpoint
directory or the SmolLM2 ``.gguf`` file itself (dequantized to float32 exactly as
``lean_core.assets`` does here, which keeps the rebuilt student bit-identical to the local pruned
checkpoint; a bf16 conversion differs by bf16 rounding).

What comes back: ``OUT/adapter.safetensors`` (LoRA on every linear layer + RMSNorm weights,
float32; size = rank x sum(in + out) x layers x 4 bytes: for SmolLM2 pruned to 26 layers at MLP
1216 that is rank x 0.96 MB, so the default rank 12 gives ~11.5 MB, under the 16 MB limit on
returned files; rank 16 would be ~15.3 MB, too close; a larger rank travels split into parts and
is put back together with ``cat``) and ``OUT/heal_report.json``. Merge here with::

    .venv/bin/python -m lean_backends.pruning.heal merge --checkpoint PRUNED \
        --adapter adapter.safetensors --out PRUNED-healed

Exact command on the device (repository root; the GGUF and the ``gguf`` wheel carried as in
../shared/gpu/README.md, ``pruning.json`` of the local pruned checkpoint copied into the tree, e.g.
``benchmarks/results/prune_best.pruning.json``)::

    PYTHONPATH=/tmp/site_slim python3 benchmarks/gpu/heal_pruned.py \
        --teacher /tmp/payload/SmolLM2-135M-Instruct.Q4_1.gguf \
        --pruned benchmarks/results/prune_best.pruning.json \
        --text '../shared/data/text/austen-*.txt' --out /tmp/heal \
        --steps 2000 --batch 16 --seq-len 512 --lr 5e-4 --device cuda --bf16 \
        && cp /tmp/heal/adapter.safetensors /tmp/heal/heal_report.json "$OUT"/

(``../shared/data/text`` is not in the tree on the device: carry the three Austen files, ~2 MB,
e.g. copied under ``.gpu/text/``, and point ``--text`` there.) Expected runtime: not measured yet;
estimated 3-6 minutes for 2,000 steps x 16 x 512 tokens (16M tokens; a teacher forward plus a
student forward/backward of a 100M model per step) on one H100 in bf16 autocast, well inside the
10-minute limit of one call. If a call is cut off, run the same command with ``--resume`` while
the machine is warm: the adapter and optimizer state are saved to ``--out`` every
``--checkpoint-every`` steps (default 100).
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "backends"))  # `pruning` = backends/pruning, without lean_backends' own imports

from pruning import heal as heal_module  # noqa: E402
from pruning.evaluation_text import is_evaluation_text  # noqa: E402
from pruning.surgery import PrunedIndices, apply_indices  # noqa: E402


def _load_teacher(teacher: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(teacher)
    if path.suffix == ".gguf":
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    return model, tokenizer


def _load_student(pruned: str, teacher: Any) -> tuple[Any, dict[str, Any] | None]:
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(pruned)
    record_file = path if path.is_file() else path / "pruning.json"
    record = json.loads(record_file.read_text()) if record_file.is_file() else None
    if path.is_dir() and any(path.glob("*.safetensors")):
        return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32), record
    if record is None:
        raise SystemExit(f"--pruned {pruned}: neither a checkpoint directory nor a pruning.json")
    indices = PrunedIndices.from_json(record["kept"])
    state, config = apply_indices(teacher.state_dict(), teacher.config.to_dict(), indices)
    config_class = type(teacher.config)
    student = AutoModelForCausalLM.from_config(
        config_class.from_dict({k: v for k, v in config.items() if k not in ("transformers_version",
                                                                           "quantization_config")}),
        dtype=torch.float32)
    missing, unexpected = student.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise SystemExit(f"rebuilt state dict does not fit: missing {missing}, unexpected {unexpected}")
    student.tie_weights()
    return student, record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--teacher", required=True, help="original model: HF checkpoint dir or .gguf file")
    parser.add_argument("--pruned", required=True, help="pruned checkpoint dir, or its pruning.json (file or dir)")
    parser.add_argument("--text", action="append", required=True,
                        help="calibration text file or glob (repeatable); never the evaluation text")
    parser.add_argument("--out", required=True, help="directory for adapter.safetensors, state and report")
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps (default: 2000)")
    parser.add_argument("--batch", type=int, default=16, help="windows per step (default: 16)")
    parser.add_argument("--seq-len", type=int, default=512, help="tokens per window (default: 512)")
    parser.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (default: 5e-4)")
    parser.add_argument("--rank", type=int, default=12, help="LoRA rank (default: 12, ~11.5 MB adapter for SmolLM2)")
    parser.add_argument("--lm-weight", type=float, default=0.0, help="weight of the LM loss next to KL (default: 0)")
    parser.add_argument("--checkpoint-every", type=int, default=100, help="save every N steps (default: 100)")
    parser.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the forward passes")
    parser.add_argument("--resume", action="store_true", help="continue from the state saved in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    files = sorted({f for pattern in args.text for f in glob.glob(pattern)})
    if not files or any(is_evaluation_text(f) for f in files):
        raise SystemExit(f"--text {args.text}: no files, or WikiText (the evaluation text) among them")
    settings = heal_module.HealSettings(steps=args.steps, batch_size=args.batch, seq_len=args.seq_len, lr=args.lr,
                                        rank=args.rank, alpha=2.0 * args.rank, lm_weight=args.lm_weight,
                                        checkpoint_every=args.checkpoint_every, autocast_bf16=args.bf16)
    started = time.perf_counter()
    teacher, tokenizer = _load_teacher(args.teacher)
    student, record = _load_student(args.pruned, teacher)
    ids: list[int] = []
    for f in files:
        ids.extend(tokenizer(Path(f).read_text(encoding="utf-8", errors="replace"), add_special_tokens=False)["input_ids"])
    teacher.to(args.device)
    student.to(args.device)
    print(f"teacher {args.teacher}; student {student.config.num_hidden_layers} layers, MLP "
          f"{student.config.intermediate_size}, {student.config.num_attention_heads} heads; {len(ids):,} calibration "
          f"tokens from {len(files)} files; load {time.perf_counter() - started:.1f} s", flush=True)
    report = heal_module.heal(student, teacher, ids, settings=settings, state_dir=args.out, resume=args.resume,
                              show_progress=not args.quiet,
                              metadata={"kept": None if record is None else record.get("kept"),
                                        "teacher": args.teacher, "calibration": files, "device": args.device})
    out = Path(args.out)
    summary = {**{k: getattr(report, k) for k in ("steps", "resumed_from", "tokens_per_step", "seconds",
                                                  "first_loss", "last_loss", "settings")},
               "calibration_tokens": len(ids), "adapter_bytes": (out / heal_module.ADAPTER_FILE).stat().st_size}
    (out / "heal_report.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    if summary["adapter_bytes"] > 15 * 2**20:
        print("warning: the adapter is over 15 MiB and a run call returns files up to 16 MB: split it "
              "(split -b 15000000 -d adapter.safetensors \"$OUT\"/adapter.part) and `cat` the parts back here")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
