"""LeanTemplate: a LangChain chat prompt template rendered from a PromptSpec, stable part first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.prompts.chat import BaseChatPromptTemplate
from langchain_core.runnables import ensure_config
from pydantic import Field

from lean_chain._prompt_cache_markers import prepare_request
from lean_core.prompt_cache import PromptCacheSettings, detect_cache_provider
from lean_core.templates import PromptSpec, RenderedPrompt, TemplateSavings
from lean_core.templates.errors import MissingVariableError
from lean_core.templates.options import TemplateOptions

__all__ = ["LeanTemplate"]


class LeanTemplate(TemplateOptions, BaseChatPromptTemplate):
    """A chat prompt template over :class:`~lean_core.templates.PromptSpec`: a system message with
    the stable instructions (byte-identical across requests, so prompt and prefix caches hit) and a
    user message with the chosen examples, the context and the question.

    Give the spec, or its sections directly; the other options are
    :class:`~lean_core.templates.options.TemplateOptions`. ``input_variables`` are the spec's
    variables. With a
    ``ledger`` and a ``baseline`` (the verbose template this one replaces, a ``str.format``
    template over the same variables), every format records one "template" savings event: the
    baseline's tokens against the lean prompt's, in ``model``'s tokenizer, tenant from the run's
    metadata ``{"tenant": ...}``.

    Example::

        prompt = LeanTemplate(role="You are Acme's support agent.",
                              task="Answer from the policy.", context="Policy:\\n{policy}",
                              question="Question: {question}")
        chain = prompt | llm
        chain.invoke({"policy": policy, "question": "Can I return shoes?"})
    """

    input_variables: list[str] = Field(default_factory=list)
    """Derived from the spec (its variables less the partial ones); any value given is replaced."""
    prompt_cache: PromptCacheSettings | None = None
    """Provider prompt-cache markers on the rendered messages: for Anthropic (``provider=
    "anthropic"``, or ``"auto"`` with a ``claude-*`` ``model``) the stable system prompt carries
    ``cache_control`` with the settings' ``ttl``. Other providers' markers are request fields,
    not message content: wrap the model in :class:`~lean_chain.prompt_cache.LeanPromptCache`
    (``template | LeanPromptCache.wrap(llm)``), which keys OpenAI's cache on this system prompt.
    None: plain messages."""

    @classmethod
    def _with_spec(cls, data: dict[str, Any], spec: PromptSpec) -> dict[str, Any]:
        partial = data.get("partial_variables") or {}
        # Always derived from the spec, so a copy made by ``partial()`` stays consistent.
        data["input_variables"] = [v for v in spec.variables if v not in partial]
        return super()._with_spec(data, spec)

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False  # holds a ledger (a database handle), which has no serialised form

    @property
    def _prompt_type(self) -> str:
        return "lean-template"

    def _validate_input(self, inner_input: Any) -> dict[str, Any]:
        if isinstance(inner_input, dict):
            given = {k for k, v in inner_input.items() if v is not None}
            missing = set(self.input_variables) - given
            if missing:  # our error names the parameter, what is needed and what came
                raise MissingVariableError(missing, required=self.spec.variables, received=given)
        return super()._validate_input(inner_input)

    def format_messages(self, **kwargs: Any) -> list[BaseMessage]:
        rendered, savings = self._render(kwargs)
        self.record_template(savings, tenant=_tenant())
        return self._marked(_messages(rendered))

    async def aformat_messages(self, **kwargs: Any) -> list[BaseMessage]:
        rendered, savings = self._render(kwargs)
        await self.arecord_template(savings, tenant=_tenant())
        return self._marked(_messages(rendered))

    def _marked(self, messages: list[BaseMessage]) -> list[BaseMessage]:
        if self.prompt_cache is None or not messages or not isinstance(messages[0], SystemMessage):
            return messages
        provider = self.prompt_cache.provider
        if provider == "auto":  # the template knows its model only by name
            provider = detect_cache_provider(model_name=self.model)
        # Only message markers: request fields (OpenAI's key, per tenant) are the model wrapper's.
        settings = self.prompt_cache.model_copy(update={"provider": provider})
        request = prepare_request(settings, model=None, system=messages[0], messages=messages[1:], tools=None,
                                  tenant=None)
        if request.plan.style != "breakpoints":
            return messages
        return [*([request.system] if request.system is not None else []), *request.messages]

    def render(self, **kwargs: Any) -> RenderedPrompt:
        """The typed rendering (messages, stable prefix, token counts) without touching the ledger."""
        return self._render(kwargs)[0]

    def _render(self, kwargs: Mapping[str, Any]) -> tuple[RenderedPrompt, TemplateSavings | None]:
        return self.render_values({k: _plain(v) for k, v in self._merge_partial_and_user_variables(**kwargs).items()})

    def pretty_repr(self, html: bool = False) -> str:
        return "\n\n".join(f"{m.role}: {m.content}" for m in self.render(
            **{v: f"{{{v}}}" for v in self.spec.variables}).messages)


def _plain(value: Any) -> Any:
    # Retrievers hand over Documents: their text is what the prompt needs.
    if isinstance(value, Document):
        return value.page_content
    if isinstance(value, Sequence) and not isinstance(value, str) and value and all(
            isinstance(d, Document) for d in value):
        return [d.page_content for d in value]
    return value


def _messages(rendered: RenderedPrompt) -> list[BaseMessage]:
    return [SystemMessage(content=m.content) if m.role == "system" else HumanMessage(content=m.content)
            for m in rendered.messages]


def _tenant() -> str | None:
    # Inside invoke/ainvoke LangChain keeps the run's config in a context variable.
    tenant = (ensure_config().get("metadata") or {}).get("tenant")
    return tenant if isinstance(tenant, str) else None
