"""What ChatLeanVLLM supports, declared once for LangChain's unit and integration standard suites."""

from __future__ import annotations

from typing import Any

from lean_chain import ChatLeanVLLM


class ChatLeanVLLMProperties:
    @property
    def chat_model_class(self) -> type[ChatLeanVLLM]:
        return ChatLeanVLLM

    @property
    def has_tool_calling(self) -> bool:
        return False  # no model-independent tool parser; the bundled model has no tool format

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
