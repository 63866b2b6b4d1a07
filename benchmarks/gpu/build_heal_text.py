"""Write Wikipedia-style healing text from the shared QA data (never WikiText, the evaluation text).

The passages of NQ-open (gold and retrieved contexts), SQuAD 2.0 and HotpotQA, each once, a blank
line between them: ~215k words of encyclopedic prose, the domain the pruning benchmark's perplexity
is measured on, without any WikiText-2 text. Used for the second healing run in BENCHMARKS.md
("Model pruning"); standard library only, so it also runs where the project is not installed::

    python benchmarks/gpu/build_heal_text.py --data-dir ../shared/data/qa --out .gpu/heal/wikipedia_passages.txt
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

__all__ = ["healing_passages"]


def _rows(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def healing_passages(data_dir: Path) -> list[str]:
    """Each distinct passage of the NQ, SQuAD and HotpotQA files in ``data_dir``, in file order."""
    seen: dict[str, None] = {}
    for row in _rows(data_dir / "nq_open_oracle.jsonl"):
        for ctx in row["ctxs"]:
            seen.setdefault(f"{ctx['title']}\n{ctx['text']}".strip())
    for row in _rows(data_dir / "squad_v2_dev.jsonl"):
        seen.setdefault(row["context"].strip())
    for row in _rows(data_dir / "hotpotqa_dev_distractor.jsonl"):
        for title, sentences in row["context"]:
            seen.setdefault(f"{title}\n{''.join(sentences)}".strip())
    return [p for p in seen if p]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/qa"), help="the shared QA files")
    parser.add_argument("--out", type=Path, required=True, help="text file to write")
    args = parser.parse_args()
    passages = healing_passages(args.data_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n\n".join(passages), encoding="utf-8")
    print(f"{len(passages)} passages, {sum(len(p.split()) for p in passages):,} words -> {args.out}")


if __name__ == "__main__":
    main()
