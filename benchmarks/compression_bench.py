"""``lean-inference bench compression``: context compressors side by side on public QA sets.

For every (dataset, method, target ratio) the benchmark compresses each item's context under
``CompressionBudget(ratio=target_ratio, target_model=...)`` and reports what was achieved and what
survived, measured by the harness itself (one :class:`~lean_core.tokens.TokenCounter`, one
normalisation) so that methods are compared on equal terms:

* ``achieved_ratio``: mean over items of original / compressed tokens (3.0 = "3x"); compare methods
  at the ratio they *achieve*, not the one they were asked for.
* ``answer_retention``: share of items whose gold answer (any of them; case-insensitive, whitespace
  collapsed, not inside a longer word) is still in the compressed text, over the items where it was
  in the uncompressed context; items whose question is part of the context and names the answer
  (LongBench "who was born first, A or B?") are counted apart, as keeping the question keeps them.
* ``support_retention`` (HotpotQA): share of items whose supporting-fact sentences all survive.
* ``tokens_per_s``: original tokens processed per second of compression wall time, after one
  untimed warm-up call per method (model loading is not counted).

Datasets (JSON Lines, the kind is detected from the fields): SQuAD 2.0 (one context; unanswerable
items are counted, not scored), NQ-open oracle (``passages=N`` builds N-passage contexts: the gold
passage at a pseudo-random position seeded by the item index, plus *hard* distractors, i.e. other
items' gold passages ranked by BM25 against the question with any passage holding a gold answer
dropped; that is a constructed set and must be reported as such), HotpotQA distractor (its 10
paragraphs as passages) and MiniLongBench (the prompt as context).
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lean_benchmarks.qa_datasets import (
    BenchItem,
    DatasetKind,
    Split,
    build_nq_items,
    contains_answer,
    join_context,
    load_items,
    longbench_question,
    normalize,
)
from lean_core.compression.base import Compressor, ContextInput
from lean_core.compression.types import CompressionBudget, CompressionResult
from lean_core.errors import InvalidParameterError
from lean_core.tokens import TokenCounter

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = [
    "COMPRESSORS",
    "BenchItem",
    "BenchRow",
    "CompressionBenchResult",
    "DatasetInfo",
    "TruncateCompressor",
    "build_nq_items",
    "contains_answer",
    "join_context",
    "load_items",
    "longbench_question",
    "normalize",
    "run_compression_bench",
]

AUTO = "auto"
"""A ``ratios`` entry asking each compressor to choose its own budget (``CompressionBudget(ratio="auto")``).
A compressor that cannot (``supports_auto_budget`` false, e.g. truncation) is given, item by item,
the token count the first auto-capable method kept, so both are compared at the same size."""

_ACCURACY_MAX_TOKENS = 32
_SHORT_ANSWER_CHARS = 80  # longer gold answers (summaries) are not scored by substring match


@dataclass
class DatasetInfo:
    dataset: str
    path: str
    kind: DatasetKind
    items: int
    passages: int | None
    """Passages per context (None: one text)."""
    note: str = ""


@dataclass
class BenchRow:
    """The figures of one (dataset, method, target_ratio)."""

    dataset: str
    method: str
    target_ratio: float
    """The budget: keep at most this share of the tokens (0.33 = asked for ~3x); 1.0 for ``auto``."""
    items: int
    achieved_ratio: float
    """Mean over items of original / compressed tokens."""
    achieved_ratio_pooled: float
    """Sum of original over sum of compressed tokens."""
    kept_share: float
    """Mean over items of compressed / original tokens."""
    original_tokens: int
    compressed_tokens: int
    budget_met_share: float
    """Share of items whose compressed text, counted by the harness, is within the budget."""
    answerable_items: int
    """Items with a gold answer present in the uncompressed context (the retention denominator)."""
    impossible_items: int
    """SQuAD 2.0 unanswerable items (compressed and timed, not scored)."""
    answer_retention: float | None
    answer_in_question_items: int = 0
    """Items left out of ``answer_retention`` because the question, itself part of the context
    (LongBench prompts), names the answer ("Who was born first, A or B?")."""
    support_items: int = 0
    support_retention: float | None = None
    seconds: float = 0.0
    tokens_per_s: float | None = None
    accuracy_items: int = 0
    accuracy_original: float | None = None
    accuracy_compressed: float | None = None
    budget: str = ""
    """The budget as asked: the kept share ("0.33") or "auto"."""
    within_band_share: float | None = None
    """Fixed ratios: share of items whose achieved ratio is within +-20 % of the asked one."""


@dataclass
class CompressionBenchResult:
    benchmark: str
    target_model: str
    tokenizer: str
    estimated_counts: bool
    """True when ``target_model``'s tokenizer is not available offline (cl100k stands in)."""
    ratios: list[float]
    methods: list[str]
    passages: int | None
    limit: int | None
    seed: int
    accuracy: bool
    datasets: list[DatasetInfo] = field(default_factory=list)
    rows: list[BenchRow] = field(default_factory=list)
    device: str = ""
    date: str = ""
    split: str = "all"
    """Items used: "dev" or "held_out" half (stable hash of the item id), or "all"."""


# -- the truncation baseline ----------------------------------------------------------------------
class TruncateCompressor(Compressor):
    """Head + tail truncation to the budget: keeps the first and last words, drops the middle.

    The cut is searched on word boundaries (binary search on the number of kept words, half from
    each end) with counts from :class:`TokenCounter` in the budget's target model.
    """

    name = "truncate"
    separator = "\n...\n"

    def __init__(self, *, counter: TokenCounter | None = None) -> None:
        self._counter = counter or TokenCounter()

    def compress(self, context: ContextInput, *, budget: CompressionBudget | float,
                 question: str | None = None,
                 titles: Sequence[str | None] | None = None) -> CompressionResult:
        started = time.perf_counter()
        budget = CompressionBudget.of(budget)
        text = join_context(context)
        model = budget.target_model
        first = self._counter.count(text, model)
        target = budget.tokens_for(first.tokens)
        kept, kept_tokens = text, first.tokens
        if first.tokens > target:
            words = re.findall(r"\s*\S+", text)
            low, high = 0, len(words)  # invariant: keeping `low` words fits (0 words: empty text)
            kept, kept_tokens = "", 0
            while low < high:
                mid = (low + high + 1) // 2
                candidate = self._cut(words, mid)
                tokens = self._counter.count(candidate, model).tokens
                if tokens <= target:
                    low, kept, kept_tokens = mid, candidate, tokens
                else:
                    high = mid - 1
        return CompressionResult(
            text=kept, method=self.name, original_tokens=first.tokens, compressed_tokens=kept_tokens,
            target_tokens=target, tokenizer=first.tokenizer, estimated_counts=first.estimated,
            budget_met=kept_tokens <= target, seconds=time.perf_counter() - started,
        )

    def _cut(self, words: Sequence[str], keep: int) -> str:
        head = (keep + 1) // 2
        tail = keep - head
        head_text = "".join(words[:head]).strip()
        tail_text = "".join(words[len(words) - tail:]).strip() if tail else ""
        return f"{head_text}{self.separator}{tail_text}" if tail_text else head_text


def _lean() -> Compressor:
    from lean_core.compression import LeanCompressor

    compressor: Compressor = LeanCompressor()
    return compressor


def _llmlingua(*, raw: bool) -> Callable[[], Compressor]:
    def build() -> Compressor:
        from lean_core.compression.llmlingua_backend import (  # type: ignore[import-not-found]
            LLMLinguaCompressor,
        )

        compressor: Compressor = LLMLinguaCompressor(raw=raw) if raw else LLMLinguaCompressor()
        return compressor

    return build


def _coarse_to_fine() -> Compressor:
    from lean_core.compression import compressor_for

    return compressor_for("lean+llmlingua")


COMPRESSORS: dict[str, Callable[[], Compressor]] = {
    "lean": _lean,
    "lean+llmlingua": _coarse_to_fine,
    "llmlingua": _llmlingua(raw=False),
    "llmlingua-raw": _llmlingua(raw=True),
    "truncate": TruncateCompressor,
}
"""Compressors by name, built on first use (heavy imports happen only for the methods asked for)."""


def _resolve_method(method: str | Compressor) -> tuple[str, Compressor]:
    if isinstance(method, Compressor):
        return method.name, method
    factory = COMPRESSORS.get(method)
    if factory is None:
        raise InvalidParameterError("method", allowed=f"one of {sorted(COMPRESSORS)} or a Compressor",
                                    received=method)
    return method, factory()


# -- datasets -------------------------------------------------------------------------------------
@dataclass
class _Tally:
    """Per-item measurements of one (dataset, method, ratio), turned into a BenchRow at the end."""

    ratios: list[float] = field(default_factory=list)
    shares: list[float] = field(default_factory=list)
    original: int = 0
    compressed: int = 0
    met: int = 0
    answerable: int = 0
    retained: int = 0
    impossible: int = 0
    given_away: int = 0
    support_items: int = 0
    support_kept: int = 0
    seconds: float = 0.0
    texts: dict[int, str] = field(default_factory=dict)
    in_band: int = 0


def _validate(ratios: Sequence[float | str], methods: Sequence[Any], limit: int | None,
              passages: int | None) -> None:
    if not ratios or any(r != AUTO and not (isinstance(r, int | float) and 0.0 < r <= 1.0) for r in ratios):
        raise InvalidParameterError("ratios", allowed="one or more kept shares in (0, 1] or 'auto'",
                                    received=list(ratios))
    if not methods:
        raise InvalidParameterError("methods", allowed=f"one or more of {sorted(COMPRESSORS)}", received=[])
    for value, name in ((limit, "limit"), (passages, "passages")):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise InvalidParameterError(name, allowed="a whole number >= 1 or None", received=value)


def run_compression_bench(
    data_paths: Sequence[str | Path], *, ratios: Sequence[float | str] = (0.33, 0.25),
    methods: Sequence[str | Compressor] = ("truncate",), passages: int | None = None,
    limit: int | None = None, target_model: str = "gpt-4o", accuracy: bool = False,
    out: Path | None = None, show_progress: bool = True, seed: int = 0,
    chat_model: BaseChatModel | None = None, split: Split = "all",
) -> CompressionBenchResult:
    """Compress every item of every file under every ratio with every method; see the module doc.

    ``out``: JSON path (a PNG of answer retention vs achieved ratio is written next to it).
    ``accuracy``: also ask a local chat model (default ``ChatLeanVLLM(max_tokens=32)``, or
    ``chat_model``) with the original and the compressed contexts, on the items whose gold answer
    is short, present in the context and not named by the question (an echoed question would
    count as right), and whose original prompt fits the model.
    ``split``: "dev" or "held_out" keeps one half of each file by a stable hash of the item id
    (develop on one, report the other); ``ratios`` may include ``"auto"`` (see :data:`AUTO`).
    """
    from lean_benchmarks.progress import bench_progress

    _validate(ratios, methods, limit, passages)
    counter = TokenCounter()
    probe = counter.count("probe", target_model)
    resolved = [_resolve_method(m) for m in methods]
    names = [name for name, _ in resolved]
    if len(set(names)) != len(names):
        raise InvalidParameterError("methods", allowed="distinct method names", received=names)
    result = CompressionBenchResult(
        benchmark="compression", target_model=target_model, tokenizer=probe.tokenizer,
        estimated_counts=probe.estimated, ratios=[1.0 if r == AUTO else float(r) for r in ratios], methods=names,
        passages=passages, limit=limit, seed=seed, accuracy=accuracy,
        device=f"{platform.machine()} CPU ({_cpu_count()} cores), {platform.python_implementation()} "
               f"{platform.python_version()}",
        date=time.strftime("%Y-%m-%d"), split=split,
    )
    loaded = []
    for path in data_paths:
        kind, items = load_items(path, passages=passages, limit=limit, seed=seed, split=split)
        n_passages = None if isinstance(items[0].context, str) else max(len(i.context) for i in items)
        note = ("constructed: gold passage + BM25-retrieved distractors without the answer"
                if kind == "nq" and passages and passages > 1 else "")
        result.datasets.append(DatasetInfo(dataset=Path(path).stem, path=str(path), kind=kind,
                                           items=len(items), passages=n_passages, note=note))
        loaded.append((Path(path).stem, items))

    warmed: set[str] = set()
    tallies: dict[tuple[str, str, float | str], _Tally] = {}
    total = sum(len(items) for _, items in loaded) * len(resolved) * len(ratios)
    with bench_progress(show=show_progress) as progress:
        task = progress.add_task("compressing", total=total)
        for dataset, items in loaded:
            progress.update(task, description=f"compressing {dataset}")
            auto_kept: dict[int, int] = {}  # tokens kept by the first auto-capable method, per item
            for idx, item in enumerate(items):
                original_text = join_context(item.context)
                original_tokens = max(1, counter.count(original_text, target_model).tokens)
                given_away = (contains_answer(item.question, item.answers)
                              and normalize(item.question) in normalize(original_text))
                answerable = (not item.impossible and not given_away
                              and contains_answer(original_text, item.answers))
                support_ok = bool(item.support) and all(
                    normalize(s) in normalize(original_text) for s in item.support)
                for name, compressor in resolved:
                    if name not in warmed:  # one untimed call: lazy model loading is not throughput
                        compressor.compress(item.context, budget=CompressionBudget(
                            ratio=0.33, target_model=target_model), question=item.question)
                        warmed.add(name)
                    for ratio in ratios:
                        budget = _budget(ratio, compressor, auto_kept.get(idx), target_model)
                        started = time.perf_counter()
                        compressed = compressor.compress(item.context, budget=budget, question=item.question)
                        elapsed = time.perf_counter() - started
                        tokens = counter.count(compressed.text, target_model).tokens
                        tally = tallies.setdefault((dataset, name, ratio), _Tally())
                        tally.ratios.append(original_tokens / max(1, tokens))
                        tally.shares.append(tokens / original_tokens)
                        tally.original += original_tokens
                        tally.compressed += tokens
                        if ratio == AUTO and getattr(compressor, "supports_auto_budget", False):
                            auto_kept.setdefault(idx, max(1, tokens))
                        tally.met += tokens <= budget.tokens_for(original_tokens)
                        if ratio != AUTO:
                            asked = 1.0 / float(ratio)
                            tally.in_band += abs(original_tokens / max(1, tokens) - asked) <= 0.2 * asked
                        tally.seconds += elapsed
                        tally.impossible += item.impossible
                        tally.given_away += given_away
                        if answerable:
                            tally.answerable += 1
                            tally.retained += contains_answer(compressed.text, item.answers)
                            if accuracy:
                                tally.texts[idx] = compressed.text
                        if support_ok:
                            tally.support_items += 1
                            kept = normalize(compressed.text)
                            tally.support_kept += all(normalize(s) in kept for s in item.support)
                        progress.advance(task)

    for (dataset, name, ratio), t in tallies.items():
        result.rows.append(BenchRow(
            dataset=dataset, method=name, target_ratio=1.0 if ratio == AUTO else float(ratio), items=len(t.ratios),
            budget=str(ratio), within_band_share=None if ratio == AUTO else t.in_band / len(t.ratios),
            achieved_ratio=statistics.fmean(t.ratios), achieved_ratio_pooled=t.original / max(1, t.compressed),
            kept_share=statistics.fmean(t.shares), original_tokens=t.original, compressed_tokens=t.compressed,
            budget_met_share=t.met / len(t.ratios), answerable_items=t.answerable, impossible_items=t.impossible,
            answer_retention=t.retained / t.answerable if t.answerable else None,
            answer_in_question_items=t.given_away,
            support_items=t.support_items,
            support_retention=t.support_kept / t.support_items if t.support_items else None,
            seconds=t.seconds, tokens_per_s=t.original / t.seconds if t.seconds > 0 else None,
        ))
    if accuracy:
        _score_accuracy(result, dict(loaded), tallies, chat_model, show_progress)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(result), indent=2, allow_nan=False))
        _chart(result, out.with_suffix(".png"))
    return result


def _budget(ratio: float | str, compressor: Compressor, matched: int | None, target_model: str) -> CompressionBudget:
    """The budget one method gets: the asked share, ``auto`` for a compressor that decides its own,
    or (``auto`` for one that cannot) the tokens the auto-capable method kept on the same item."""
    if ratio != AUTO:
        return CompressionBudget(ratio=float(ratio), target_model=target_model)
    if getattr(compressor, "supports_auto_budget", False) or matched is None:
        return CompressionBudget(ratio=AUTO, target_model=target_model)
    return CompressionBudget(target_tokens=matched, target_model=target_model)


def _cpu_count() -> int:
    return os.cpu_count() or 1


# -- accuracy with a local model ------------------------------------------------------------------
def _prompt(context: str, question: str) -> str:
    return f"{context}\n\nQuestion: {question}\nAnswer briefly."


def _local_context_tokens() -> int:
    from lean_core.assets import smollm2_dir

    config = json.loads((smollm2_dir() / "config.json").read_text())
    return int(config.get("max_position_embeddings", 2048))


def _score_accuracy(result: CompressionBenchResult, items_by_dataset: dict[str, list[BenchItem]],
                    tallies: dict[tuple[str, str, float | str], _Tally], chat_model: BaseChatModel | None,
                    show_progress: bool) -> None:
    counter = TokenCounter()
    local: str | None = None  # the local model's tokenizer, to skip prompts it cannot take whole
    limit_tokens = 0
    if chat_model is None:
        from lean_chain import ChatLeanVLLM

        chat_model = ChatLeanVLLM(max_tokens=_ACCURACY_MAX_TOKENS)
        local = "smollm2-135m-instruct"
        limit_tokens = _local_context_tokens() - _ACCURACY_MAX_TOKENS - 64  # chat template margin

    def ask(prompts: list[str]) -> list[str]:
        if show_progress:
            print(f"asking the local model {len(prompts)} questions", flush=True)
        replies = chat_model.batch(list(prompts))  # type: ignore[arg-type]
        return [str(r.content) for r in replies]

    originals: dict[str, dict[int, bool]] = {}
    for dataset, items in items_by_dataset.items():
        eligible = {}
        for idx, item in enumerate(items):
            text = join_context(item.context)
            if (item.impossible or not contains_answer(text, item.answers)
                    or contains_answer(item.question, item.answers)
                    or min(len(a) for a in item.answers) > _SHORT_ANSWER_CHARS):
                continue
            prompt = _prompt(text, item.question)
            if local is not None and counter.count(prompt, local).tokens > limit_tokens:
                continue
            eligible[idx] = prompt
        replies = ask(list(eligible.values())) if eligible else []
        originals[dataset] = {idx: contains_answer(reply, items[idx].answers)
                              for idx, reply in zip(eligible, replies, strict=True)}
    for row in result.rows:
        scored = originals[row.dataset]
        row.accuracy_items = len(scored)
        if not scored:
            continue
        items = items_by_dataset[row.dataset]
        texts = tallies[(row.dataset, row.method, row.budget if row.budget == AUTO else row.target_ratio)].texts
        order = list(scored)
        replies = ask([_prompt(texts[idx], items[idx].question) for idx in order])
        row.accuracy_original = sum(scored.values()) / len(scored)
        row.accuracy_compressed = sum(contains_answer(r, items[idx].answers)
                                      for idx, r in zip(order, replies, strict=True)) / len(order)


# -- chart ----------------------------------------------------------------------------------------
def _chart(result: CompressionBenchResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d.dataset for d in result.datasets]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.8), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for m, method in enumerate(result.methods):
            rows = sorted((r for r in result.rows if r.dataset == dataset and r.method == method
                           and r.answer_retention is not None), key=lambda r: r.achieved_ratio)
            if not rows:
                continue
            xs = [r.achieved_ratio for r in rows]
            ax.plot(xs, [r.answer_retention for r in rows], "o-", color=colors(m), label=method)
            for r in rows:
                ax.annotate(r.budget if r.budget == AUTO else f"{r.target_ratio:g}", (r.achieved_ratio, r.answer_retention or 0.0),
                            fontsize=7, textcoords="offset points", xytext=(3, 3))
            support = [r for r in rows if r.support_retention is not None]
            if support:
                ax.plot([r.achieved_ratio for r in support], [r.support_retention for r in support], "s--",
                        color=colors(m), alpha=0.6, label=f"{method} (all support facts)")
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel("achieved compression (original / compressed tokens)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("answer retention")
    fig.suptitle(f"answer kept vs compression ({result.target_model} tokens; labels: target kept share)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
