"""Layer 4, output budgets: per-request token budgets, early stopping, truncation handling."""

from lean_core.budget.early_stop import EarlyStopMonitor, EarlyStopReason, EarlyStopRule
from lean_core.budget.features import QueryFeatures, extract_features
from lean_core.budget.params import BudgetParameter, budget_parameter, provider_budget_params
from lean_core.budget.policy import (
    BudgetOptions,
    BudgetOutcome,
    BudgetPlan,
    TruncationPolicy,
    brevity_instruction,
    plan_budget,
)
from lean_core.budget.predictor import LengthPrediction, LengthPredictor, default_predictor
from lean_core.budget.session import BudgetRequest, BudgetSession, ModelAnswer, with_brevity
from lean_core.budget.stream_cut import StreamCut
from lean_core.budget.truncation import OutputTruncatedError, finish_reason_of, is_truncated

__all__ = [
    "BudgetOptions",
    "BudgetOutcome",
    "BudgetParameter",
    "BudgetPlan",
    "BudgetRequest",
    "BudgetSession",
    "EarlyStopMonitor",
    "EarlyStopReason",
    "EarlyStopRule",
    "LengthPrediction",
    "LengthPredictor",
    "ModelAnswer",
    "OutputTruncatedError",
    "QueryFeatures",
    "StreamCut",
    "TruncationPolicy",
    "brevity_instruction",
    "budget_parameter",
    "default_predictor",
    "extract_features",
    "finish_reason_of",
    "is_truncated",
    "plan_budget",
    "provider_budget_params",
    "with_brevity",
]
