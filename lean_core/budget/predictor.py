"""The length predictor: how many output tokens a query needs, from its features.

Two linear quantile regressions on log output length: the median (what the answer will probably
use, the baseline the ledger's savings are measured against) and a high quantile (the budget, so
that only about ``1 - quantile`` of natural answers would reach it). Fitted by iteratively
reweighted least squares in numpy: no model download, microseconds per prediction.

The bundled predictor was fitted on the local model's answers to queries from ``../shared/data``
(``lean-inference budget fit``); ``refreshed`` refits it with the ledger's history of real output
lengths, so it learns the deployed model's habits.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lean_core.budget.features import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    QueryFeatures,
    extract_features,
)
from lean_core.errors import InvalidParameterError

if TYPE_CHECKING:
    from lean_core.ledger_records import OutputLengthRecord

__all__ = ["LengthPrediction", "LengthPredictor", "default_predictor"]

_BUNDLED = Path(__file__).resolve().parents[1] / "data" / "length_predictor_smollm2.json"
_KIND = "lean-inference-length-predictor"
_RIDGE = 1e-2
_IRLS_STEPS = 60
_EPS = 1e-3
# A refresh raises the budget when more than this share of recent answers hit it.
_TARGET_TRUNCATION = 0.05


@dataclass(frozen=True, slots=True)
class LengthPrediction:
    """Predicted output tokens for one query."""

    expected_tokens: int
    """Median natural length: the baseline for the ledger's "output" savings."""
    budget_tokens: int
    """The high-quantile length, times the margin: the ``max_tokens`` to send."""


def _fit_quantile(x: np.ndarray, y: np.ndarray, quantile: float, weights: np.ndarray) -> np.ndarray:
    w = np.linalg.lstsq(x, y, rcond=None)[0]
    ridge = _RIDGE * np.eye(x.shape[1])
    ridge[0, 0] = 0.0  # never shrink the intercept
    for _ in range(_IRLS_STEPS):
        r = y - x @ w
        side = np.where(r > 0, quantile, 1.0 - quantile)
        irls = weights * side / np.maximum(np.abs(r), _EPS)
        xw = x * irls[:, None]
        w_new = np.linalg.solve(x.T @ xw + ridge, xw.T @ y)
        if np.max(np.abs(w_new - w)) < 1e-6:
            return w_new
        w = w_new
    return w


class LengthPredictor:
    """Predicts output lengths from query features (see ``lean_core.budget.features``)."""

    def __init__(self, *, median_weights: Sequence[float], budget_weights: Sequence[float], quantile: float,
                 model: str, margin: float = 1.0, rows: Sequence[Sequence[float]] = (),
                 lengths: Sequence[int] = ()) -> None:
        if len(median_weights) != len(FEATURE_NAMES) or len(budget_weights) != len(FEATURE_NAMES):
            raise InvalidParameterError("weights", allowed=f"{len(FEATURE_NAMES)} values (feature version "
                                        f"{FEATURE_VERSION})", received=f"{len(median_weights)} values")
        if not 0.5 <= quantile < 1.0:
            raise InvalidParameterError("quantile", allowed="a value in [0.5, 1)", received=quantile)
        if margin <= 0:
            raise InvalidParameterError("margin", allowed="a positive factor", received=margin)
        self._median = np.asarray(median_weights, dtype=float)
        self._budget = np.asarray(budget_weights, dtype=float)
        self.quantile = quantile
        self.model = model
        """The model whose answers it was fitted on."""
        self.margin = margin
        self._rows = [tuple(float(v) for v in r) for r in rows]
        self._lengths = [int(n) for n in lengths]

    # -- fitting -----------------------------------------------------------------------------
    @classmethod
    def fit(cls, features: Sequence[QueryFeatures | Sequence[float]], output_tokens: Sequence[int], *,
            model: str, quantile: float = 0.95, margin: float = 1.0,
            sample_weights: Sequence[float] | None = None) -> LengthPredictor:
        """Fit on natural (untruncated) answer lengths; ``features`` from ``extract_features``."""
        rows = [tuple(f.values) if isinstance(f, QueryFeatures) else tuple(f) for f in features]
        if len(rows) != len(output_tokens):
            raise InvalidParameterError("output_tokens", allowed=f"one length per feature row ({len(rows)})",
                                        received=len(output_tokens))
        if len(rows) < len(FEATURE_NAMES):
            raise InvalidParameterError("features", allowed=f"at least {len(FEATURE_NAMES)} examples",
                                        received=len(rows))
        if any(n < 0 for n in output_tokens):
            raise InvalidParameterError("output_tokens", allowed="non-negative counts", received=min(output_tokens))
        x = np.asarray(rows, dtype=float)
        y = np.log1p(np.asarray(output_tokens, dtype=float))
        weights = np.ones(len(rows)) if sample_weights is None else np.asarray(sample_weights, dtype=float)
        return cls(median_weights=_fit_quantile(x, y, 0.5, weights).tolist(),
                   budget_weights=_fit_quantile(x, y, quantile, weights).tolist(), quantile=quantile,
                   model=model, margin=margin, rows=rows, lengths=list(output_tokens))

    def refreshed(self, history: Sequence[OutputLengthRecord], *, min_records: int = 20,
                  history_weight: float = 2.0) -> LengthPredictor:
        """Refit with the ledger's real output lengths of this predictor's feature version.

        Answers that hit their budget (``finish_reason == "length"``) only bound the natural
        length from below, so they are left out of the fit; instead, when more than 5 % of them
        were cut, the margin grows. With fewer than ``min_records`` usable records, ``self`` is
        returned unchanged.
        """
        usable = [h for h in history if h.feature_version == FEATURE_VERSION]
        if len(usable) < min_records:
            return self
        natural = [h for h in usable if h.finish_reason != "length"]
        cut_share = 1.0 - len(natural) / len(usable)
        margin = self.margin * (1.0 + max(0.0, cut_share - _TARGET_TRUNCATION) * 4.0)
        rows = self._rows + [tuple(h.features) for h in natural]
        lengths = self._lengths + [h.output_tokens for h in natural]
        weights = [1.0] * len(self._rows) + [history_weight] * len(natural)
        return LengthPredictor.fit(rows, lengths, model=self.model, quantile=self.quantile, margin=margin,
                                   sample_weights=weights)

    # -- predicting --------------------------------------------------------------------------
    def predict(self, query: str | QueryFeatures, *, brevity_instruction: bool = False) -> LengthPrediction:
        """Median and budget lengths for ``query`` (text or features)."""
        features = query if isinstance(query, QueryFeatures) else extract_features(
            query, brevity_instruction=brevity_instruction)
        x = np.asarray(features.values, dtype=float)
        median = max(1, math.ceil(math.expm1(float(x @ self._median))))
        budget = max(median, math.ceil(math.expm1(float(x @ self._budget)) * self.margin))
        if features.requested_tokens is not None:  # "in 500 words" is an order, not a guess
            budget = max(budget, math.ceil(features.requested_tokens * 1.25))
            median = max(median, features.requested_tokens)
        return LengthPrediction(expected_tokens=median, budget_tokens=budget)

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"kind": _KIND, "feature_version": FEATURE_VERSION, "feature_names": list(FEATURE_NAMES),
                "model": self.model, "quantile": self.quantile, "margin": self.margin,
                "median_weights": [round(v, 6) for v in self._median.tolist()],
                "budget_weights": [round(v, 6) for v in self._budget.tolist()],
                "rows": [[round(v, 4) for v in r] for r in self._rows], "lengths": self._lengths}

    def save(self, path: str | os.PathLike[str]) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), separators=(",", ":")), encoding="utf-8")
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LengthPredictor:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidParameterError("path", allowed="a length predictor JSON file "
                                        "(lean-inference budget fit --out)", received=str(path)) from exc
        if not isinstance(data, dict) or data.get("kind") != _KIND:
            raise InvalidParameterError("path", allowed="a lean-inference length predictor file",
                                        received=str(path))
        if data.get("feature_version") != FEATURE_VERSION:
            raise InvalidParameterError("path", allowed=f"a predictor of feature version {FEATURE_VERSION}; "
                                        "refit it with lean-inference budget fit",
                                        received=f"version {data.get('feature_version')!r} in {path}")
        return cls(median_weights=data["median_weights"], budget_weights=data["budget_weights"],
                   quantile=data["quantile"], model=data["model"], margin=data.get("margin", 1.0),
                   rows=data.get("rows", ()), lengths=data.get("lengths", ()))


@cache
def default_predictor() -> LengthPredictor:
    """The bundled predictor (fitted on SmolLM2-135M-Instruct's answers), loaded once."""
    return LengthPredictor.load(_BUNDLED)
