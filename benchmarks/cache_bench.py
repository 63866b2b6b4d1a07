"""``lean-inference bench cache``: response caches side by side on labelled pairs, a real prompt
stream, and lookup latency at scale.

**Pairs** (``pairs=[...]``, JSONL ``{text_a, text_b, label[, kind]}`` or STS CSV): every distinct
``text_a`` of a file is cached in one namespace, then every ``text_b`` is looked up against *all*
of them (the realistic setting: a query may be served any cached prompt, not just its pair's).
A served prompt counts as a true duplicate of the query when both fall in the same group of the
file's label-1 pairs (identical normalised strings included; groups are closed transitively, so a
QQP question is matched to its cluster) and as a false hit otherwise, including prompts the file
never relates to the query (counted apart as ``served_unlabelled``). Per method:

* ``precision``: true-duplicate hits / all hits served (``precision_judged`` leaves out the
  unlabelled ones, which the file cannot judge: QQP, for one, does not link every duplicate);
* ``recall``: label-1 queries served a true duplicate / label-1 queries;
* ``false_hit_rate``: label-0 queries served a non-duplicate / label-0 queries;
* ``p50_lookup_ms``, ``p99_lookup_ms``: wall time of each lookup through the method's API,
  embedding the query included (one untimed warm-up lookup per method first).

Files the shipped calibration was fitted on (its ``trained_on``: QQP, MRPC and STS-B train) are
scored on their ``held_out`` half by default (see :func:`lean_core.cache.is_calibration_pair`).

**Stream** (``stream=PATH``, JSONL with a ``prompt`` field): prompts replayed in order through
:class:`~lean_core.cache.ResponseCache` (one tenant and model); each miss stores a placeholder
answer. Semantic hits come with a sample of (query, served prompt) pairs for a person to judge.

**Scale** (``entries=[...]``): a store filled with N entries (random unit vectors, through the
store's ``put``) plus real prompts, then ``ResponseCache.lookup`` latency for exact hits,
paraphrase probes and misses; see :mod:`benchmarks._cache_load`.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lean_benchmarks._cache_load import ScaleRow, StreamResult, percentile_ms, run_scale, run_stream
from lean_benchmarks._cache_methods import (
    DEFAULT_COSINE_THRESHOLD,
    METHODS,
    CacheMethod,
    Served,
    build_method,
)
from lean_core.cache.calibrate import LabelledPair, load_pairs
from lean_core.cache.normalize import normalize_prompt
from lean_core.errors import InvalidParameterError

if TYPE_CHECKING:
    from lean_core.cache.verifier import SemanticVerifier
    from lean_core.embeddings import Embedder

__all__ = [
    "CALIBRATION_SOURCES",
    "CacheBenchResult",
    "CalibrationInfo",
    "HitSample",
    "KindRow",
    "PairsDataset",
    "PairsRow",
    "ScaleRow",
    "StreamResult",
    "run_cache_bench",
]

Split = Literal["held_out", "all"]
CALIBRATION_SOURCES = frozenset({"qqp_pairs", "mrpc_train", "stsb_train"})
"""File stems of the corpora the shipped calibration is fitted on (its ``trained_on`` is added)."""
_MAX_SAMPLES = 10


@dataclass
class PairsDataset:
    dataset: str
    path: str
    split: str
    """"held_out" (pairs the shipped calibration never saw) or "all"."""
    used_for_calibration: bool
    pairs: int
    positives: int
    negatives: int
    cached_prompts: int
    """Distinct ``text_a`` cached in the namespace every lookup searches."""


@dataclass
class KindRow:
    """One method's outcome on one ``kind`` of pair (adversarial files label their pairs)."""

    kind: str
    pairs: int
    label: int
    """The kind's label when all its pairs share one, else -1."""
    served: int
    served_true: int
    served_false: int


@dataclass
class HitSample:
    query: str
    served: str
    kind: str
    """"exact" or "semantic"."""
    pair_kind: str = ""


@dataclass
class PairsRow:
    """The figures of one (dataset, method)."""

    dataset: str
    method: str
    pairs: int
    precision: float | None
    """Share of served hits that are true duplicates of the query (None when nothing was served)."""
    precision_judged: float | None
    """Precision over the hits the file can judge: hits whose (query, served) pair is unlabelled
    (neither in the query's duplicate group nor a labelled pair) are left out."""
    recall: float
    """Label-1 queries served a true duplicate, over label-1 queries."""
    false_hit_rate: float
    """Label-0 queries served a non-duplicate, over label-0 queries."""
    p50_lookup_ms: float
    p99_lookup_ms: float
    mean_lookup_ms: float
    served: int
    served_true: int
    served_false: int
    served_unlabelled: int
    """False hits whose (query, served) pair the file does not label at all."""
    served_other_pair: int
    """Hits that served a prompt other than the query's own ``text_a``."""
    exact_hits: int
    rejected_candidates: int
    """Candidates refused by the verifier (``lean`` only)."""
    rejection_reasons: dict[str, int] = field(default_factory=dict)
    by_kind: list[KindRow] = field(default_factory=list)
    false_hit_samples: list[HitSample] = field(default_factory=list)


@dataclass
class CalibrationInfo:
    path: str
    threshold: float
    target_precision: float
    min_similarity: float
    trained_on: list[str]


@dataclass
class CacheBenchResult:
    benchmark: str
    embedding_model: str
    methods: list[str]
    cosine_threshold: float
    """The ``threshold`` method's raw cosine cut-off."""
    gptcache_rule: str
    limit: int | None
    calibration: CalibrationInfo | None = None
    datasets: list[PairsDataset] = field(default_factory=list)
    pairs: list[PairsRow] = field(default_factory=list)
    stream: StreamResult | None = None
    scale: list[ScaleRow] = field(default_factory=list)
    device: str = ""
    date: str = ""


# -- ground truth ---------------------------------------------------------------------------------
class _Groups:
    """Union-find over normalised texts joined by label-1 pairs."""

    def __init__(self, pairs: Sequence[LabelledPair]) -> None:
        self._parent: dict[str, str] = {}
        self._labelled: dict[tuple[str, str], int] = {}
        for p in pairs:
            a, b = normalize_prompt(p.text_a), normalize_prompt(p.text_b)
            self._labelled[(a, b)] = self._labelled[(b, a)] = p.label
            if p.label == 1:
                self._union(a, b)

    def _find(self, text: str) -> str:
        root = text
        while self._parent.get(root, root) != root:
            root = self._parent[root]
        while text != root:  # path compression
            self._parent[text], text = root, self._parent.get(text, text)
        return root

    def _union(self, a: str, b: str) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self._parent[ra] = rb

    def group(self, text: str) -> str:
        """The group's representative text (its normalised root): equal for duplicates."""
        return self._find(normalize_prompt(text))

    def same(self, a: str, b: str) -> bool:
        return self._find(normalize_prompt(a)) == self._find(normalize_prompt(b))

    def labelled(self, a: str, b: str) -> bool:
        return (normalize_prompt(a), normalize_prompt(b)) in self._labelled


def _read_kinds(path: Path) -> dict[tuple[str, str], str]:
    if path.suffix == ".csv":
        return {}
    kinds: dict[tuple[str, str], str] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                raw = json.loads(line)
                if isinstance(raw, dict) and "kind" in raw:
                    kinds[(str(raw["text_a"]), str(raw["text_b"]))] = str(raw["kind"])
    return kinds


# -- tallies --------------------------------------------------------------------------------------
@dataclass
class _Tally:
    seconds: list[float] = field(default_factory=list)
    served: int = 0
    served_true: int = 0
    served_unlabelled: int = 0
    served_other_pair: int = 0
    exact: int = 0
    recalled: int = 0
    false_on_negative: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, list[int]] = field(default_factory=dict)  # kind -> [pairs, served, true, label-sum]
    samples: list[HitSample] = field(default_factory=list)

    def add(self, pair: LabelledPair, kind: str, served: Served, seconds: float, groups: _Groups) -> None:
        self.seconds.append(seconds)
        self.rejected += served.rejected
        for reason in served.rejection_reasons:
            self.reasons[reason] = self.reasons.get(reason, 0) + 1
        counts = self.kinds.setdefault(kind, [0, 0, 0, 0])
        counts[0] += 1
        counts[3] += pair.label
        if served.prompt is None:
            return
        true = groups.same(served.prompt, pair.text_b)
        self.served += 1
        self.served_true += true
        self.exact += served.kind == "exact"
        self.served_other_pair += normalize_prompt(served.prompt) != normalize_prompt(pair.text_a)
        counts[1] += 1
        counts[2] += true
        if pair.label == 1 and true:
            self.recalled += 1
        if not true:
            self.false_on_negative += pair.label == 0
            self.served_unlabelled += not groups.labelled(served.prompt, pair.text_b)
            if len(self.samples) < _MAX_SAMPLES:
                self.samples.append(HitSample(query=pair.text_b, served=served.prompt,
                                              kind=served.kind or "semantic", pair_kind=kind))

    def row(self, dataset: str, method: str, positives: int, negatives: int, with_kinds: bool) -> PairsRow:
        return PairsRow(
            dataset=dataset, method=method, pairs=len(self.seconds),
            precision=self.served_true / self.served if self.served else None,
            precision_judged=(self.served_true / (self.served - self.served_unlabelled)
                              if self.served > self.served_unlabelled else None),
            recall=self.recalled / positives if positives else 0.0,
            false_hit_rate=self.false_on_negative / negatives if negatives else 0.0,
            p50_lookup_ms=percentile_ms(self.seconds, 50), p99_lookup_ms=percentile_ms(self.seconds, 99),
            mean_lookup_ms=1000.0 * sum(self.seconds) / max(len(self.seconds), 1),
            served=self.served, served_true=self.served_true, served_false=self.served - self.served_true,
            served_unlabelled=self.served_unlabelled, served_other_pair=self.served_other_pair,
            exact_hits=self.exact, rejected_candidates=self.rejected, rejection_reasons=dict(self.reasons),
            by_kind=[KindRow(kind=k, pairs=c[0], label=1 if c[3] == c[0] else 0 if c[3] == 0 else -1,
                             served=c[1], served_true=c[2], served_false=c[1] - c[2])
                     for k, c in sorted(self.kinds.items())] if with_kinds else [],
            false_hit_samples=list(self.samples))


# -- the run --------------------------------------------------------------------------------------
def _validate(pairs: Sequence[Any], methods: Sequence[str], split: str | None, limit: int | None,
              threshold: float, stream: Any, entries: Sequence[int], store: str) -> None:
    if not pairs and stream is None and not entries:
        raise InvalidParameterError("pairs", allowed="at least one of pairs, stream or entries", received=None)
    if not methods or any(m not in METHODS for m in methods) or len(set(methods)) != len(methods):
        raise InvalidParameterError("methods", allowed=f"distinct names among {METHODS}", received=list(methods))
    if split not in (None, "held_out", "all"):
        raise InvalidParameterError("split", allowed="'held_out', 'all' or None (automatic)", received=split)
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise InvalidParameterError("limit", allowed="a whole number >= 1 or None", received=limit)
    if not isinstance(threshold, int | float) or not 0.0 < threshold <= 1.0:
        raise InvalidParameterError("threshold", allowed="a cosine in (0, 1]", received=threshold)
    if any(not isinstance(n, int) or not 1 <= n <= 10_000_000 for n in entries):
        raise InvalidParameterError("entries", allowed="whole numbers in [1, 10000000]", received=list(entries))
    if store not in ("sqlite", "postgres"):
        raise InvalidParameterError("store", allowed="'sqlite' or 'postgres'", received=store)


def _device() -> str:
    return (f"{platform.machine()} CPU ({os.cpu_count() or 1} cores), {platform.python_implementation()} "
            f"{platform.python_version()}")


def run_cache_bench(
    pairs: Sequence[str | Path] = (), *, methods: Sequence[str] = METHODS, split: Split | None = None,
    limit: int | None = None, threshold: float = DEFAULT_COSINE_THRESHOLD, stream: str | Path | None = None,
    entries: Sequence[int] = (), store: Literal["sqlite", "postgres"] = "sqlite",
    postgres_dsn: str | None = None, out: Path | None = None, show_progress: bool = True,
    embedder: Embedder | None = None, verifier: SemanticVerifier | None = None, seed: int = 0,
) -> CacheBenchResult:
    """Run the pairs comparison, the stream replay and/or the scale test; see the module doc.

    ``split``: None scores calibration corpora on their held-out half and other files whole.
    ``limit``: first N pairs per file (after the split) and first N stream prompts.
    ``out``: JSON path; a PNG (precision/recall/false hits per method, latency at scale) goes next to it.
    ``embedder``/``verifier``: default the bundled MiniLM and the shipped calibration.
    """
    from lean_benchmarks.progress import bench_progress

    _validate(pairs, methods, split, limit, threshold, stream, entries, store)
    if embedder is None:
        from lean_core.embeddings import default_embedder

        embedder = default_embedder()
    needs_verifier = bool(entries) or stream is not None or (bool(pairs) and "lean" in methods)
    calibration_path = "(a SemanticVerifier given by the caller)"
    if verifier is None and needs_verifier:
        from lean_core.cache.verifier import SemanticVerifier, default_calibration_path

        calibration_path = str(default_calibration_path())
        verifier = SemanticVerifier(calibration_path)
    calibration = verifier.calibration if verifier is not None else None
    result = CacheBenchResult(
        benchmark="cache", embedding_model=calibration.embedding_model if calibration else "all-MiniLM-L6-v2",
        methods=list(methods), cosine_threshold=float(threshold),
        gptcache_rule="SearchDistanceEvaluation(max_distance=4.0) + Config(similarity_threshold=0.8): "
                      "faiss squared L2 <= 0.8, i.e. cosine >= 0.6; top_k=1; sqlite + faiss, LRU bound raised "
                      "above the entry count (its default, 1000, would evict during the run)",
        limit=limit, device=_device(), date=time.strftime("%Y-%m-%d"))
    if calibration is not None and verifier is not None:
        result.calibration = CalibrationInfo(
            path=calibration_path, threshold=verifier.threshold, target_precision=calibration.target_precision,
            min_similarity=calibration.min_similarity, trained_on=list(calibration.trained_on))
    calibration_sources = CALIBRATION_SOURCES | set(calibration.trained_on if calibration else ())

    loaded = []
    for path in pairs:
        source = Path(path)
        used = source.stem in calibration_sources
        chosen: Split = split if split is not None else ("held_out" if used else "all")
        everything = load_pairs(source)  # labels of the whole file define the duplicate groups
        subset = load_pairs(source, split=chosen, limit=limit)
        if not subset:
            raise InvalidParameterError("pairs", allowed="a file with pairs in the chosen split", received=str(path))
        loaded.append((source, chosen, used, everything, subset))

    with bench_progress(show=show_progress) as progress:
        for source, chosen, used, everything, subset in loaded:
            _run_pairs(result, source, chosen, used, everything, subset, methods, threshold, embedder,
                       verifier, progress)
        if stream is not None:
            assert verifier is not None
            result.stream = run_stream(stream, limit=limit, embedder=embedder, verifier=verifier,
                                       progress=progress)
        if entries:
            assert verifier is not None
            result.scale = run_scale(entries, store=store, postgres_dsn=postgres_dsn, embedder=embedder,
                                     verifier=verifier, progress=progress, seed=seed)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(result), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        _chart(result, out.with_suffix(".png"))
    return result


def _run_pairs(result: CacheBenchResult, source: Path, split: Split, used: bool,
               everything: list[LabelledPair], subset: list[LabelledPair], methods: Sequence[str],
               threshold: float, embedder: Embedder, verifier: SemanticVerifier | None, progress: Any) -> None:
    dataset = source.stem
    kinds = _read_kinds(source)
    groups = _Groups(everything)
    prompts = list(dict.fromkeys(p.text_a for p in subset))
    positives = sum(p.label for p in subset)
    result.datasets.append(PairsDataset(dataset=dataset, path=str(source), split=split, used_for_calibration=used,
                                        pairs=len(subset), positives=positives, negatives=len(subset) - positives,
                                        cached_prompts=len(prompts)))
    task = progress.add_task(f"{dataset}: embedding {len(prompts)} cached prompts", total=None)
    vectors = embedder.encode([normalize_prompt(p) for p in prompts])
    built: list[tuple[CacheMethod, Any]] = []
    try:
        for name in methods:
            progress.update(task, description=f"{dataset}: filling {name}")
            method, cleanup = build_method(name, embedder=embedder, verifier=verifier, threshold=threshold)
            built.append((method, cleanup))
            method.fill(prompts, vectors)
            method.lookup("An untimed warm-up lookup that loads what the first one would.")
        progress.update(task, description=f"{dataset}: lookups", total=len(subset) * len(built), completed=0)
        tallies = {method.name: _Tally() for method, _ in built}
        for pair in subset:
            kind = kinds.get((pair.text_a, pair.text_b), f"label_{pair.label}")
            for method, _ in built:  # interleaved, so background load hits every method alike
                started = time.perf_counter()
                served = method.lookup(pair.text_b)
                elapsed = time.perf_counter() - started
                tallies[method.name].add(pair, kind, served, elapsed, groups)
                progress.advance(task)
    finally:
        for _, cleanup in built:
            cleanup()
    for name in methods:
        result.pairs.append(tallies[name].row(dataset, name, positives, len(subset) - positives, bool(kinds)))


# -- chart ----------------------------------------------------------------------------------------
def _chart(result: CacheBenchResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, Any]] = [(d.dataset, d) for d in result.datasets]
    if result.scale:
        panels.append(("scale", None))
    if result.stream is not None:
        panels.append(("stream", None))
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6.0, 4.6 * len(panels)), 3.9), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, (title, info) in zip(axes[0], panels, strict=True):
        if info is not None:
            rows = [r for r in result.pairs if r.dataset == title]
            metrics = (("precision", "precision"), ("recall", "recall"), ("false_hit_rate", "false hits"))
            width = 0.8 / max(len(rows), 1)
            for m, row in enumerate(rows):
                raw = [getattr(row, key) for key, _ in metrics]
                xs = [i + (m - (len(rows) - 1) / 2) * width for i in range(len(metrics))]
                bars = ax.bar(xs, [v or 0.0 for v in raw], width, color=colors(m),
                              label=f"{row.method} (p50 {row.p50_lookup_ms:.1f} ms)")
                ax.bar_label(bars, labels=["n/a" if v is None else f"{v:.2f}" for v in raw], fontsize=6, padding=1)
            ax.set_xticks(range(len(metrics)), [label for _, label in metrics])
            ax.set_ylim(0, 1.08)
            ax.set_title(f"{title} ({info.split}, {info.pairs} pairs)", fontsize=9)
        elif title == "scale":
            for m, probe in enumerate(sorted({r.probe for r in result.scale})):
                points = sorted((r for r in result.scale if r.probe == probe), key=lambda r: r.entries)
                ax.plot([r.entries for r in points], [r.p50_lookup_ms for r in points], "o-", color=colors(m),
                        label=f"{probe} p50")
                ax.plot([r.entries for r in points], [r.p99_lookup_ms for r in points], "s--", color=colors(m),
                        alpha=0.6, label=f"{probe} p99")
            ax.set_xscale("log")
            ax.set_xlabel("entries in the store")
            ax.set_ylabel("ResponseCache.lookup (ms)")
            ax.set_title(f"lookup latency at scale ({result.scale[0].store})", fontsize=9)
        else:
            s = result.stream
            assert s is not None
            labels = ["exact hits", "semantic hits", "misses"]
            values = [s.exact_hits, s.semantic_hits, s.misses]
            bars = ax.bar(labels, values, color=[colors(0), colors(1), colors(7)])
            ax.bar_label(bars, fontsize=7)
            ax.set_title(f"stream replay: {s.lookups} prompts, hit rate {s.hit_rate:.1%}", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    title = f"lean-inference response cache ({result.embedding_model}, {result.date})"
    if result.pairs:
        title = (f"response caches side by side ({result.embedding_model}; threshold method: cosine >= "
                 f"{result.cosine_threshold:g})")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
