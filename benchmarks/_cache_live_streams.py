"""The request streams of ``lean-inference bench cache-live``: the demo workload and a ShareGPT slice.

* **Demo**: the bundled question stream (:mod:`lean_benchmarks.demo.workload`) in arrival order,
  two tenants, each question with the passages the demo retrieves for it (the same MiniLM
  retrieval, so the model sees the demo's own baseline prompt). Its ``group`` and ``kind`` labels
  travel with each request for reporting only: no cache decision reads them.
* **ShareGPT**: a seeded slice of the first user turns in ``queries/sharegpt_first_prompts.jsonl``
  (read where it lies; nothing is copied). Only true openers (ids ending ``_0``), non-empty and
  at most ``max_chars`` characters (long pastes would dominate the run time without adding
  repeats). Natural repetition is kept on purpose: groups of texts that repeat, exactly or nearly
  (MiniLM cosine >= ``near``, closed transitively), fill about half the slice, each with up to
  ``max_per_group`` of its rows (groups of several distinct texts first, up to a quarter of the
  slice, then exact repeats); single texts drawn at random fill the rest; the slice is shuffled
  with ``seed``. The grouping only chooses what enters the slice and labels each request
  ("first" / "repeat" / "near-repeat") for the report.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lean_core.cache.normalize import normalize_prompt
from lean_core.errors import InvalidParameterError

if TYPE_CHECKING:
    from lean_core.embeddings import Embedder

__all__ = ["DEFAULT_SHAREGPT", "LiveRequest", "demo_requests", "sharegpt_slice"]

DEFAULT_SHAREGPT = Path("../shared/data/queries/sharegpt_first_prompts.jsonl")
"""Where the evaluation data lies beside the project checkout (relative to the working directory)."""


@dataclass(frozen=True)
class LiveRequest:
    """One request of a live stream: what the cache keys on, who asks, and labels for the report."""

    prompt: str
    """The request text the cache looks up (the demo's question; a ShareGPT first turn)."""
    tenant: str
    source: str
    """"demo" or "sharegpt"."""
    kind: str
    """Demo: new / repeat / paraphrase / lookalike. ShareGPT: first / repeat / near-repeat."""
    group: str | None = None
    """Demo only: requests of one group have the same gold answer (None for ShareGPT)."""
    gold: tuple[str, ...] = ()
    """Demo only: acceptable short answers."""
    context: tuple[str, ...] = ()
    """Retrieved passages sent with the prompt (the demo's RAG prompt); empty for ShareGPT."""


def demo_requests(*, limit: int | None = None, passages: int = 3) -> list[LiveRequest]:
    """The demo workload's stream (all 92 questions by default, or the first ``limit``) with its
    retrieved passages."""
    from lean_benchmarks.demo.runner import _retrieve  # the demo's own retrieval, reused as is
    from lean_benchmarks.demo.workload import load_demo_kb, load_demo_questions

    questions = load_demo_questions(limit=limit)
    contexts = _retrieve(load_demo_kb(), questions, passages)
    return [LiveRequest(prompt=q.question, tenant=q.tenant, source="demo", kind=q.kind, group=q.group,
                        gold=q.answers, context=c) for q, c in zip(questions, contexts, strict=True)]


def _openers(path: Path, max_chars: int) -> list[str]:
    if not path.is_file():
        raise InvalidParameterError("sharegpt", allowed="the ShareGPT first-prompts JSONL file "
                                    "(../shared/data/queries/sharegpt_first_prompts.jsonl)", received=str(path))
    texts = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            text = str(row.get("prompt", ""))
            if str(row.get("conversation_id", "")).endswith("_0") and 0 < len(text.strip()) <= max_chars:
                texts.append(text)
    return texts


def _near_groups(texts: Sequence[str], embedder: Embedder, near: float) -> list[int]:
    """Group index of each distinct text: linked when cosine >= ``near``, closed transitively."""
    import numpy as np

    from lean_core.cache.response_cache import embeddable

    vectors = np.asarray(embedder.encode([embeddable(t) for t in texts]), dtype=np.float32)
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(texts), 512):  # blocks keep the similarity matrix small
        block = vectors[start:start + 512] @ vectors.T
        for i, j in zip(*np.nonzero(block >= near), strict=True):
            a, b = root(start + int(i)), root(int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [root(i) for i in range(len(texts))]


def sharegpt_slice(path: str | Path = DEFAULT_SHAREGPT, *, size: int = 240, seed: int = 0, max_chars: int = 300,
                   near: float = 0.85, max_per_group: int = 6, embedder: Embedder | None = None) -> list[LiveRequest]:
    """The seeded ShareGPT slice of the module doc: ``size`` requests, about half from groups that
    repeat (exactly or nearly), in a seeded random order, one tenant."""
    if isinstance(size, bool) or not isinstance(size, int) or not 2 <= size <= 5000:
        raise InvalidParameterError("size", allowed="an int in [2, 5000]", received=size)
    if isinstance(near, bool) or not isinstance(near, int | float) or not 0.5 <= near <= 1.0:
        raise InvalidParameterError("near", allowed="a cosine in [0.5, 1]", received=near)
    rows = _openers(Path(path), max_chars)
    by_text: dict[str, list[str]] = {}
    for text in rows:
        by_text.setdefault(normalize_prompt(text), []).append(text)
    distinct = list(by_text)
    if embedder is None:
        from lean_core.embeddings import default_embedder

        embedder = default_embedder()
    groups: dict[int, list[str]] = {}
    for key, group in zip(distinct, _near_groups(distinct, embedder, float(near)), strict=True):
        groups.setdefault(group, []).extend(by_text[key])
    rng = random.Random(seed)
    repeating = [members for _, members in sorted(groups.items()) if len(members) > 1]
    singles = [members[0] for _, members in sorted(groups.items()) if len(members) == 1]
    rng.shuffle(repeating)
    rng.shuffle(singles)
    # Near-repeat groups (two or more distinct texts) are rarer than exact repeats and are what a
    # semantic cache is for: they get the first half of the repeating rows, exact repeats the rest.
    near_groups = [m for m in repeating if len({normalize_prompt(t) for t in m}) > 1]
    exact_groups = [m for m in repeating if len({normalize_prompt(t) for t in m}) == 1]
    chosen: list[tuple[str, int]] = []
    for limit, pool in ((size // 4, near_groups), (size // 2, exact_groups)):
        for members in pool:
            room = limit - len(chosen)
            if room < 2:  # a group contributes at least two rows, or it repeats nothing
                break
            number = len({g for _, g in chosen})
            chosen.extend((text, number) for text in rng.sample(members, min(len(members), max_per_group, room)))
    chosen.extend((text, len(repeating) + i) for i, text in enumerate(singles[:size - len(chosen)]))
    rng.shuffle(chosen)
    seen_texts: set[str] = set()
    seen_groups: set[int] = set()
    requests = []
    for text, group in chosen:
        key = normalize_prompt(text)
        kind = "repeat" if key in seen_texts else "near-repeat" if group in seen_groups else "first"
        seen_texts.add(key)
        seen_groups.add(group)
        requests.append(LiveRequest(prompt=text, tenant="sharegpt", source="sharegpt", kind=kind))
    return requests
