"""Perplexity with the standard protocol: WikiText-2 raw test, non-overlapping 512-token windows.

The whole file is tokenized with the model's own tokenizer and cut into consecutive windows of
``window`` tokens (no overlap, the tail dropped); each window is scored on its own, every token but
the first predicted. ``max_windows`` takes the first N windows, so every model compared with the
same tokenizer and N sees exactly the same text; ``skip_windows`` leaves out the first K before that
(to score on text held out from a run that looked at those windows). The result says which windows
and how many tokens.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_WIKITEXT", "PerplexityResult", "measure_perplexity", "wikitext_windows"]

DEFAULT_WIKITEXT = Path(__file__).resolve().parents[3] / "shared" / "data" / "text" / "wikitext-2-raw-v1.test.joined.txt"
"""WikiText-2 raw test, joined into one file (a development checkout's shared data)."""


@dataclass(frozen=True, slots=True)
class PerplexityResult:
    """exp(mean negative log-likelihood) over the predicted tokens of the windows."""

    perplexity: float
    windows: int
    window_tokens: int
    skipped_windows: int
    predicted_tokens: int
    seconds: float
    text: str


def _invalid(name: str, *, allowed: str, received: Any) -> ValueError:
    # Imported here, not at module level: the GPU healing script loads this module on an image
    # without lean_core's dependencies (pydantic), and only needs the project's error on bad input.
    from lean_core.errors import InvalidParameterError

    return InvalidParameterError(name, allowed=allowed, received=received)


def wikitext_windows(text_path: str | Path, tokenizer_dir: str | Path, *, window: int = 512,
                     max_windows: int | None = None, skip_windows: int = 0) -> list[list[int]]:
    """Consecutive non-overlapping windows of token ids of ``text_path``: after the first
    ``skip_windows``, at most ``max_windows`` of them."""
    from tokenizers import Tokenizer

    if isinstance(skip_windows, bool) or not isinstance(skip_windows, int) or skip_windows < 0:
        raise _invalid("skip_windows", allowed="a whole number >= 0", received=skip_windows)
    path = Path(text_path)
    if not path.is_file():
        raise _invalid("text", allowed="an existing text file", received=str(text_path))
    if window < 2:
        raise _invalid("window", allowed="at least 2 tokens", received=window)
    tokenizer = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    ids = tokenizer.encode(path.read_text(encoding="utf-8"), add_special_tokens=False).ids
    windows = [ids[i:i + window] for i in range(0, len(ids) - window + 1, window)]
    if skip_windows >= len(windows):
        raise _invalid("skip_windows", allowed=f"fewer than the text's {len(windows)} windows of {window} tokens",
                       received=skip_windows)
    windows = windows[skip_windows:]
    if max_windows is not None:
        if max_windows < 1:
            raise _invalid("max_windows", allowed="a whole number >= 1", received=max_windows)
        windows = windows[:max_windows]
    if not windows:
        raise _invalid("text", allowed=f"at least {window} tokens", received=f"{len(ids)} tokens")
    return windows


def measure_perplexity(model: Any | str | Path, *, text: str | Path = DEFAULT_WIKITEXT, window: int = 512,
               max_windows: int | None = 16, skip_windows: int = 0, batch_size: int = 4, device: str = "cpu",
               tokenizer_dir: str | Path | None = None, show_progress: bool = False) -> PerplexityResult:
    """Perplexity of ``model`` (a checkpoint directory or a loaded transformers causal LM)."""
    import torch
    from tqdm.auto import tqdm

    if isinstance(model, str | Path):
        from transformers import AutoModelForCausalLM

        tokenizer_dir = tokenizer_dir or model
        loaded: Any = AutoModelForCausalLM.from_pretrained(str(model), dtype=torch.float32)
        model = loaded.to(device)
    if tokenizer_dir is None:
        raise _invalid("tokenizer_dir", allowed="the checkpoint directory holding tokenizer.json",
                                    received=None)
    windows = wikitext_windows(text, tokenizer_dir, window=window, max_windows=max_windows,
                               skip_windows=skip_windows)
    started = time.perf_counter()
    total_nll, predicted = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in tqdm(range(0, len(windows), batch_size), desc="perplexity", disable=not show_progress):
            batch = torch.tensor(windows[start:start + batch_size], dtype=torch.long, device=device)
            logits = model(input_ids=batch, use_cache=False).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                                    reduction="sum")
            total_nll += float(nll)
            predicted += batch[:, 1:].numel()
    return PerplexityResult(perplexity=math.exp(total_nll / predicted), windows=len(windows), window_tokens=window,
                            skipped_windows=skip_windows, predicted_tokens=predicted,
                            seconds=time.perf_counter() - started, text=str(text))
