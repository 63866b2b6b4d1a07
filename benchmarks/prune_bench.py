"""``lean-inference bench prune``: pruned checkpoints against the original, side by side.

For the original (``--baseline``; default: the ``source_model`` in the first checkpoint's
``pruning.json``, else the bundled SmolLM2) and each ``--model``:

* ``params`` (tied tensors once) and ``num_layers``, MLP size and heads from the checkpoint;
* ``perplexity`` on ``--text`` (WikiText-2 raw test), ``--max-windows`` non-overlapping 512-token
  windows in the model's tokenizer after the first ``--skip-windows`` (default 0; e.g. 16 to score
  on text held out from a healing run that evaluated the first 16): the same windows for every
  model (same tokenizer);
* ``tokens_per_s``: completion tokens per second of the local vLLM engine on the same batch of
  chat prompts, every answer exactly ``--max-tokens`` long (``ignore_eos``: equal work for every
  model), greedy, prefix caching off, one warm-up batch first. Engines run one after the other
  in this process (each shut down after its run): original, each pruned model, original again
  (on CPU the original's engine stays up for its second run: no GPU memory to free, one start
  fewer); the original's figure is the mean of its two runs, so drift on a shared machine shows up as the
  gap between them (``baseline_runs_tokens_per_s``). ``speedup`` = tokens_per_s / original's.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lean_core.errors import InvalidParameterError

__all__ = ["PruneBenchResult", "PruneBenchRow", "run_prune_bench"]

TOPICS = ["a lighthouse", "a desert caravan", "a chess club", "a night train", "a bakery", "a glacier",
          "a school robot", "an old map", "a jazz band", "a rainy market", "a lost kite", "a moon base"]


@dataclass
class PruneBenchRow:
    name: str
    model: str
    params: int
    num_layers: int
    mlp_size: int
    num_heads: int
    perplexity: float
    tokens_per_s: float
    completion_tokens: int
    """Completion tokens of the timed batch: prompts x max_tokens (answers run to full length)."""
    generate_seconds: float
    params_ratio: float = 1.0
    """params / the original's."""
    perplexity_ratio: float = 1.0
    speedup: float = 1.0
    healed_steps: int = 0
    pruning: dict[str, Any] | None = None
    """``removed`` and ``healing`` from pruning.json."""


@dataclass
class PruneBenchResult:
    benchmark: str
    device: str
    vllm_version: str
    text: str
    windows: int
    window_tokens: int
    prompts: int
    max_tokens: int
    baseline: PruneBenchRow | None = None
    rows: list[PruneBenchRow] = field(default_factory=list)
    baseline_runs_tokens_per_s: list[float] = field(default_factory=list)
    date: str = ""
    skipped_windows: int = 0
    """Windows of ``text`` left out before the ``windows`` scored."""

    def windows_scored(self) -> str:
        """Which text the perplexities are on, in words (chart title and CLI summary)."""
        after = f" after the first {self.skipped_windows}" if self.skipped_windows else ""
        return f"{self.windows} windows of {self.window_tokens} tokens{after}"


def _prompts(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"Write a long story about {TOPICS[i % len(TOPICS)]} (number {i})."}]
            for i in range(n)]


def _checkpoint_facts(model_dir: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    config = json.loads((model_dir / "config.json").read_text())
    record_path = model_dir / "pruning.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    return config, record


def _quality(model_dir: Path, text: Path, max_windows: int, skip_windows: int) -> tuple[int, float, int]:
    import torch
    from transformers import AutoModelForCausalLM

    from lean_backends.pruning.checkpoint import count_parameters
    from lean_backends.pruning.perplexity import measure_perplexity

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    result = measure_perplexity(model, text=text, max_windows=max_windows, skip_windows=skip_windows,
                                tokenizer_dir=model_dir)
    return count_parameters(model), result.perplexity, result.windows


def _throughput(model_dir: Path, prompts: list[list[dict[str, str]]], max_tokens: int, *,
                keep_running: bool = False) -> tuple[float, int, float]:
    """Tokens per second of ``model_dir``'s engine; the engine is shut down on return unless
    ``keep_running`` (then the next call for the same model measures the running engine)."""
    from lean_backends.vllm_engine import VLLMEngineSettings, get_engine
    from lean_core.generation import SamplingOptions

    engine = get_engine(VLLMEngineSettings(model=str(model_dir), enable_prefix_caching=False))
    try:
        # Equal work for every model: a pruned model that stops early (or the original, which
        # answers some prompts in two tokens) would otherwise be timed on prefill-bound requests.
        options = SamplingOptions(max_tokens=max_tokens, ignore_eos=True)
        engine.generate_many(prompts[:4], options)  # warm-up: first batches allocate and compile
        started = time.perf_counter()
        results = engine.generate_many(prompts, options)
        seconds = time.perf_counter() - started
    finally:
        if not keep_running:
            engine.shutdown()
    tokens = sum(r.usage.output_tokens for r in results)
    return tokens / seconds, tokens, seconds


def run_prune_bench(models: Sequence[str | Path], *, text: str | Path, baseline: str | Path | None = None,
                    max_windows: int = 16, skip_windows: int = 0, prompts: int = 128, max_tokens: int = 64,
                    out: Path | None = None, chart: Path | None = None,
                    show_progress: bool = True) -> PruneBenchResult:
    """Measure the original and each pruned checkpoint (see the module docstring)."""
    from lean_backends.vllm_engine import resolve_model_dir, shutdown_engines
    from lean_benchmarks.progress import bench_progress

    dirs = [resolve_model_dir(m) for m in models]
    if not dirs:
        raise InvalidParameterError("model", allowed="one or more pruned checkpoint directories", received=[])
    text = Path(text)
    if not text.is_file():
        raise InvalidParameterError("text", allowed="an existing evaluation text file", received=str(text))
    if baseline is None:
        record = _checkpoint_facts(dirs[0])[1]
        baseline = record["source_model"] if record and Path(record["source_model"]).is_dir() else None
    base_dir = resolve_model_dir(baseline)
    from vllm import __version__ as vllm_version
    from vllm.platforms import current_platform

    from lean_benchmarks.vllm_cpu_shutdown import shorten_cpu_worker_shutdown

    shorten_cpu_worker_shutdown()  # before any engine starts
    on_cpu = current_platform.is_cpu()
    result = PruneBenchResult(
        benchmark="prune", vllm_version=vllm_version, text=str(text), windows=0, window_tokens=512,
        prompts=prompts, max_tokens=max_tokens, date=time.strftime("%Y-%m-%d"), skipped_windows=skip_windows,
        device=f"{'cpu' if on_cpu else current_platform.get_device_name()} ({platform.processor() or platform.machine()})")
    batch = _prompts(prompts)
    order = [base_dir, *dirs]
    quality: dict[Path, tuple[int, float, int]] = {}
    speed: dict[int, tuple[float, int, float]] = {}
    with bench_progress(show=show_progress) as progress:
        task = progress.add_task("perplexity", total=2 * len(order) + 1)
        for d in order:
            progress.update(task, description=f"perplexity {d.name}")
            quality[d] = _quality(d, text, max_windows, skip_windows)
            progress.advance(task)
        try:
            for i, d in enumerate([*order, base_dir]):
                progress.update(task, description=f"vLLM {d.name}")
                # On CPU the original's engine stays up for its second run (no GPU memory to give
                # back to the pruned engines): one engine start fewer, and the gap between the two
                # runs is the machine's drift alone.
                speed[i] = _throughput(d, batch, max_tokens, keep_running=on_cpu and i == 0)
                progress.advance(task)
        finally:
            shutdown_engines()
    result.baseline_runs_tokens_per_s = [speed[0][0], speed[len(order)][0]]
    base_speed = statistics.fmean(result.baseline_runs_tokens_per_s)
    for i, d in enumerate(order):
        config, record = _checkpoint_facts(d)
        params, ppl, windows = quality[d]
        result.windows = windows
        tps, tokens, seconds = speed[i] if i else (base_speed, speed[0][1] + speed[len(order)][1],
                                                   speed[0][2] + speed[len(order)][2])
        row = PruneBenchRow(
            name="original" if i == 0 else d.name, model=str(d), params=params,
            num_layers=int(config["num_hidden_layers"]), mlp_size=int(config["intermediate_size"]),
            num_heads=int(config["num_attention_heads"]), perplexity=ppl, tokens_per_s=tps,
            completion_tokens=tokens, generate_seconds=seconds,
            healed_steps=int(((record or {}).get("healing") or {}).get("steps") or
                             ((record or {}).get("healing") or {}).get("steps_done") or 0),
            pruning=None if record is None else {"removed": record.get("removed"), "healing": record.get("healing")})
        if i == 0:
            result.baseline = row
        else:
            assert result.baseline is not None
            row.params_ratio = params / result.baseline.params
            row.perplexity_ratio = ppl / result.baseline.perplexity
            row.speedup = tps / base_speed
            result.rows.append(row)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(result), indent=2))
    if chart is not None:
        _chart(result, chart)
    return result


def _chart(result: PruneBenchResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in [result.baseline, *result.rows] if r is not None]
    names = [r.name for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.45 * len(rows) + 1.8), sharey=True)
    panels = [("parameters (M)", [r.params / 1e6 for r in rows], "{:.1f}"),
              ("WikiText-2 perplexity (log)", [r.perplexity for r in rows], "{:.1f}"),
              ("vLLM completion tokens/s", [r.tokens_per_s for r in rows], "{:.0f}")]
    for ax, (title, values, fmt) in zip(axes, panels, strict=True):
        ax.barh(names, values, color=["#999999"] + ["#4C72B0"] * (len(rows) - 1))
        for y, v in enumerate(values):
            ax.annotate(fmt.format(v), (v, y), va="center", fontsize=7)
        ax.set_title(title, fontsize=9)
        if "log" in title:
            ax.set_xscale("log")
    axes[0].invert_yaxis()
    fig.suptitle(f"pruning on {result.device}: {result.windows_scored()}, "
                 f"{result.prompts} prompts x {result.max_tokens} tokens", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
