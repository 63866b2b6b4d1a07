"""Verified semantic hits: a candidate is served only when a calibrated decision accepts it.

The decision is a logistic model over :mod:`~lean_core.cache.pair_features` (similarity plus what
embeddings blur), with a threshold chosen for a target precision on labelled pairs, and hard
vetoes that no score overrides: different numbers (signs included), different named entities,
negation (any apostrophe, "non-"/"un-"/"in-" prefixes), swapped roles, and the near-miss checks of
:mod:`~lean_core.cache._vetoes` (opposite directions and antonyms, times of day, reordered numbers,
currencies, C/C++/C#, reversed "A-B" pairs). The calibration for the bundled MiniLM ships with the package (``lean_core/data``); users
recalibrate on their own pairs with ``lean-inference cache calibrate``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from lean_core.cache.pair_features import FEATURE_NAMES, PairFeatures, pair_features
from lean_core.errors import InvalidParameterError

__all__ = ["Calibration", "SemanticVerifier", "Verdict", "default_calibration_path"]

_BUNDLED = "cache_calibration_minilm.json"


def default_calibration_path() -> Path:
    """The calibration shipped for the bundled all-MiniLM-L6-v2."""
    return Path(str(resources.files("lean_core") / "data" / _BUNDLED))


@dataclass(frozen=True)
class Calibration:
    """A fitted verifier: standardisation, logistic weights and the serving threshold."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    intercept: float
    threshold: float
    """Minimum probability to serve; chosen for ``target_precision`` on the calibration pairs."""
    min_similarity: float
    """Candidates below this cosine are not even verified (no labelled duplicate lay below it)."""
    target_precision: float
    embedding_model: str
    similarity_floor: float = 0.85
    """No semantic hit is served below this cosine, whatever the model says (a guard for prompts
    unlike the short questions the model was fitted on)."""
    trained_on: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    """Precision/recall measured on the calibration pairs and on held-out pairs, when known."""

    def __post_init__(self) -> None:
        n = len(self.features)
        if tuple(self.features) != FEATURE_NAMES[: n] or not (len(self.mean) == len(self.scale) == len(self.weights) == n):
            raise InvalidParameterError("calibration", allowed=f"features {FEATURE_NAMES} with one weight each",
                                        received=self.features)
        if not 0.0 <= self.threshold <= 1.0:
            raise InvalidParameterError("threshold", allowed="a probability in [0, 1]", received=self.threshold)

    def probability(self, features: PairFeatures) -> float:
        z = self.intercept
        for value, mean, scale, weight in zip(features.vector, self.mean, self.scale, self.weights, strict=False):
            z += weight * (value - mean) / scale
        return 1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0)))

    def save(self, path: str | os.PathLike[str]) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Calibration:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(**{**raw, **{k: tuple(raw[k]) for k in ("features", "mean", "scale", "weights",
                                                                  "trained_on") if k in raw}})
        except (OSError, json.JSONDecodeError, TypeError, KeyError) as exc:
            raise InvalidParameterError("calibration", allowed="a JSON file written by `lean-inference cache "
                                        "calibrate`", received=f"{path} ({exc})") from exc


@dataclass(frozen=True)
class Verdict:
    """Whether a semantic candidate may be served, and why."""

    accepted: bool
    probability: float
    reason: str
    """"accepted", a veto ("numbers differ", ...) or "below threshold"."""


class SemanticVerifier:
    """Accepts a (new prompt, cached prompt) pair only when it is confidently the same request."""

    def __init__(self, calibration: Calibration | str | os.PathLike[str] | None = None, *,
                 threshold: float | None = None) -> None:
        if calibration is None:
            calibration = default_calibration_path()
        self.calibration = calibration if isinstance(calibration, Calibration) else Calibration.load(calibration)
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise InvalidParameterError("threshold", allowed="a probability in [0, 1]", received=threshold)
        self.threshold = self.calibration.threshold if threshold is None else threshold

    @property
    def min_similarity(self) -> float:
        return self.calibration.min_similarity

    def verdict(self, query: str, cached: str, similarity: float) -> Verdict:
        features = pair_features(query, cached, similarity)
        probability = self.calibration.probability(features)
        veto = features.veto
        if veto is not None:
            return Verdict(accepted=False, probability=probability, reason=veto)
        if similarity < self.calibration.similarity_floor:
            return Verdict(accepted=False, probability=probability, reason="similarity below floor")
        if probability < self.threshold:
            return Verdict(accepted=False, probability=probability, reason="below threshold")
        return Verdict(accepted=True, probability=probability, reason="accepted")
