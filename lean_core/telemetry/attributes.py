"""The attribute names the OpenTelemetry export writes: GenAI semantic conventions and ``lean.*``.

The ``gen_ai.*`` names follow the OpenTelemetry GenAI semantic conventions (checked against
``opentelemetry-semantic-conventions`` 0.66b2, where they are marked as moved to the separate
semantic-conventions-genai repository, names unchanged). They are spelt out here rather than
imported from that package's ``_incubating`` modules, which are not a stable import path; a unit
test compares them with the installed package so a rename is caught.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "GEN_AI_OPERATION_NAME",
    "GEN_AI_PROVIDER_NAME",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_RESPONSE_MODEL",
    "GEN_AI_SYSTEM",
    "GEN_AI_TOKEN_TYPE",
    "GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS",
    "GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS",
    "GEN_AI_USAGE_INPUT_TOKENS",
    "GEN_AI_USAGE_OUTPUT_TOKENS",
    "GEN_AI_USAGE_REASONING_OUTPUT_TOKENS",
    "LEAN_CACHE_HIT",
    "LEAN_CACHE_MISS_REASON",
    "LEAN_CACHE_WRITE_1H_TOKENS",
    "LEAN_CALL_ID",
    "LEAN_COST_SAVED_USD",
    "LEAN_COST_USD",
    "LEAN_INPUT_COST_USD",
    "LEAN_INPUT_TOKENS_AFTER",
    "LEAN_INPUT_TOKENS_BEFORE",
    "LEAN_INPUT_TOKENS_SAVED",
    "LEAN_LAYER",
    "LEAN_MODEL",
    "LEAN_OUTPUT_COST_USD",
    "LEAN_OUTPUT_TOKENS_AFTER",
    "LEAN_OUTPUT_TOKENS_BEFORE",
    "LEAN_OUTPUT_TOKENS_SAVED",
    "LEAN_PRICED",
    "LEAN_RUN_ID",
    "LEAN_SAVINGS_ID",
    "LEAN_TAGS",
    "LEAN_TENANT",
    "LEAN_TOKENS_AFTER",
    "LEAN_TOKENS_BEFORE",
    "LEAN_TOKENS_SAVED",
    "LEAN_UNPRICED_REASON",
    "LEAN_USAGE_SOURCE",
    "METRIC_COST",
    "METRIC_COST_SAVED",
    "METRIC_OPERATION_DURATION",
    "METRIC_TOKENS_SAVED",
    "METRIC_TOKEN_USAGE",
    "SEMCONV_PROVIDER_NAMES",
]

# -- GenAI semantic conventions (span attributes) ------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_SYSTEM: Final = "gen_ai.system"
"""Deprecated for ``gen_ai.provider.name`` but still the key several backends read (written too
unless ``legacy_system_attribute=False``)."""
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
"""All prompt tokens, cached and cache-written ones included (as the conventions define it)."""
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
"""All generated tokens, reasoning tokens included."""
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
"""Metric attribute of ``gen_ai.client.token.usage``: ``"input"`` or ``"output"``."""

# -- lean-inference's own attributes --------------------------------------------------------------
LEAN_CALL_ID: Final = "lean.call_id"
"""The ledger's CallRecord id (on a savings span: the call it belongs to, when known)."""
LEAN_RUN_ID: Final = "lean.run_id"
"""The framework's run id (LangChain run_id, LlamaIndex span id), to join with its own traces."""
LEAN_SAVINGS_ID: Final = "lean.savings_id"
LEAN_TENANT: Final = "lean.tenant"
LEAN_TAGS: Final = "lean.tags"
LEAN_USAGE_SOURCE: Final = "lean.usage_source"
"""``provider`` (exact), ``tokenizer`` or ``estimate``: how the token counts were obtained."""
LEAN_PRICED: Final = "lean.priced"
LEAN_UNPRICED_REASON: Final = "lean.unpriced_reason"
LEAN_COST_USD: Final = "lean.cost_usd"
LEAN_INPUT_COST_USD: Final = "lean.input_cost_usd"
LEAN_OUTPUT_COST_USD: Final = "lean.output_cost_usd"
LEAN_CACHE_WRITE_1H_TOKENS: Final = "lean.cache_write_1h_tokens"
"""Of the cache-creation tokens, those written with a 1-hour lifetime (priced higher)."""
LEAN_LAYER: Final = "lean.layer"
LEAN_MODEL: Final = "lean.model"
"""The model a savings span's tokens are counted in. Not ``gen_ai.request.model``: backends count
a span carrying that as one more LLM call, and a savings span is not a call."""
LEAN_INPUT_TOKENS_BEFORE: Final = "lean.input_tokens_before"
LEAN_INPUT_TOKENS_AFTER: Final = "lean.input_tokens_after"
LEAN_INPUT_TOKENS_SAVED: Final = "lean.input_tokens_saved"
LEAN_OUTPUT_TOKENS_BEFORE: Final = "lean.output_tokens_before"
LEAN_OUTPUT_TOKENS_AFTER: Final = "lean.output_tokens_after"
LEAN_OUTPUT_TOKENS_SAVED: Final = "lean.output_tokens_saved"
LEAN_TOKENS_BEFORE: Final = "lean.tokens_before"
"""Input + output tokens the request would have used without the layer."""
LEAN_TOKENS_AFTER: Final = "lean.tokens_after"
LEAN_TOKENS_SAVED: Final = "lean.tokens_saved"
LEAN_COST_SAVED_USD: Final = "lean.cost_saved_usd"
LEAN_CACHE_HIT: Final = "lean.cache_hit"
LEAN_CACHE_MISS_REASON: Final = "lean.cache_miss_reason"
"""Why a cache miss called the model (e.g. ``exploration``: a near entry was audited)."""

# -- metrics --------------------------------------------------------------------------------------
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_COST: Final = "lean.cost"
METRIC_COST_SAVED: Final = "lean.cost.saved"
METRIC_TOKENS_SAVED: Final = "lean.tokens.saved"

# genai-prices provider ids (what the ledger stores, see lean_core.pricing.provider_id_for) ->
# the conventions' well-known gen_ai.provider.name values; any other provider passes through.
SEMCONV_PROVIDER_NAMES: Final[dict[str, str]] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "gcp.gen_ai",
    "azure": "azure.ai.openai",
    "aws": "aws.bedrock",
    "x-ai": "x_ai",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "cohere": "cohere",
    "perplexity": "perplexity",
}
