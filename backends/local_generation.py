"""Greedy generation with transformers on CPU: the reference path for local models.

vLLM is the serving engine (see the engine module); this small path is what tests compare vLLM's
greedy text against, and what the foundation demo runs where no engine is needed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lean_core._extras import require
from lean_core.errors import InvalidParameterError

__all__ = ["GreedyAnswer", "LocalGreedyModel", "generate_greedy"]


@dataclass(frozen=True, slots=True)
class GreedyAnswer:
    """One greedy completion with exact token counts in the model's tokenizer."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    """``"stop"`` (end-of-sequence token) or ``"length"`` (hit max_new_tokens)."""
    seconds: float


class LocalGreedyModel:
    """A causal LM loaded once from a checkpoint directory, answering chat prompts greedily."""

    def __init__(self, model_dir: str | Path, *, threads: int | None = None) -> None:
        self.model_dir = Path(model_dir)
        self._threads = threads
        self._model: Any = None
        self._tokenizer: Any = None
        # transformers' loading context is process-global: two threads loading at once break
        # weight tying (seen: random lm_head, garbage text). One lock for loading and generating.
        self._lock = threading.Lock()

    def _load(self) -> None:
        if self._model is not None:
            return
        torch = require("torch", extra="models", feature="Local generation")
        transformers = require("transformers", extra="models", feature="Local generation")
        if self._threads:
            torch.set_num_threads(self._threads)
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.model_dir))
        self._model = transformers.AutoModelForCausalLM.from_pretrained(
            str(self.model_dir), dtype=torch.float32
        ).eval()

    def answer(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int = 64) -> GreedyAnswer:
        """Greedy answer to a chat (``[{"role": ..., "content": ...}]``) using the chat template."""
        if not isinstance(max_new_tokens, int) or max_new_tokens <= 0:
            raise InvalidParameterError("max_new_tokens", allowed="an int >= 1", received=max_new_tokens)
        with self._lock:
            self._load()  # raises MissingExtraError when torch/transformers are absent
            import torch

            return self._answer(torch, messages, max_new_tokens)

    def _answer(self, torch: Any, messages: Sequence[dict[str, str]], max_new_tokens: int) -> GreedyAnswer:
        started = time.perf_counter()
        ids = self._tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        input_ids = ids["input_ids"]
        with torch.inference_mode():
            output = self._model.generate(
                **ids, max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=self._tokenizer.eos_token_id,
            )
        new_tokens = output[0, input_ids.shape[1]:]
        eos = self._tokenizer.eos_token_id
        finished = len(new_tokens) > 0 and int(new_tokens[-1]) == eos
        text = self._tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        return GreedyAnswer(
            text=text,
            prompt_tokens=int(input_ids.shape[1]),
            completion_tokens=len(new_tokens),
            finish_reason="stop" if finished or len(new_tokens) < max_new_tokens else "length",
            seconds=time.perf_counter() - started,
        )


def generate_greedy(
    model_dir: str | Path,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    system: str | None = None,
    on_answer: Callable[[int, GreedyAnswer], None] | None = None,
) -> list[GreedyAnswer]:
    """Greedy answers to plain user prompts (each one chat turn), loading the model once."""
    model = LocalGreedyModel(model_dir)
    answers = []
    for index, prompt in enumerate(prompts):
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}
        ]
        answer = model.answer(messages, max_new_tokens=max_new_tokens)
        answers.append(answer)
        if on_answer is not None:
            on_answer(index, answer)
    return answers
