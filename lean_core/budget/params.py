"""Which request parameter carries an output budget, per provider and per framework model class.

Providers disagree: OpenAI's chat API wants ``max_completion_tokens`` (reasoning models refuse
``max_tokens``), Anthropic requires ``max_tokens``, Gemini takes ``max_output_tokens``, Ollama
``num_predict``, Hugging Face ``max_new_tokens``, vLLM ``SamplingParams.max_tokens``. Unknown
classes fall back to the generic ``max_tokens`` (documented), or raise with ``strict=True``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from lean_core.errors import InvalidParameterError

__all__ = ["BudgetParameter", "Provider", "budget_parameter", "provider_budget_params"]

Provider = Literal["openai", "openai-reasoning", "anthropic", "google", "ollama", "huggingface", "vllm",
                   "bedrock", "mistral", "cohere", "generic"]

GENERIC_PARAMETER = "max_tokens"


@dataclass(frozen=True, slots=True)
class BudgetParameter:
    """Where a model class takes its output budget."""

    name: str
    """The keyword argument (LangChain ``bind``) or field (LlamaIndex) to set."""
    provider: Provider
    known: bool
    """False when the class was not recognised and the generic ``max_tokens`` stands in."""


_REASONING = re.compile(r"^(o\d|gpt-5|gpt-4\.1-reasoning)", re.IGNORECASE)

# Class names of LangChain and LlamaIndex model integrations -> (parameter, provider).
_BY_CLASS: dict[str, tuple[str, Provider]] = {
    # LangChain
    "ChatOpenAI": ("max_tokens", "openai"), "AzureChatOpenAI": ("max_tokens", "openai"),
    "ChatAnthropic": ("max_tokens", "anthropic"), "ChatAnthropicVertex": ("max_tokens", "anthropic"),
    "ChatGoogleGenerativeAI": ("max_output_tokens", "google"), "ChatVertexAI": ("max_output_tokens", "google"),
    "ChatOllama": ("num_predict", "ollama"), "OllamaLLM": ("num_predict", "ollama"),
    "ChatHuggingFace": ("max_new_tokens", "huggingface"), "HuggingFacePipeline": ("max_new_tokens", "huggingface"),
    "ChatBedrock": ("max_tokens", "bedrock"), "ChatBedrockConverse": ("max_tokens", "bedrock"),
    "ChatMistralAI": ("max_tokens", "mistral"), "ChatCohere": ("max_tokens", "cohere"),
    "ChatGroq": ("max_tokens", "openai"), "ChatFireworks": ("max_tokens", "openai"),
    "ChatTogether": ("max_tokens", "openai"), "ChatDeepSeek": ("max_tokens", "openai"),
    "ChatXAI": ("max_tokens", "openai"), "ChatLeanVLLM": ("max_tokens", "vllm"), "VLLM": ("max_tokens", "vllm"),
    "VLLMOpenAI": ("max_tokens", "vllm"), "ChatLiteLLM": ("max_tokens", "openai"),
    # LlamaIndex
    "OpenAI": ("max_tokens", "openai"), "AzureOpenAI": ("max_tokens", "openai"),
    "OpenAILike": ("max_tokens", "openai"), "Anthropic": ("max_tokens", "anthropic"),
    "GoogleGenAI": ("max_tokens", "google"), "Gemini": ("max_tokens", "google"),
    "Ollama": ("num_predict", "ollama"), "HuggingFaceLLM": ("max_new_tokens", "huggingface"),
    "Vllm": ("max_tokens", "vllm"), "VllmServer": ("max_tokens", "vllm"), "LeanVLLM": ("max_tokens", "vllm"),
    "MistralAI": ("max_tokens", "mistral"), "Bedrock": ("max_tokens", "bedrock"),
    "BedrockConverse": ("max_tokens", "bedrock"), "Groq": ("max_tokens", "openai"), "LiteLLM": ("max_tokens", "openai"),
    "MockLLM": ("max_tokens", "generic"),
}


def budget_parameter(model: Any, *, strict: bool = False) -> BudgetParameter:
    """The parameter that carries ``model``'s output budget (an instance or a class name).

    LangChain's ``ChatOpenAI`` maps ``max_tokens`` onto the API's ``max_completion_tokens``
    itself, so ``max_tokens`` is bound for it, including reasoning models. Subclasses resolve
    through their bases (a custom ``ChatOpenAI`` subclass gets the OpenAI parameter).
    """
    names = [model] if isinstance(model, str) else [c.__name__ for c in type(model).__mro__]
    for name in names:
        if name in _BY_CLASS:
            param, provider = _BY_CLASS[name]
            return BudgetParameter(name=param, provider=provider, known=True)
    if strict:
        shown = model if isinstance(model, str) else type(model).__name__
        raise InvalidParameterError(
            "llm", allowed=f"a model class with a known output-budget parameter ({', '.join(sorted(_BY_CLASS))}); "
            "or pass parameter= explicitly, or strict=False to use the generic max_tokens", received=shown)
    return BudgetParameter(name=GENERIC_PARAMETER, provider="generic", known=False)


def provider_budget_params(provider: Provider, max_tokens: int, *, model: str | None = None) -> dict[str, Any]:
    """Raw API request fields for a budget (for callers that build requests themselves).

    OpenAI chat completions: ``max_completion_tokens`` (the field every OpenAI model accepts);
    Anthropic Messages: ``max_tokens``; Gemini: ``generationConfig.maxOutputTokens``; Ollama:
    ``options.num_predict``; vLLM and OpenAI-compatible servers: ``max_tokens``.
    """
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidParameterError("max_tokens", allowed="an int >= 1", received=max_tokens)
    if provider in ("openai", "openai-reasoning"):
        return {"max_completion_tokens": max_tokens}
    if provider == "google":
        return {"generationConfig": {"maxOutputTokens": max_tokens}}
    if provider == "ollama":
        return {"options": {"num_predict": max_tokens}}
    if provider == "huggingface":
        return {"max_new_tokens": max_tokens}
    if provider == "bedrock":
        return {"inferenceConfig": {"maxTokens": max_tokens}}
    return {"max_tokens": max_tokens}


def is_reasoning_model(model: str) -> bool:
    """OpenAI reasoning models (o-series, gpt-5): their budget also pays for hidden reasoning."""
    return bool(_REASONING.match(model.split("/")[-1]))
