"""Fit the semantic-hit verifier on labelled pairs, for a chosen precision.

Pairs are ``{text_a, text_b, label}`` JSONL (label 1 = same request) or STS-benchmark CSV (score
>= 4 counts as the same, <= 2.5 as different, the rest is left out). Each pair is assigned to the
calibration half or the held-out half by a hash of its texts, so benchmarks can score the shipped
calibration on pairs it never saw. The serving threshold is read off out-of-fold probabilities
(5 folds) and must reach the target precision on *every* source corpus, not just on their mix.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lean_core.cache.pair_features import FEATURE_NAMES, pair_features
from lean_core.cache.verifier import Calibration
from lean_core.errors import InvalidParameterError

__all__ = ["LabelledPair", "fit_calibration", "is_calibration_pair", "load_pairs", "precision_recall_at"]


@dataclass(frozen=True)
class LabelledPair:
    text_a: str
    text_b: str
    label: int
    source: str = ""


def is_calibration_pair(text_a: str, text_b: str) -> bool:
    """True for the half of pairs used to calibrate; the other half is held out for evaluation."""
    digest = hashlib.sha256(f"{text_a}\x00{text_b}".encode("utf-8", "surrogatepass")).digest()
    return digest[0] % 2 == 0


def load_pairs(path: str | os.PathLike[str], *, split: str = "all", limit: int | None = None) -> list[LabelledPair]:
    """Read labelled pairs; ``split`` is "all", "calibration" or "held_out" (see :func:`is_calibration_pair`)."""
    if split not in ("all", "calibration", "held_out"):
        raise InvalidParameterError("split", allowed="'all', 'calibration' or 'held_out'", received=split)
    source = Path(path)
    if not source.is_file():
        raise InvalidParameterError("pairs", allowed="an existing JSONL or STS CSV file", received=str(path))
    pairs: list[LabelledPair] = []
    if source.suffix == ".csv":
        with source.open(encoding="utf-8", newline="") as handle:
            for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                if len(row) < 7:
                    continue
                try:
                    score = float(row[4])
                except ValueError:
                    continue
                if score >= 4.0 or score <= 2.5:
                    pairs.append(LabelledPair(row[5], row[6], int(score >= 4.0), source.stem))
    else:
        with source.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    raw = json.loads(line)
                    pairs.append(LabelledPair(str(raw["text_a"]), str(raw["text_b"]), int(raw["label"]), source.stem))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    raise InvalidParameterError("pairs", allowed="JSONL rows {text_a, text_b, label}",
                                                received=f"{source}:{number}: {exc}") from exc
    if split != "all":
        want = split == "calibration"
        pairs = [p for p in pairs if is_calibration_pair(p.text_a, p.text_b) == want]
    return pairs[:limit] if limit is not None else pairs


def precision_recall_at(scores: Sequence[float], labels: Sequence[int], threshold: float) -> tuple[float, float]:
    served = [y for s, y in zip(scores, labels, strict=True) if s >= threshold]
    positives = sum(labels)
    precision = sum(served) / len(served) if served else 1.0
    return precision, (sum(served) / positives if positives else 0.0)


def _fit_logistic(x: Any, y: Any, l2: float) -> tuple[Any, float]:
    import numpy as np

    design = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(50):  # Newton steps; converges in well under 20 on these features
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ w, -60, 60)))
        gradient = design.T @ (p - y) + penalty * w
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-7:
            break
    return w[:-1], float(w[-1])


def fit_calibration(pairs: Iterable[LabelledPair], *, encode: Callable[[list[str]], Any],
                    target_precision: float = 0.95, embedding_model: str = "all-MiniLM-L6-v2",
                    l2: float = 1.0, folds: int = 5, seed: int = 0) -> Calibration:
    """Fit the verifier on ``pairs`` with embeddings from ``encode`` (unit-normalised rows)."""
    import numpy as np

    if not 0.5 <= target_precision < 1.0:
        raise InvalidParameterError("target_precision", allowed="a value in [0.5, 1)", received=target_precision)
    data = list(pairs)
    if len({p.label for p in data}) < 2:
        raise InvalidParameterError("pairs", allowed="both positive (1) and negative (0) labels", received=len(data))
    texts = list(dict.fromkeys(t for p in data for t in (p.text_a, p.text_b)))
    vectors = encode(texts)
    row = {t: i for i, t in enumerate(texts)}
    sims = np.array([float(vectors[row[p.text_a]] @ vectors[row[p.text_b]]) for p in data])
    feats = [pair_features(p.text_a, p.text_b, s) for p, s in zip(data, sims, strict=True)]
    labels = np.array([p.label for p in data], dtype=float)
    # Vetoed pairs are refused whatever the model says: fit on the pairs the model decides.
    open_ = np.array([f.veto is None for f in feats])
    x = np.array([f.vector for f in feats], dtype=float)
    mean, scale = x[open_].mean(axis=0), x[open_].std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    rng = np.random.default_rng(seed)
    fold_of = rng.integers(0, folds, len(data))
    oof = np.zeros(len(data))
    for k in range(folds):
        train, test = open_ & (fold_of != k), fold_of == k
        w, b = _fit_logistic(z[train], labels[train], l2)
        oof[test] = 1.0 / (1.0 + np.exp(-np.clip(z[test] @ w + b, -60, 60)))
    oof[~open_] = 0.0
    weights, intercept = _fit_logistic(z[open_], labels[open_], l2)
    sources = sorted({p.source for p in data})
    threshold = max(_threshold_for(oof[[p.source == s for p in data]], labels[[p.source == s for p in data]],
                                   target_precision) for s in sources)
    positives = sims[labels == 1]
    min_similarity = float(max(0.3, np.percentile(positives, 0.5) - 0.02)) if len(positives) else 0.5
    precision, recall = precision_recall_at(list(oof), list(labels.astype(int)), threshold)
    return Calibration(features=FEATURE_NAMES, mean=tuple(map(float, mean)), scale=tuple(map(float, scale)),
                       weights=tuple(map(float, weights)), intercept=intercept, threshold=float(threshold),
                       min_similarity=min_similarity, target_precision=target_precision,
                       embedding_model=embedding_model, trained_on=tuple(sources),
                       metrics={"calibration_pairs": float(len(data)), "oof_precision": precision,
                                "oof_recall": recall})


def _threshold_for(scores: Any, labels: Any, target: float) -> float:
    """The lowest threshold whose served set still has ``target`` precision (at least 20 served)."""
    import numpy as np

    order = np.argsort(-scores)
    precision = np.cumsum(labels[order]) / np.arange(1, len(order) + 1)
    ok = np.where(precision[19:] >= target)[0]
    if not len(ok):
        return 1.0
    return float(scores[order][ok[-1] + 19])
