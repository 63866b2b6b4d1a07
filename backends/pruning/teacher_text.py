"""Text sampled from the original model, to heal a pruned copy on more than the calibration text.

A GPU healing run sees a few hundred thousand tokens of real text dozens of times over; the student
then learns that text rather than the teacher (measured: the training KL keeps falling while the
perplexity on other text stops improving). Continuations sampled from the teacher itself, each
started from the opening of a real paragraph, give as many fresh contexts as wanted, drawn from the
distribution the student is asked to match, and contain no evaluation text.

Imports only torch, transformers and tqdm (it runs in ``benchmarks/gpu/heal_pruned.py`` on the GPU
image).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

__all__ = ["paragraph_openings", "sample_continuations"]


def paragraph_openings(text: str, tokenizer: Any, *, prompt_tokens: int = 32) -> list[list[int]]:
    """The first ``prompt_tokens`` token ids of every blank-line-separated paragraph long enough."""
    if prompt_tokens < 1:
        raise ValueError(f"invalid prompt_tokens: expected a whole number >= 1, received {prompt_tokens!r}")
    openings = []
    for paragraph in text.split("\n\n"):
        ids = tokenizer(paragraph.strip(), add_special_tokens=False)["input_ids"]
        if len(ids) >= prompt_tokens:
            openings.append(list(ids[:prompt_tokens]))
    return openings


def sample_continuations(model: Any, prompts: Sequence[Sequence[int]], *, new_tokens: int, batch_size: int = 256,
                         temperature: float = 1.0, top_p: float = 0.95, eos_token_id: int | None = None,
                         seed: int = 0, autocast_bf16: bool = False,
                         show_progress: bool = True) -> list[list[int]]:
    """Sample one continuation of up to ``new_tokens`` per prompt; returns prompt + continuation ids.

    Prompts must all have the same length (:func:`paragraph_openings` makes them so), which keeps
    batches free of padding. A sample ends at its first ``eos_token_id`` (kept out of the result).
    """
    if new_tokens < 1 or batch_size < 1:
        raise ValueError(f"invalid new_tokens/batch_size: expected >= 1, received {new_tokens!r}/{batch_size!r}")
    if not prompts:
        return []
    lengths = {len(p) for p in prompts}
    if len(lengths) != 1:
        raise ValueError(f"invalid prompts: expected one common length, received lengths {sorted(lengths)}")
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast_bf16)
    samples: list[list[int]] = []
    model.eval()
    for start in tqdm(range(0, len(prompts), batch_size), desc="sampling", unit="batch", disable=not show_progress):
        batch = torch.tensor([list(p) for p in prompts[start:start + batch_size]], dtype=torch.long, device=device)
        with torch.no_grad(), autocast:
            out = model.generate(input_ids=batch, attention_mask=torch.ones_like(batch), do_sample=True,
                                 temperature=temperature, top_p=top_p, top_k=0, max_new_tokens=new_tokens,
                                 eos_token_id=eos_token_id, pad_token_id=eos_token_id)
        for row in out.tolist():
            if eos_token_id is not None and eos_token_id in row[batch.shape[1]:]:
                row = row[:row.index(eos_token_id, batch.shape[1])]
            samples.append(row)
    return samples
