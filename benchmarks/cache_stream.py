"""``lean-inference bench cache-stream``: caches side by side on a labelled prompt stream.

**The stream** is built in memory from labelled pair files (QQP, MRPC, the bundled adversarial
pairs; nothing is copied into the project): each text of the chosen pairs belongs to a *cluster*,
the group of texts its file joins by label-1 pairs (closed transitively, as ``bench cache`` does),
so the two sides of a duplicate pair share a cluster and the two sides of a label-0 pair (a
near-miss look-alike: QQP/MRPC non-duplicates, the adversarial number / entity / negation / role /
date / unit edits) do not. Every cluster occurs several times (each member once, then random
members up to a seeded count in ``occurrences``), and the whole stream is shuffled with ``seed``.
Calibration corpora (QQP, MRPC, STS-B train) contribute their held-out half by default, so the
shipped verifier never saw these pairs.

**Replay.** For each prompt, every method looks it up; on a miss the "model call" answers with
the prompt's cluster id, which the method stores. A served hit is right when the served answer is
the query's cluster, so answer equivalence is payload equality: the label oracle. The error-bounded
caches (``ResponseCache(max_error_rate=δ, answer_equivalence=<the oracle>)``) learn from that
oracle on their explorations, exactly as they would from a real answer comparison.

**Methods**, one run: ``lean_delta_<δ>`` (ours, per δ), ``lean_static`` (today's static verifier,
``ResponseCache`` defaults), ``threshold`` (raw cosine cut-off), ``gptcache`` (GPTCache 0.1.44 as
documented); see :mod:`lean_benchmarks._cache_methods`. Embeddings are computed once, in a batch,
and shared by all methods (identical vectors; lookup latency here is not the embedding's).

**Per method:** hit rate over the stream; semantic hits, right and wrong; the observed error rate
among served semantic hits (exact hits are repeats of the same text and always right) with its
one-sided 95 % Wilson upper bound; exploration calls (the oracle's comparisons); near-misses
served (a labelled label-0 pair served as a hit) and among them hard-veto near-misses (the
adversarial kinds); cumulative hits and errors against stream position (the PNG next to the JSON).
The QQP oracle is strict: QQP does not link every duplicate, so a hit on an unlinked true
duplicate counts as an error for every method alike.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lean_benchmarks._cache_load import adversarial_pairs_path, percentile_ms
from lean_benchmarks._cache_methods import DEFAULT_COSINE_THRESHOLD, CacheMethod, build_method
from lean_benchmarks.cache_bench import CALIBRATION_SOURCES, _device, _Groups, _read_kinds
from lean_core.cache.calibrate import load_pairs
from lean_core.cache.normalize import normalize_prompt
from lean_core.embeddings import Embedder
from lean_core.errors import InvalidParameterError

if TYPE_CHECKING:
    from lean_core.cache.answer_equivalence import AnswerEquivalence
    from lean_core.cache.verifier import SemanticVerifier

__all__ = [
    "DEFAULT_DELTAS",
    "HARD_VETO_KINDS",
    "STREAM_METHODS",
    "CacheStreamResult",
    "LabelOracle",
    "LabelledStream",
    "StreamCurve",
    "StreamMethodRow",
    "StreamPrompt",
    "StreamSource",
    "build_labelled_stream",
    "replay_stream",
    "run_cache_stream_bench",
]

DEFAULT_DELTAS = (0.01, 0.02, 0.05)
STREAM_METHODS = ("lean_static", "threshold", "gptcache")
"""The comparison methods besides ``lean_delta_<δ>``."""
HARD_VETO_KINDS = frozenset({"number", "entity", "entity_lowercase", "negation", "role_swap", "date", "unit"})
"""Adversarial pair kinds whose look-alike the hard vetoes must never serve."""
_CURVE_POINTS = 200
_MAX_SAMPLES = 10


# -- the stream -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class StreamPrompt:
    prompt: str
    cluster: str
    """The cluster id: prompts with equal ids ask the same thing (and get the same answer)."""
    source: str
    kind: str
    """Why the prompt is in the stream: "duplicate" (a label-1 pair), "look-alike" (a label-0
    pair) or the adversarial pair's kind ("number", "negation", ...)."""


@dataclass
class StreamSource:
    dataset: str
    path: str
    split: str
    pairs: int
    positives: int
    negatives: int


@dataclass(frozen=True)
class LabelledStream:
    prompts: tuple[StreamPrompt, ...]
    sources: tuple[StreamSource, ...]
    look_alikes: dict[tuple[str, str], str]
    """(normalised text, normalised text) of each label-0 pair, both orders -> its kind."""
    seed: int

    @property
    def clusters(self) -> int:
        return len({p.cluster for p in self.prompts})

    def to_jsonl(self, path: str | Path) -> None:
        """Write the stream (``{prompt, cluster, source, kind}`` rows); for inspection, outside the project."""
        with Path(path).open("w", encoding="utf-8") as handle:
            for p in self.prompts:
                handle.write(json.dumps(asdict(p), ensure_ascii=False) + "\n")


def build_labelled_stream(pairs: Sequence[str | Path], *, split: str | None = None,
                          pairs_per_file: int | None = None, occurrences: tuple[int, int] = (2, 5),
                          seed: int = 0) -> LabelledStream:
    """The labelled stream of the module doc, from ``pairs`` files (JSONL or STS CSV).

    ``split``: None takes the held-out half of calibration corpora and other files whole; or
    "held_out" / "all" for every file. ``pairs_per_file``: a seeded sample of that many pairs per
    file (all when None). ``occurrences``: (least, most) occurrences per cluster, inclusive.
    """
    if not pairs:
        raise InvalidParameterError("pairs", allowed="at least one labelled pair file", received=list(pairs))
    if split not in (None, "held_out", "all"):
        raise InvalidParameterError("split", allowed="'held_out', 'all' or None (automatic)", received=split)
    if pairs_per_file is not None and (isinstance(pairs_per_file, bool) or not isinstance(pairs_per_file, int)
                                       or pairs_per_file < 1):
        raise InvalidParameterError("pairs_per_file", allowed="an int >= 1 or None", received=pairs_per_file)
    low, high = occurrences
    if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high <= 100):
        raise InvalidParameterError("occurrences", allowed="(least, most) with 1 <= least <= most <= 100",
                                    received=occurrences)
    rng = random.Random(seed)
    cluster_of: dict[str, str] = {}  # normalised text -> cluster id (the first source to name it wins)
    members: dict[str, dict[str, StreamPrompt]] = {}
    look_alikes: dict[tuple[str, str], str] = {}
    sources = []
    for path in pairs:
        source = Path(path)
        chosen = split or ("held_out" if source.stem in CALIBRATION_SOURCES else "all")
        groups = _Groups(load_pairs(source))  # the whole file's labels define the clusters
        kinds = _read_kinds(source)
        subset = load_pairs(source, split=chosen)
        rng.shuffle(subset)
        if pairs_per_file is not None:
            subset = subset[:pairs_per_file]
        positives = sum(p.label for p in subset)
        sources.append(StreamSource(dataset=source.stem, path=str(source), split=chosen, pairs=len(subset),
                                    positives=positives, negatives=len(subset) - positives))
        for pair in subset:
            kind = kinds.get((pair.text_a, pair.text_b), "duplicate" if pair.label else "look-alike")
            if pair.label == 0:
                a, b = normalize_prompt(pair.text_a), normalize_prompt(pair.text_b)
                look_alikes[(a, b)] = look_alikes[(b, a)] = kind
            for text in (pair.text_a, pair.text_b):
                key = normalize_prompt(text)
                if key not in cluster_of:
                    root = groups.group(text)
                    cluster_of[key] = f"{source.stem}:{hashlib.sha256(root.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"
                cluster = cluster_of[key]
                members.setdefault(cluster, {}).setdefault(
                    key, StreamPrompt(prompt=text, cluster=cluster, source=source.stem,
                                      kind=kind if pair.label == 0 else "duplicate"))
    stream: list[StreamPrompt] = []
    for cluster in sorted(members):  # sorted: the order of dict filling must not matter to the seed
        texts = [members[cluster][k] for k in sorted(members[cluster])]
        count = max(len(texts), rng.randint(low, high))
        stream.extend(texts)
        stream.extend(rng.choice(texts) for _ in range(count - len(texts)))
    rng.shuffle(stream)
    return LabelledStream(prompts=tuple(stream), sources=tuple(sources), look_alikes=look_alikes, seed=seed)


# -- the oracle -----------------------------------------------------------------------------------
class LabelOracle:
    """Answer equivalence by label: two answers (cluster ids) are equivalent when equal; or, with
    ``check``, that check's verdict (real answers compared by a real answer-equivalence check).
    Counts every comparison, so the error-bounded cache's explorations are counted whatever it reports."""

    def __init__(self, check: AnswerEquivalence | None = None) -> None:
        self.check = check
        self.calls = 0
        self.not_equivalent = 0
        self._lock = threading.Lock()

    def equivalent(self, cached: str, fresh: str) -> bool:
        same = cached == fresh if self.check is None else self.check.equivalent(cached, fresh)
        with self._lock:
            self.calls += 1
            self.not_equivalent += not same
        return same

    async def aequivalent(self, cached: str, fresh: str) -> bool:
        return self.equivalent(cached, fresh)

    def __call__(self, cached: str, fresh: str) -> bool:
        return self.equivalent(cached, fresh)


class _SharedEmbedder(Embedder):
    """The stream's embeddings, computed once in a batch and shared by every method."""

    def __init__(self, inner: Embedder, texts: Sequence[str]) -> None:
        super().__init__()
        self._inner = inner
        distinct = list(dict.fromkeys(texts))
        vectors = inner.encode(distinct)
        self._known = dict(zip(distinct, vectors, strict=True))
        self.dimension = int(vectors.shape[1])

    def encode(self, texts: Sequence[str]) -> Any:
        import numpy as np

        missing = [t for t in dict.fromkeys(texts) if t not in self._known]
        if missing:
            self._known.update(zip(missing, self._inner.encode(missing), strict=True))
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._known[t] for t in texts]).astype(np.float32)


# -- results --------------------------------------------------------------------------------------
@dataclass
class WrongHit:
    position: int
    query: str
    served: str
    look_alike_kind: str
    """The labelled pair's kind when (query, served) is a label-0 pair, else "" (unlabelled)."""


@dataclass
class StreamMethodRow:
    method: str
    max_error_rate: float | None
    lookups: int
    hits: int
    hit_rate: float
    exact_hits: int
    semantic_hits: int
    semantic_correct: int
    """Duplicates served: semantic hits whose answer is the query's cluster."""
    semantic_wrong: int
    observed_error_rate: float | None
    """semantic_wrong / semantic_hits (None without semantic hits)."""
    error_upper_95: float
    """One-sided 95 % Wilson upper bound of the observed error rate."""
    explorations: int
    """Answer comparisons the method asked for (the label oracle's calls; 0 for static methods)."""
    explorations_not_equivalent: int
    near_misses_served: int
    """Semantic hits whose (query, served prompt) is a labelled label-0 pair."""
    hard_veto_near_misses_served: int
    """Of those, adversarial pairs of a hard-veto kind (:data:`HARD_VETO_KINDS`)."""
    wrong_by_kind: dict[str, int] = field(default_factory=dict)
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per query source: lookups, hits, semantic_correct, semantic_wrong."""
    p50_lookup_ms: float = 0.0
    p99_lookup_ms: float = 0.0
    cache_stats: dict[str, Any] = field(default_factory=dict)
    """The ResponseCache's own counters (``lean_*`` methods)."""
    wrong_samples: list[WrongHit] = field(default_factory=list)


@dataclass
class StreamCurve:
    method: str
    positions: list[int]
    hits: list[int]
    semantic_correct: list[int]
    semantic_wrong: list[int]
    explorations: list[int]


@dataclass
class CacheStreamResult:
    benchmark: str
    embedding_model: str
    seed: int
    occurrences: tuple[int, int]
    pairs_per_file: int | None
    cosine_threshold: float
    deltas: list[float]
    sources: list[StreamSource]
    prompts: int
    distinct_prompts: int
    clusters: int
    semantic_opportunities: int
    """Prompts met for the first time whose cluster was met before (paraphrase arrivals). Not an
    upper bound: a prompt served semantically is not stored, so its repeats are semantic hits again."""
    rows: list[StreamMethodRow] = field(default_factory=list)
    curves: list[StreamCurve] = field(default_factory=list)
    targets: dict[str, Any] = field(default_factory=dict)
    device: str = ""
    date: str = ""
    seconds: float = 0.0


# -- replay ---------------------------------------------------------------------------------------
def _wilson_upper(wrong: int, n: int, z: float = 1.6448536269514722) -> float:
    if n == 0:
        return 1.0
    p = wrong / n
    centre = p + z * z / (2 * n)
    spread = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5)
    return min(1.0, (centre + spread) / (1 + z * z / n))


def replay_stream(stream: LabelledStream, method: CacheMethod, *, name: str, max_error_rate: float | None = None,
                  oracle: LabelOracle | None = None, answer: Callable[[StreamPrompt], str] | None = None,
                  progress: Any = None, task: Any = None) -> tuple[StreamMethodRow, StreamCurve]:
    """Replay ``stream`` through ``method`` (already filled, usually empty): lookup, and on a miss
    store the prompt's answer: its cluster id, or ``answer(prompt)`` (a real model's answer; a
    served hit is still judged by the clusters of the query and the served prompt)."""
    cluster_of = {normalize_prompt(p.prompt): p.cluster for p in stream.prompts}
    every = max(1, len(stream.prompts) // _CURVE_POINTS)
    curve = StreamCurve(method=name, positions=[], hits=[], semantic_correct=[], semantic_wrong=[], explorations=[])
    seconds: list[float] = []
    hits = exact = correct = wrong = near = hard = 0
    wrong_by_kind: dict[str, int] = {}
    by_source: dict[str, dict[str, int]] = {}
    samples: list[WrongHit] = []
    for position, item in enumerate(stream.prompts, 1):
        started = time.perf_counter()
        served = method.lookup(item.prompt)
        seconds.append(time.perf_counter() - started)
        tally = by_source.setdefault(item.source, dict.fromkeys(("lookups", "hits", "semantic_correct",
                                                                  "semantic_wrong"), 0))
        tally["lookups"] += 1
        if served.prompt is None:
            method.add(item.prompt, item.cluster if answer is None else answer(item))
        else:
            hits += 1
            tally["hits"] += 1
            by_payload = answer is None and served.payload is not None
            served_cluster = served.payload if by_payload else cluster_of.get(normalize_prompt(served.prompt))
            if served.kind == "exact":
                exact += 1
            elif served_cluster == item.cluster:
                correct += 1
                tally["semantic_correct"] += 1
            else:
                wrong += 1
                tally["semantic_wrong"] += 1
                kind = stream.look_alikes.get((normalize_prompt(item.prompt), normalize_prompt(served.prompt)), "")
                near += bool(kind)
                hard += kind in HARD_VETO_KINDS
                wrong_by_kind[kind or "unlabelled"] = wrong_by_kind.get(kind or "unlabelled", 0) + 1
                if len(samples) < _MAX_SAMPLES:
                    samples.append(WrongHit(position=position, query=item.prompt, served=served.prompt,
                                            look_alike_kind=kind))
        if position % every == 0 or position == len(stream.prompts):
            curve.positions.append(position)
            curve.hits.append(hits)
            curve.semantic_correct.append(correct)
            curve.semantic_wrong.append(wrong)
            curve.explorations.append(oracle.calls if oracle is not None else 0)
        if progress is not None:
            progress.advance(task)
    semantic = correct + wrong
    cache = getattr(method, "cache", None)
    stats = getattr(cache, "stats", None)
    row = StreamMethodRow(
        method=name, max_error_rate=max_error_rate, lookups=len(stream.prompts), hits=hits,
        hit_rate=hits / max(len(stream.prompts), 1), exact_hits=exact, semantic_hits=semantic,
        semantic_correct=correct, semantic_wrong=wrong, observed_error_rate=wrong / semantic if semantic else None,
        error_upper_95=_wilson_upper(wrong, semantic), explorations=oracle.calls if oracle is not None else 0,
        explorations_not_equivalent=oracle.not_equivalent if oracle is not None else 0,
        near_misses_served=near, hard_veto_near_misses_served=hard, wrong_by_kind=wrong_by_kind, by_source=by_source,
        p50_lookup_ms=percentile_ms(seconds, 50), p99_lookup_ms=percentile_ms(seconds, 99),
        cache_stats=_plain(stats) if stats is not None else {}, wrong_samples=samples)
    return row, curve


def _plain(stats: Any) -> dict[str, Any]:
    """A dataclass of counters as JSON-safe values (nested dataclasses and dicts included)."""
    data = asdict(stats) if is_dataclass(stats) and not isinstance(stats, type) else dict(vars(stats))
    return json.loads(json.dumps(data, default=str))


def _opportunities(stream: LabelledStream) -> int:
    seen_texts: set[str] = set()
    seen_clusters: set[str] = set()
    count = 0
    for item in stream.prompts:
        key = normalize_prompt(item.prompt)
        if key not in seen_texts:
            count += item.cluster in seen_clusters
            seen_texts.add(key)
        seen_clusters.add(item.cluster)
    return count


def _budget_options(delta: float, oracle: LabelOracle, seed: int) -> dict[str, Any]:
    from lean_core.cache.response_cache import ResponseCache

    options: dict[str, Any] = {"max_error_rate": delta, "answer_equivalence": oracle}
    accepted = inspect.signature(ResponseCache.__init__).parameters
    if "seed" in accepted:  # a seeded cache replays the stream identically
        options["seed"] = seed
    return options


def run_cache_stream_bench(
    pairs: Sequence[str | Path] = (), *, stream: LabelledStream | None = None, deltas: Sequence[float] = DEFAULT_DELTAS,
    methods: Sequence[str] = STREAM_METHODS, split: str | None = None, pairs_per_file: int | None = None,
    occurrences: tuple[int, int] = (2, 5), seed: int = 0, threshold: float = DEFAULT_COSINE_THRESHOLD,
    out: Path | None = None, show_progress: bool = True, embedder: Embedder | None = None,
    verifier: SemanticVerifier | None = None, answer: Callable[[StreamPrompt], str] | None = None,
    answer_equivalence: AnswerEquivalence | None = None,
) -> CacheStreamResult:
    """Build the labelled stream from ``pairs`` (default: the bundled adversarial pairs), or take
    ``stream``, and replay it through every method; see the module doc. ``out``: JSON path; the
    PNG goes next to it.

    ``answer`` and ``answer_equivalence`` replace the label oracle by a real model and a real
    check (issue 25 item 6): misses store ``answer(prompt)`` (called once per distinct prompt,
    shared by the methods) and the error-bounded caches compare answers with ``answer_equivalence``;
    served hits are still scored by the labels."""
    from rich.progress import Progress

    if any(isinstance(d, bool) or not isinstance(d, int | float) or not 0 < d <= 0.5 for d in deltas):
        raise InvalidParameterError("deltas", allowed="error rates in (0, 0.5]", received=list(deltas))
    if any(m not in STREAM_METHODS for m in methods) or len(set(methods)) != len(methods):
        raise InvalidParameterError("methods", allowed=f"distinct names among {STREAM_METHODS}", received=list(methods))
    if not deltas and not methods:
        raise InvalidParameterError("methods", allowed="at least one method or one delta", received=[])
    if not isinstance(threshold, int | float) or not 0.0 < threshold <= 1.0:
        raise InvalidParameterError("threshold", allowed="a cosine in (0, 1]", received=threshold)
    started = time.perf_counter()
    if stream is None:
        stream = build_labelled_stream(list(pairs) or [adversarial_pairs_path()], split=split,
                                       pairs_per_file=pairs_per_file, occurrences=occurrences, seed=seed)
    if embedder is None:
        from lean_core.embeddings import default_embedder

        embedder = default_embedder()
    if verifier is None:
        from lean_core.cache.verifier import SemanticVerifier

        verifier = SemanticVerifier()
    from lean_core.cache.response_cache import embeddable

    texts = [p.prompt for p in stream.prompts]
    shared = _SharedEmbedder(embedder, [embeddable(normalize_prompt(t)) for t in texts] + texts)
    result = CacheStreamResult(
        benchmark="cache-stream", embedding_model=verifier.calibration.embedding_model, seed=stream.seed,
        occurrences=occurrences, pairs_per_file=pairs_per_file, cosine_threshold=float(threshold),
        deltas=[float(d) for d in deltas], sources=list(stream.sources), prompts=len(stream.prompts),
        distinct_prompts=len({normalize_prompt(t) for t in texts}), clusters=stream.clusters,
        semantic_opportunities=_opportunities(stream), device=_device(), date=time.strftime("%Y-%m-%d"))
    plan: list[tuple[str, str, float | None]] = [(f"lean_delta_{d:g}", "lean", float(d)) for d in deltas]
    plan += [(m, "lean" if m == "lean_static" else m, None) for m in methods]
    import numpy as np

    answers: dict[str, str] = {}

    def remembered(item: StreamPrompt) -> str:  # a real model answers each distinct prompt once
        assert answer is not None
        key = normalize_prompt(item.prompt)
        if key not in answers:
            answers[key] = answer(item)
        return answers[key]

    memo = remembered if answer is not None else None
    with Progress(disable=not show_progress) as progress:
        for name, kind, delta in plan:
            oracle = LabelOracle(answer_equivalence) if delta is not None else None
            options = _budget_options(delta, oracle, stream.seed) if delta is not None and oracle is not None else None
            method, cleanup = build_method(kind, embedder=shared, verifier=verifier, threshold=threshold,
                                           cache_options=options)
            try:
                empty = np.zeros((0, shared.dimension), dtype=np.float32)
                if kind == "gptcache":
                    method.fill([], empty, capacity=len(texts))  # type: ignore[call-arg]
                else:
                    method.fill([], empty)
                task = progress.add_task(f"stream: {name}", total=len(texts))
                row, curve = replay_stream(stream, method, name=name, max_error_rate=delta, oracle=oracle,
                                           answer=memo, progress=progress, task=task)
            finally:
                cleanup()
            result.rows.append(row)
            result.curves.append(curve)
    result.targets = _targets(result)
    result.seconds = time.perf_counter() - started
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(result), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        _chart(result, out.with_suffix(".png"))
    return result


def _targets(result: CacheStreamResult) -> dict[str, Any]:
    """Issue 25's stream targets, checked: error <= δ per δ; at δ = 0.02, >= 3x the duplicates
    served by the static verifier; no hard-veto near-miss served by an error-bounded cache."""
    rows = {r.method: r for r in result.rows}
    ours = [r for r in result.rows if r.max_error_rate is not None]
    targets: dict[str, Any] = {
        "error_within_delta": {r.method: r.observed_error_rate is None or r.observed_error_rate <= r.max_error_rate
                               for r in ours if r.max_error_rate is not None},
        "hard_veto_near_misses_served": {r.method: r.hard_veto_near_misses_served for r in ours},
    }
    static, at_two = rows.get("lean_static"), rows.get("lean_delta_0.02")
    if static is not None and at_two is not None:
        targets["duplicates_served_static"] = static.semantic_correct
        targets["duplicates_served_delta_0.02"] = at_two.semantic_correct
        targets["ratio_delta_0.02_vs_static"] = (at_two.semantic_correct / static.semantic_correct
                                                 if static.semantic_correct else None)
        targets["three_times_static"] = at_two.semantic_correct >= 3 * static.semantic_correct
        targets["duplicates_served_by_source"] = {
            source: {"static": static.by_source.get(source, {}).get("semantic_correct", 0),
                     "delta_0.02": at_two.by_source.get(source, {}).get("semantic_correct", 0)}
            for source in sorted(set(static.by_source) | set(at_two.by_source))}
    return targets


# -- chart ----------------------------------------------------------------------------------------
def _chart(result: CacheStreamResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15.5, 4.4))
    colors = plt.get_cmap("tab10")
    for m, curve in enumerate(result.curves):
        style = "-" if curve.method.startswith("lean") else "--"
        axes[0].plot(curve.positions, curve.semantic_correct, style, color=colors(m), label=curve.method)
        axes[1].plot(curve.positions, curve.semantic_wrong, style, color=colors(m), label=curve.method)
        if any(curve.explorations):
            axes[2].plot(curve.positions, curve.explorations, style, color=colors(m), label=curve.method)
    axes[0].plot([0, result.prompts], [0, result.semantic_opportunities], ":", color="grey",
                 label=f"paraphrase arrivals ({result.semantic_opportunities})")
    axes[0].set_title("duplicates served (right semantic hits), cumulative", fontsize=9)
    axes[1].set_title("wrong semantic hits, cumulative", fontsize=9)
    axes[2].set_title("exploration calls (answer comparisons), cumulative", fontsize=9)
    for ax in axes:
        ax.set_xlabel("position in the stream")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    summary = "; ".join(
        f"{r.method}: hits {r.hit_rate:.1%}, err "
        f"{'n/a' if r.observed_error_rate is None else f'{r.observed_error_rate:.3f}'}" for r in result.rows)
    sources = ", ".join(f"{s.dataset} ({s.split}, {s.pairs} pairs)" for s in result.sources)
    fig.suptitle(f"labelled stream: {result.prompts} prompts, {result.clusters} clusters from {sources}\n{summary}",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
