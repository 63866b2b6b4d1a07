"""What ChatLeanVLLM supports, declared once for LangChain's unit and integration standard suites."""

from __future__ import annotations

from typing import Any

from lean_chain import ChatLeanVLLM

AUTO_REASON = ("binds tools without tool_choice ('auto') and expects the model to call one: SmolLM2-135M has "
               "no tool format and does not write the <tool_call> convention it is shown, so with no forced "
               "choice it answers in text (forced choices pass: guided decoding)")

WHITESPACE_REASON = ("the forced call is guided to valid JSON, but SmolLM2-135M fills the free whitespace the "
                     "JSON grammar allows with newlines until max_tokens (no-argument object, non-ASCII "
                     "string), so the call is cut off and raises ToolCallOutputError (compact JSON via "
                     "disable_any_whitespace was tried: it broke the argument values instead)")


class ChatLeanVLLMProperties:
    @property
    def chat_model_class(self) -> type[ChatLeanVLLM]:
        return ChatLeanVLLM

    @property
    def has_tool_calling(self) -> bool:
        return True  # bind_tools; forced choices by guided decoding work with any model

    @property
    def has_tool_choice(self) -> bool:
        return True  # "any" and a tool name force calls (guided decoding)

    @property
    def has_structured_output(self) -> bool:
        return True  # guided JSON decoding

    @property
    def structured_output_kwargs(self) -> dict[str, Any]:
        return {"method": "json_schema"}

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True
