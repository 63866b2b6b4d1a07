"""Settings and results of ``vllm_gpu_bench.py``: dataclasses, their JSON, the text table and the PNG chart.

No heavy imports at module level (matplotlib only inside ``chart``): vLLM's spawned engine
processes import the script, and with it this module, again.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BenchSettings",
    "GpuBenchResult",
    "RoundTiming",
    "ThroughputResult",
    "TtftResult",
    "chart",
    "table",
    "to_json",
]


@dataclass(frozen=True)
class BenchSettings:
    """One run's settings; every engine in the run gets the same ones."""

    model: str
    """Checkpoint directory of the unpruned model."""
    pruned: str | None = None
    """Pruned checkpoint directory (None: no pruned section)."""
    dtype: str = "bfloat16"
    prompts: int = 256
    max_tokens: int = 128
    rounds: int = 5
    """Timed throughput rounds per engine (fresh prompts each)."""
    prefix_tokens: int = 1024
    ttft_requests: int = 8
    """Cold and warm requests each in the prefix-cache test."""
    max_model_len: int = 4096
    gpu_memory_utilization: float = 0.85
    raw_defaults: bool = True
    """Also time raw ``vllm.LLM`` with its own scheduler defaults (one more engine start)."""
    random_1b: bool = False
    """Also time random-weight ~1B shapes (speed only)."""
    compare: bool = True
    """Sections 1-4 (False: only the random-weight shapes)."""
    show_progress: bool = True


@dataclass
class RoundTiming:
    seconds: float
    completion_tokens: int
    prompt_tokens: int

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds


@dataclass
class ThroughputResult:
    """Completion tokens per second of one engine/class over the timed rounds."""

    label: str
    rounds: list[RoundTiming] = field(default_factory=list)
    tokens_per_s: float = 0.0
    """Mean over the rounds of completion tokens / wall seconds."""
    tokens_per_s_best: float = 0.0
    startup_s: float = 0.0
    """Engine start plus warm-up batch."""
    scheduler: dict[str, int] = field(default_factory=dict)
    """The engine's resolved ``max_num_seqs`` and ``max_num_batched_tokens``."""

    def finish(self) -> ThroughputResult:
        rates = [r.tokens_per_s for r in self.rounds]
        self.tokens_per_s, self.tokens_per_s_best = statistics.fmean(rates), max(rates)
        return self


@dataclass
class TtftResult:
    """Time to the first streamed token, one request at a time, through ``ChatLeanVLLM.stream``."""

    prefix_tokens: int
    """Tokens of each request's document (the shared part, for warm requests)."""
    cold_ttft_s: list[float] = field(default_factory=list)
    warm_ttft_s: list[float] = field(default_factory=list)
    cold_cached_input_tokens: list[int] = field(default_factory=list)
    warm_cached_input_tokens: list[int] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    cold_median_s: float = 0.0
    warm_median_s: float = 0.0
    speedup: float = 0.0
    """cold median / warm median."""


@dataclass
class GpuBenchResult:
    benchmark: str
    date: str
    device: str
    versions: dict[str, str]
    settings: dict[str, Any]
    model: str
    base_shape: dict[str, int] | None = None
    chat_lean_vllm: ThroughputResult | None = None
    lean_vllm_llamaindex: ThroughputResult | None = None
    async_llm: ThroughputResult | None = None
    """vLLM's ``AsyncLLM.generate`` on our classes' engine, no wrapper (see ``_vllm_bench_measure.measure_async_engine``)."""
    raw_vllm: ThroughputResult | None = None
    """Raw ``vllm.LLM`` with our engine's settings, scheduler limits included."""
    raw_vllm_defaults: ThroughputResult | None = None
    """Raw ``vllm.LLM`` with its own offline-batch scheduler defaults (None: not measured)."""
    ratio_chat_vs_raw: float | None = None
    ratio_llamaindex_vs_raw: float | None = None
    ratio_chat_vs_raw_defaults: float | None = None
    ratio_async_llm_vs_raw: float | None = None
    ratio_chat_vs_async_llm: float | None = None
    greedy_prompts: int = 0
    greedy_identical_chat: int = 0
    greedy_identical_llamaindex: int | None = None
    greedy_identical_chat_vs_raw_defaults: int | None = None
    greedy_identical_share_chat: float = 0.0
    greedy_identical_share_llamaindex: float | None = None
    greedy_mismatch_examples: list[dict[str, str]] = field(default_factory=list)
    ttft: TtftResult | None = None
    pruned_model: str | None = None
    pruned_shape: dict[str, int] | None = None
    pruned: ThroughputResult | None = None
    ratio_pruned_vs_unpruned: float | None = None
    sample_answers: dict[str, str] = field(default_factory=dict)
    random_1b: dict[str, Any] | None = None
    """``random weights, speed only``: shapes, tokens/s and their ratio."""
    notes: list[str] = field(default_factory=list)


def to_json(result: GpuBenchResult) -> str:
    """The result as the JSON that ``--out`` holds (without its final newline)."""
    return json.dumps(asdict(result), indent=2)


def table(result: GpuBenchResult) -> str:
    """The summary table printed at the end of a run."""

    def rate(t: ThroughputResult | None) -> str:
        return "-" if t is None else f"{t.tokens_per_s:,.0f}"

    rows = [("raw vllm.LLM.generate tok/s", rate(result.raw_vllm), "our engine's settings"),
            ("raw vllm.LLM.generate tok/s", rate(result.raw_vllm_defaults), "vLLM's own defaults"),
            ("ChatLeanVLLM tok/s", rate(result.chat_lean_vllm), f"{result.ratio_chat_vs_raw or 0:.3f} x raw"),
            ("vLLM AsyncLLM (same engine) tok/s", rate(result.async_llm),
             f"{result.ratio_async_llm_vs_raw:.3f} x raw" if result.ratio_async_llm_vs_raw else "-"),
            ("LeanVLLM tok/s", rate(result.lean_vllm_llamaindex),
             f"{result.ratio_llamaindex_vs_raw:.3f} x raw" if result.ratio_llamaindex_vs_raw else "-"),
            ("greedy identical (chat)", f"{result.greedy_identical_chat}/{result.greedy_prompts}", ""),
            ("greedy identical (llamaindex)",
             "-" if result.greedy_identical_llamaindex is None
             else f"{result.greedy_identical_llamaindex}/{result.greedy_prompts}", "")]
    if result.ttft:
        rows += [("TTFT cold (new prefix), median s", f"{result.ttft.cold_median_s:.4f}", ""),
                 ("TTFT warm (cached prefix), median s", f"{result.ttft.warm_median_s:.4f}",
                  f"{result.ttft.speedup:.2f} x faster")]
    if result.pruned:
        rows.append(("pruned ChatLeanVLLM tok/s", rate(result.pruned),
                     f"{result.ratio_pruned_vs_unpruned or 0:.3f} x unpruned"))
    if result.random_1b:
        r = result.random_1b
        rows += [("random 1B pruned/full, ChatLeanVLLM",
                  f"{r['pruned']['tokens_per_s']:,.0f} / {r['full']['tokens_per_s']:,.0f}", f"{r['ratio_pruned_vs_full']:.3f}"),
                 ("random 1B pruned/full, raw vLLM",
                  f"{r['pruned_raw']['tokens_per_s']:,.0f} / {r['full_raw']['tokens_per_s']:,.0f}",
                  f"{r['ratio_pruned_vs_full_raw']:.3f}")]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value:>16}  {ratio}" for name, value, ratio in rows)


def chart(data: dict[str, Any], path: Path) -> None:
    """Bars from the JSON: tokens/s per engine/class, cold/warm time to first token, and the
    random-weight 1B shapes' tokens/s (each panel only when its section ran)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, str, list[tuple[str, float]], str]] = []  # title, y label, bars, value format
    bars = [(label, float(data[key]["tokens_per_s"])) for key, label in (
        ("raw_vllm", "raw vLLM\n(our settings)"), ("raw_vllm_defaults", "raw vLLM\n(its defaults)"),
        ("async_llm", "vLLM AsyncLLM\n(same engine)"), ("chat_lean_vllm", "ChatLeanVLLM"), ("lean_vllm_llamaindex", "LeanVLLM"), ("pruned", "ChatLeanVLLM\npruned"))
        if data.get(key)]
    settings = data["settings"]
    if bars:
        panels.append((f"{settings['prompts']} prompts x {settings['max_tokens']} tokens, {settings['dtype']}",
                       "completion tokens / s", bars, "{:,.0f}"))
    if data.get("ttft"):
        ttft = data["ttft"]
        panels.append((f"{ttft['prefix_tokens']}-token prefix: {ttft['speedup']:.2f}x", "time to first token (ms)",
                       [("new prefix", ttft["cold_median_s"] * 1000), ("cached prefix", ttft["warm_median_s"] * 1000)],
                       "{:.1f} ms"))
    if data.get("random_1b"):
        r = data["random_1b"]
        panels.append((f"random ~1B weights, speed only: raw {r['ratio_pruned_vs_full_raw']:.2f}x, "
                       f"ours {r['ratio_pruned_vs_full']:.2f}x", "completion tokens / s",
                       [("raw vLLM\nfull", r["full_raw"]["tokens_per_s"]),
                        ("raw vLLM\npruned", r["pruned_raw"]["tokens_per_s"]),
                        ("ChatLeanVLLM\nfull", r["full"]["tokens_per_s"]),
                        ("ChatLeanVLLM\npruned", r["pruned"]["tokens_per_s"])], "{:,.0f}"))
    if not panels:
        return
    widths = [2.4 if len(p[2]) > 2 else 1.0 for p in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.3 * sum(widths) + 1.5, 3.8), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for ax, (title, ylabel, values, fmt) in zip(axes[0], panels, strict=True):
        ax.bar([v[0] for v in values], [v[1] for v in values], color=["#999999", "#bbbbbb", "#dddddd", "#4C72B0",
                                                                       "#55A868", "#C44E52"][:len(values)])
        for x, (_, value) in enumerate(values):
            ax.annotate(fmt.format(value), (x, value), ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, max(v[1] for v in values) * 1.18)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"{data['device']}, vLLM {data['versions'].get('vllm')}, {data['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
