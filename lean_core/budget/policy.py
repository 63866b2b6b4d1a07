"""The output-budget policy: from a query to a per-request plan, and from an answer to savings.

A plan holds the ``max_tokens`` to send (the predictor's high quantile, clipped to the room the
context window leaves), an optional brevity instruction matched to the answer form, stop
sequences for short factual answers, and the early-stopping rule for local models (with a
one-sentence limit for questions that ask for a single fact). The outcome of
a call (finish reason, tokens, continuation) becomes the ledger's "output" savings event and one
row of length history.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from lean_core.budget.early_stop import EarlyStopReason, EarlyStopRule
from lean_core.budget.features import QueryFeatures, extract_features
from lean_core.budget.params import is_reasoning_model
from lean_core.budget.predictor import LengthPredictor, default_predictor
from lean_core.errors import InvalidParameterError

__all__ = ["BudgetOptions", "BudgetOutcome", "BudgetPlan", "TruncationPolicy", "asks_one_fact", "brevity_instruction",
           "plan_budget"]

TruncationPolicy = Literal["continue", "report", "raise"]

_FACT_FORMS = ("q_who", "q_when", "q_where", "q_which")
# Questions that ask for one fact, a name, a date, a place or a number; answered in a sentence.
_ONE_FACT_QUESTIONS = (*_FACT_FORMS, "q_what", "q_how_many")
# Forms whose answer needs more than one sentence, whatever the question word.
_LONGER_FORMS = ("form_word_problem", "form_explanation", "form_list", "form_code", "form_long_form", "form_summary",
                 "form_translation", "detail_asked", "log_items_asked", "log_lines")


class BudgetOptions(BaseModel):
    """Options of every output-budget adapter (LangChain ``LeanBudget``, LlamaIndex ``LeanBudgetLLM``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    predictor: LengthPredictor | None = None
    """Length predictor; None uses the bundled one (fitted on SmolLM2's answers: refit it for
    another model with ``lean-inference budget fit``, or refresh it from the ledger)."""
    brevity: bool = False
    """Add a brevity instruction matched to the answer form ("Answer in one short sentence.") to
    the last user message (the end of the prompt, so cached prefixes are untouched)."""
    early_stop: EarlyStopRule | None = Field(default_factory=EarlyStopRule)
    """Early stopping for the local vLLM model (confidence and repetition); other models ignore it."""
    on_truncation: TruncationPolicy = "continue"
    """An answer cut by its budget: ``"continue"`` asks once more for the rest, ``"report"`` marks it
    (``lean_budget.truncated`` in the response metadata), ``"raise"`` raises ``OutputTruncatedError``."""
    min_tokens: StrictInt = Field(16, ge=1)
    """Smallest budget ever sent (>= 1)."""
    max_tokens: StrictInt | None = Field(None, ge=1)
    """Largest budget ever sent (>= 1); None: only the context window limits it."""
    stop_sequences: bool = True
    """Stop short factual answers at the first blank line (who/when/where/which questions)."""
    fact_sentences: StrictInt | None = Field(1, ge=1)
    """Early stopping ends the answer to a one-line question that asks for a single fact
    (who/when/where/which/what/how many, not a list, an explanation, code, writing or a worked
    problem) after this many sentences (>= 1); None: no limit. Local vLLM model only, like
    ``early_stop``; the answer's ``early_stop`` says ``"sentences"`` where it fired.
    SmolLM2's RAG answers put the fact in their first sentence and spend about a third of their
    tokens elaborating after it (BENCHMARKS.md, issue 23)."""
    reasoning_allowance: StrictInt = Field(1024, ge=0)
    """Tokens added to the budget of reasoning models (their hidden reasoning counts against it)."""


class BudgetPlan(BaseModel):
    """What one request is sent with."""

    model_config = ConfigDict(frozen=True)

    max_tokens: int
    expected_tokens: int
    """Predicted natural length with this plan's prompt (brevity included)."""
    baseline_tokens: int
    """Predicted natural length without brevity: the ledger's "before"."""
    brevity_instruction: str | None
    stop: tuple[str, ...]
    early_stop: EarlyStopRule | None
    features: tuple[float, ...]


class BudgetOutcome(BaseModel):
    """What the budget did to one answer (also put in response metadata as ``lean_budget``)."""

    model_config = ConfigDict(frozen=True)

    max_tokens: int
    expected_tokens: int
    baseline_tokens: int
    output_tokens: int
    finish_reason: str | None
    truncated: bool
    """True when the final answer still ends at a budget."""
    continued: bool = False
    """True when a cut answer was continued once."""
    early_stop: EarlyStopReason | None = None
    brevity: bool = False


def brevity_instruction(features: QueryFeatures) -> str:
    """The instruction for the answer form the query implies (features from ``extract_features``)."""
    f = features.as_dict()
    if f["form_code"]:
        return "Reply with the code and at most one sentence of explanation."
    if f["form_long_form"] or f["form_summary"] or f["form_translation"] or features.requested_tokens:
        return "Be concise: no preamble, no repetition."
    if f["form_list"]:
        return "Answer with a short list, one line per item."
    if f["form_word_problem"]:
        return "Solve it in a few short steps, then state the final answer."
    if f["form_explanation"] or f["q_why"] or f["q_how"]:
        return "Answer in at most three sentences."
    return "Answer in one short sentence."


def asks_one_fact(features: QueryFeatures) -> bool:
    """True for a one-line question that asks for a single fact (features from
    ``extract_features``): what ``BudgetOptions.fact_sentences`` applies to."""
    f = features.as_dict()
    return (any(f[q] for q in _ONE_FACT_QUESTIONS) and not any(f[x] for x in _LONGER_FORMS)
            and features.requested_tokens is None)


def _is_fact(features: QueryFeatures) -> bool:
    f = features.as_dict()
    return any(f[q] for q in _FACT_FORMS) and not (f["form_list"] or f["form_explanation"] or f["form_code"])


def plan_budget(query: str, options: BudgetOptions, *, model: str | None = None,
                context_window: int | None = None, prompt_tokens: int | None = None) -> BudgetPlan:
    """The plan for ``query`` (the last user turn). ``context_window`` and ``prompt_tokens``, when
    known, clip the budget to the room left; no room at all is an error naming both numbers."""
    if not isinstance(query, str):
        raise InvalidParameterError("query", allowed="the last user message as a str", received=type(query).__name__)
    predictor = options.predictor or default_predictor()
    plain = extract_features(query)
    features = extract_features(query, brevity_instruction=True) if options.brevity else plain
    prediction = predictor.predict(features)
    baseline = predictor.predict(plain).expected_tokens if options.brevity else prediction.expected_tokens
    budget = max(options.min_tokens, prediction.budget_tokens)
    if model is not None and is_reasoning_model(model):
        budget += options.reasoning_allowance
    if options.max_tokens is not None:
        budget = min(budget, options.max_tokens)
    if context_window is not None:
        room = context_window - (prompt_tokens or 0)
        if room < 1:
            raise InvalidParameterError(
                "prompt", allowed=f"fewer than {context_window} tokens (the model's context window)",
                received=f"{prompt_tokens} tokens")
        if options.max_tokens is not None and options.max_tokens > context_window:
            raise InvalidParameterError("max_tokens", allowed=f"at most the context window ({context_window})",
                                        received=options.max_tokens)
        budget = min(budget, room)
    stop = ("\n\n",) if options.stop_sequences and _is_fact(plain) else ()
    early_stop = options.early_stop
    if early_stop is not None and options.fact_sentences is not None and asks_one_fact(plain):
        early_stop = early_stop.model_copy(update={"sentences": options.fact_sentences})
    return BudgetPlan(max_tokens=budget, expected_tokens=min(prediction.expected_tokens, budget),
                      baseline_tokens=baseline, stop=stop, early_stop=early_stop,
                      brevity_instruction=brevity_instruction(plain) if options.brevity else None,
                      features=features.values)
