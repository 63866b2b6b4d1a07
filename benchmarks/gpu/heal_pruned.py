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

Full-weight healing on teacher samples (session 7; run E of BENCHMARKS.md, 1.248x)::

    python3 benchmarks/gpu/heal_pruned.py --teacher GGUF --pruned PLAN --text 'TEXT/*.txt' --out /tmp/heal \
        --mode full --lr 5e-4 --samples-per-opening 2 --sample-batch 2048 \
        --eval-text TEXT/wikitext-2-raw-v1.test.joined.txt --steps 4000 --batch 16 --seq-len 512 \
        --checkpoint-every 400 --device cuda --bf16 --export-bf16

(~157 s of sampling, then ~0.18 s per step on an H100: two 10-minute calls, the second with
``--resume``, which also reuses the first call's samples from ``heal_tokens.json``.)

Continuing a run on a fresh machine (session 8; runs F and G of BENCHMARKS.md): a lent machine goes
back after 30 minutes held and the optimizer state (~0.6 GB) cannot travel, so a longer healing is a
chain of runs, each starting from the previous run's brought-back export with a fresh optimizer and
new teacher samples::

    python3 benchmarks/gpu/heal_pruned.py ... --mode full --init-adapter E/adapter_bf16.safetensors \
        --sample-seed 2 --lr 3e-4 --batch 32 --steps 3600 --eval-text TEXT/wiki.valid.tokens --eval-windows 64

(batch 32 gives ~1.75x the tokens per second of batch 16 on an H100; ~0.24 s per step with
checkpoints). Choose settings on ``wiki.valid.tokens`` and measure the test file once at the end.

``--samples-per-opening`` adds continuations sampled from the teacher (``pruning/teacher_text.py``)
after every paragraph opening of ``--text``; ``--eval-text`` (only WikiText is accepted there, and
never as ``--text``) prints the perplexity of the 16-window protocol at every checkpoint, so a run
shows its curve; ``--export-bf16`` writes ``adapter_bf16.safetensors`` (a full-mode adapter holds
every layer: ~155 MB for the best SmolLM2 plan, brought back in parts).
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
from pruning.perplexity import measure_perplexity  # noqa: E402
from pruning.surgery import PrunedIndices, apply_indices  # noqa: E402
from pruning.teacher_text import paragraph_openings, sample_continuations  # noqa: E402


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


def _pruning_record(pruned: str) -> dict[str, Any] | None:
    """``--pruned``'s pruning.json (a file, or a directory holding it), or None."""
    path = Path(pruned)
    record_file = path if path.is_file() else path / "pruning.json"
    return json.loads(record_file.read_text()) if record_file.is_file() else None


def _load_student(pruned: str, teacher: Any) -> tuple[Any, dict[str, Any] | None]:
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(pruned)
    record = _pruning_record(pruned)
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
    parser.add_argument("--mode", choices=heal_module.HEAL_MODES, default="lora",
                        help="lora: adapters (default); full: every weight but the embedding (bf16 export ~2 bytes/param)")
    parser.add_argument("--samples-per-opening", type=int, default=0,
                        help="also heal on teacher samples: this many continuations per paragraph opening of "
                             "--text (default: 0, none)")
    parser.add_argument("--sample-tokens", type=int, default=480, help="new tokens per teacher sample (default: 480)")
    parser.add_argument("--sample-batch", type=int, default=512, help="prompts per sampling batch (default: 512)")
    parser.add_argument("--sample-seed", type=int, default=0,
                        help="seed of the first sampling round, +1 per round (default: 0); a continued run "
                             "takes another one so it trains on new samples")
    parser.add_argument("--init-adapter", default=None,
                        help="adapter of an earlier run (e.g. a brought-back adapter_bf16.safetensors) merged into "
                             "the student before healing: continue a run on a fresh machine, fresh optimizer")
    parser.add_argument("--eval-text", default=None,
                        help="evaluation text (WikiText-2 raw test, or wiki.valid.tokens to choose settings "
                             "without looking at the test): perplexity before, at each checkpoint and after; "
                             "never trained on")
    parser.add_argument("--eval-windows", type=int, default=16,
                        help="512-token windows of --eval-text to score (default: 16, the benchmark's protocol)")
    parser.add_argument("--lm-weight", type=float, default=0.0, help="weight of the LM loss next to KL (default: 0)")
    parser.add_argument("--checkpoint-every", type=int, default=100, help="save every N steps (default: 100)")
    parser.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the forward passes")
    parser.add_argument("--resume", action="store_true", help="continue from the state saved in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--export-bf16", action="store_true",
                        help="also write adapter_bf16.safetensors (half the bytes, to bring back a full-mode run)")
    args = parser.parse_args(argv)

    files = sorted({f for pattern in args.text for f in glob.glob(pattern)})
    if not files or any(is_evaluation_text(f) for f in files):
        raise SystemExit(f"--text {args.text}: no files, or WikiText (the evaluation text) among them")
    settings = heal_module.HealSettings(steps=args.steps, batch_size=args.batch, seq_len=args.seq_len, lr=args.lr,
                                        rank=args.rank, alpha=2.0 * args.rank, lm_weight=args.lm_weight,
                                        checkpoint_every=args.checkpoint_every, autocast_bf16=args.bf16,
                                        mode=args.mode)
    if args.eval_text is not None and not is_evaluation_text(args.eval_text):
        raise SystemExit(f"--eval-text {args.eval_text}: expected the WikiText-2 evaluation text")
    started = time.perf_counter()
    if args.init_adapter is not None:  # checked before any model loads: a wrong export fails at once
        init_tensors, init_meta = heal_module.load_adapter(args.init_adapter)
        if not heal_module.trained_on_same_pruning(init_meta, _pruning_record(args.pruned)):
            raise SystemExit(f"--init-adapter {args.init_adapter}: trained on a different pruning than --pruned "
                             f"{args.pruned} (its kept layers/channels/heads differ)")
    teacher, tokenizer = _load_teacher(args.teacher)
    student, record = _load_student(args.pruned, teacher)
    continued_from = None
    if args.init_adapter is not None:
        continued_from = {"adapter": args.init_adapter,
                          **{k: init_meta.get(k) for k in ("mode", "settings", "steps_done", "continued_from")}}
        print(f"--init-adapter: {heal_module.merge_adapter(student, init_tensors, init_meta)} tensors merged from "
              f"{args.init_adapter}", flush=True)
    texts = [Path(f).read_text(encoding="utf-8", errors="replace") for f in files]
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
    real_tokens = len(ids)
    teacher.to(args.device)
    student.to(args.device)
    sample_seconds, samples = 0.0, 0
    saved_tokens = Path(args.out) / "heal_tokens.json"
    if args.resume and saved_tokens.is_file():  # a resumed run trains on the very same samples
        saved = json.loads(saved_tokens.read_text())
        ids, samples = saved["ids"], saved["samples"]
    elif args.samples_per_opening > 0:
        sampled_at = time.perf_counter()
        openings = [o for text in texts for o in paragraph_openings(text, tokenizer)]
        eos = tokenizer.eos_token_id
        for round_ in range(args.samples_per_opening):
            for sample in sample_continuations(teacher, openings, new_tokens=args.sample_tokens,
                                               batch_size=args.sample_batch, eos_token_id=eos,
                                               seed=args.sample_seed + round_,
                                               autocast_bf16=args.bf16, show_progress=not args.quiet):
                ids.extend([eos, *sample])
                samples += 1
        sample_seconds = time.perf_counter() - sampled_at
        print(f"{samples:,} teacher samples from {len(openings):,} paragraph openings: "
              f"{len(ids) - real_tokens:,} tokens in {sample_seconds:.0f} s", flush=True)
        saved_tokens.parent.mkdir(parents=True, exist_ok=True)
        saved_tokens.write_text(json.dumps({"ids": ids, "samples": samples}))
    curve_file = Path(args.out) / "perplexity_curve.json"
    # A resumed run carries its curve on instead of starting it over.
    curve: list[dict[str, float]] = []
    if args.resume and curve_file.is_file():
        curve = [point for point in json.loads(curve_file.read_text()) if point["step"] >= 0]
    tokenizer_dir = Path(args.out) / "tokenizer"
    if args.eval_text is not None:
        tokenizer.save_pretrained(str(tokenizer_dir))
    out = Path(args.out)

    def evaluate(step: int) -> None:
        if args.eval_text is None:
            return
        was_training = student.training
        result = measure_perplexity(student, text=args.eval_text, tokenizer_dir=tokenizer_dir, device=args.device,
                                    max_windows=args.eval_windows)
        student.train(was_training)
        curve.append({"step": step, "perplexity": round(result.perplexity, 3)})
        print(f"step {step}: perplexity {result.perplexity:.2f} ({result.windows} windows)", flush=True)
        curve_file.write_text(json.dumps(curve, indent=2))

    if not curve:
        evaluate(0)
    print(f"teacher {args.teacher}; student {student.config.num_hidden_layers} layers, MLP "
          f"{student.config.intermediate_size}, {student.config.num_attention_heads} heads; {len(ids):,} healing "
          f"tokens ({real_tokens:,} from {len(files)} files); load {time.perf_counter() - started:.1f} s", flush=True)
    report = heal_module.heal(student, teacher, ids, settings=settings, state_dir=args.out, resume=args.resume,
                              show_progress=not args.quiet, on_checkpoint=evaluate,
                              metadata={"kept": None if record is None else record.get("kept"),
                                        "continued_from": continued_from,
                                        "teacher": args.teacher, "calibration": files, "device": args.device})
    summary = {**{k: getattr(report, k) for k in ("steps", "resumed_from", "tokens_per_step", "seconds",
                                                  "first_loss", "last_loss", "settings")},
               "calibration_tokens": real_tokens, "teacher_samples": samples,
               "teacher_sample_tokens": len(ids) - real_tokens, "sampling_seconds": round(sample_seconds, 1),
               "adapter_bytes": (out / heal_module.ADAPTER_FILE).stat().st_size, "perplexity_curve": curve}
    if args.export_bf16:
        import torch

        tensors, meta = heal_module.load_adapter(out / heal_module.ADAPTER_FILE)
        exported = {k: v.to(torch.bfloat16) for k, v in tensors.items()}
        heal_module.save_adapter(exported, out / "adapter_bf16.safetensors", metadata=meta)
        summary["adapter_bf16_bytes"] = (out / "adapter_bf16.safetensors").stat().st_size
        if args.mode == "full":  # the student as merging the bf16 export here will make it (step -1)
            heal_module.merge_adapter(student, exported, meta)
            evaluate(-1)
    (out / "heal_report.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    if summary["adapter_bytes"] > 15 * 2**20:
        print("warning: the adapter is over 15 MiB and a run call returns files up to 16 MB: split it "
              "(split -b 15000000 -d adapter.safetensors \"$OUT\"/adapter.part) and `cat` the parts back here")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
