"""``lean-inference prune MODEL --out DIR``: the command line of model pruning (layer 3).

Registered on the main CLI with ``add_prune_commands(sub)``. Heavy imports (torch,
transformers) happen only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lean_core.errors import InvalidParameterError

__all__ = ["add_prune_commands"]

_EPILOG = """examples:
  lean-inference prune --out smol-22 --drop-layers 8
  lean-inference prune ./my-llama --out ./my-llama-lean --drop-layers 4 --mlp-size 1152 --heal-steps 50
  lean-inference prune ./smol-lean --out ./smol-lean-healed --adapter gpu-out/adapter.safetensors

Supported architectures: llama, mistral, qwen2, qwen3. The output is a plain Hugging Face
checkpoint (stock vLLM and transformers load it) plus pruning.json."""


def _cmd_prune(args: argparse.Namespace) -> int:
    from lean_backends.pruning.spec import PruningPlan, parse_layer_list

    model = args.model
    if model is None:
        from lean_core.assets import smollm2_dir

        model = str(smollm2_dir())
    if args.adapter:
        return _merge(args, Path(model))
    if args.layers is not None and args.drop_layers:
        raise InvalidParameterError("--layers", allowed="either --layers or --drop-layers, not both",
                                    received=args.layers)
    plan = PruningPlan(drop_layers=args.drop_layers or 0,
                       layers=None if args.layers is None else parse_layer_list(args.layers),
                       mlp_size=args.mlp_size, heads_per_group=args.heads_per_group)
    from lean_backends.pruning.checkpoint import prune_checkpoint

    heal_options: dict[str, Any] = {"batch_size": args.heal_batch, "mode": args.heal_mode}
    if args.heal_lr is not None:
        heal_options["lr"] = args.heal_lr
    result = prune_checkpoint(model, args.out, plan=plan, calibration=args.calibration,
                              calibration_tokens=args.calibration_tokens, seq_len=args.seq_len,
                              heal_steps=args.heal_steps, heal_resume=args.heal_resume,
                              heal_options=heal_options, device=args.device, show_progress=not args.quiet)
    print(f"pruned {model} -> {result.out}: {result.params_before:,} -> {result.params_after:,} parameters "
          f"({result.params_reduction:.1%} fewer), layers {result.num_layers_before} -> {result.num_layers_after} "
          f"(dropped {list(result.dropped_layers)}), MLP {result.mlp_size}, heads {result.num_heads}, "
          f"healed {result.healed_steps} steps, {result.seconds:.0f} s")
    return 0


def _merge(args: argparse.Namespace, model: Path) -> int:
    if args.drop_layers or args.layers or args.mlp_size or args.heads_per_group or args.heal_steps:
        raise InvalidParameterError("--adapter", allowed="no pruning or healing options (it merges only)",
                                    received=args.adapter)
    if not (model / "pruning.json").is_file():
        raise InvalidParameterError("MODEL", allowed="the pruned checkpoint (with pruning.json) the adapter was "
                                    "trained on", received=str(model))
    if Path(args.out).exists():
        raise InvalidParameterError("--out", allowed="a directory that does not exist yet", received=args.out)
    from lean_backends.pruning.heal import merge_adapter_into_checkpoint

    if not Path(args.adapter).is_file():
        raise InvalidParameterError("--adapter", allowed="an adapter.safetensors file", received=args.adapter)
    try:
        out = merge_adapter_into_checkpoint(model, args.adapter, args.out)
    except ValueError as exc:  # not an adapter of ours, or trained on another pruning
        raise InvalidParameterError("--adapter", allowed=f"an adapter trained on {model}", received=str(exc)) from None
    print(f"healed checkpoint written to {out}")
    return 0


def add_prune_commands(sub: Any) -> argparse.ArgumentParser:
    """Register ``prune`` on the main CLI's sub-parsers."""
    from lean_cli._argtypes import non_negative_int, positive_float, positive_int

    parser: argparse.ArgumentParser = sub.add_parser(
        "prune", help="prune a checkpoint (layers, MLP width, heads) into a plain checkpoint vLLM loads",
        description="Remove decoder layers, MLP channels and attention heads chosen by importance on "
                    "calibration text, optionally heal by distillation, and write a plain checkpoint.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default=None,
                        help="local checkpoint directory (default: the bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--out", required=True, help="new output directory (must not exist)")
    what = parser.add_argument_group("what to remove (at least one)")
    what.add_argument("--drop-layers", type=non_negative_int, default=0, metavar="N",
                      help="remove the N layers whose output differs least from their input (angular distance)")
    what.add_argument("--layers", default=None, metavar="I,J,...",
                      help="remove exactly these 0-based layer indices instead of choosing by score")
    what.add_argument("--mlp-size", type=positive_int, default=None, metavar="SIZE",
                      help="new MLP intermediate size, the same in every layer (SmolLM2: 1536 -> e.g. 1024)")
    what.add_argument("--heads-per-group", type=positive_int, default=None, metavar="M",
                      help="query heads kept per KV group (SmolLM2 has 3 groups of 3: 2 keeps 6 of 9 heads)")
    calib = parser.add_argument_group("calibration (scoring and healing; never the evaluation text)")
    calib.add_argument("--calibration", action="append", default=None, metavar="PATH",
                       help="calibration text file or glob, repeatable (default: austen-*.txt from "
                            "LEAN_INFERENCE_CALIBRATION_DIR or ../shared/data/text); too short is an error")
    calib.add_argument("--calibration-tokens", type=positive_int, default=8192,
                       help="tokens used for scoring (default: 8192)")
    calib.add_argument("--seq-len", type=positive_int, default=256,
                       help="tokens per calibration/healing window (default: 256)")
    healing = parser.add_argument_group("healing (distillation from the original: a merged LoRA or all weights)")
    healing.add_argument("--heal-steps", type=non_negative_int, default=0,
                         help="optimizer steps of healing; 0 = none (default). ~8 s per step on a 2-core CPU: "
                              "heal long runs on a GPU with benchmarks/gpu/heal_pruned.py")
    healing.add_argument("--heal-batch", type=positive_int, default=4, help="windows per healing step (default: 4)")
    healing.add_argument("--heal-mode", choices=("lora", "full"), default="lora",
                         help="lora: a LoRA on every linear layer + RMSNorm weights, merged (default); full: every "
                              "weight but the tied embedding (heals further, needs ~4x the memory of the weights)")
    healing.add_argument("--heal-lr", type=positive_float, default=None, help="peak learning rate (default: 5e-4)")
    healing.add_argument("--heal-resume", action="store_true",
                         help="continue an interrupted healing run from OUT.heal-state/ (saved every 25 steps)")
    healing.add_argument("--adapter", default=None, metavar="FILE",
                         help="merge this adapter (from heal_pruned.py) into MODEL, the pruned checkpoint it was "
                              "trained on, and write the result to --out; no pruning is done")
    parser.add_argument("--device", default="cpu", help="torch device for scoring and healing (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_cmd_prune)
    return parser
