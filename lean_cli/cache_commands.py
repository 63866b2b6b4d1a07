"""``lean-inference cache ...``: calibrate the semantic-hit verifier, rebuild or inspect a cache file.

    lean-inference cache calibrate --pairs FILE [--pairs FILE ...] [--precision 0.95] --out FILE.json
    lean-inference cache rebuild [PATH]
    lean-inference cache stats [PATH]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_cache_commands"]


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from lean_core.cache.calibrate import fit_calibration, load_pairs, precision_recall_at
    from lean_core.cache.pair_features import pair_features
    from lean_core.embeddings import Embedder

    embedder = Embedder(args.embedding_model) if args.embedding_model else Embedder()
    # A file that is also evaluated is split by hash: fit on its calibration half, score the other.
    evaluated = {str(Path(p).resolve()) for p in args.evaluate or ()}
    pairs = [p for path in args.pairs
             for p in load_pairs(path, split="calibration" if str(Path(path).resolve()) in evaluated else "all",
                                 limit=args.limit)]
    print(f"fitting on {len(pairs)} labelled pairs from {len(args.pairs)} file(s) for precision {args.precision}")
    calibration = fit_calibration(pairs, encode=embedder.encode, target_precision=args.precision,
                                  embedding_model=args.embedding_model or "all-MiniLM-L6-v2")
    metrics = dict(calibration.metrics)
    for path in args.evaluate or ():
        used = str(Path(path).resolve()) in {str(Path(p).resolve()) for p in args.pairs}
        held = load_pairs(path, split="held_out" if used else "all", limit=args.limit)
        vectors = embedder.encode(list(dict.fromkeys(t for p in held for t in (p.text_a, p.text_b))))
        row = {t: i for i, t in enumerate(dict.fromkeys(t for p in held for t in (p.text_a, p.text_b)))}
        scores = []
        for p in held:
            features = pair_features(p.text_a, p.text_b, float(vectors[row[p.text_a]] @ vectors[row[p.text_b]]))
            scores.append(0.0 if features.veto else calibration.probability(features))
        precision, recall = precision_recall_at(scores, [p.label for p in held], calibration.threshold)
        metrics[f"{Path(path).stem}_held_out_precision"] = precision
        metrics[f"{Path(path).stem}_held_out_recall"] = recall
        print(f"{path}: held-out precision {precision:.3f}, recall {recall:.3f} ({len(held)} pairs)")
    from dataclasses import replace

    out = replace(calibration, metrics=metrics).save(args.out)
    print(f"threshold {calibration.threshold:.3f}; out-of-fold precision {metrics['oof_precision']:.3f}, "
          f"recall {metrics['oof_recall']:.3f}; written to {out}")
    print(f"use it with SemanticVerifier({str(out)!r}) or ResponseCache(verifier=...)")
    return 0


def _cmd_rebuild(args: argparse.Namespace) -> int:
    from lean_core.cache.sqlite_store import (
        SQLiteCacheStore,
        default_cache_path,
        rebuild_sqlite_store,
    )

    path = Path(args.path) if args.path else default_cache_path()
    moved = rebuild_sqlite_store(path)
    with SQLiteCacheStore(path) as store:
        verdict = store.integrity_check()
    print(f"damaged file moved to {moved}" if moved else f"no file at {path}")
    print(f"empty cache ready at {path} (integrity: {verdict})")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from lean_core.cache.sqlite_store import SQLiteCacheStore, default_cache_path

    path = Path(args.path) if args.path else default_cache_path()
    with SQLiteCacheStore(path, max_entries=None) as store:
        info: dict[str, Any] = {"path": str(path), "entries": store.count(), "integrity": store.integrity_check()}
    print(json.dumps(info, indent=1))
    return 0


def add_cache_commands(sub: Any) -> None:
    """Register ``cache calibrate|rebuild|stats`` on the top-level subparsers."""
    cache = sub.add_parser("cache", help="calibrate the semantic-hit verifier; rebuild or inspect a cache file")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)
    calibrate = cache_sub.add_parser("calibrate", help="fit the verifier on labelled pairs for a chosen precision")
    calibrate.add_argument("--pairs", action="append", required=True,
                           help="labelled pairs: JSONL {text_a, text_b, label} or STS CSV (repeatable)")
    calibrate.add_argument("--precision", type=float, default=0.95,
                           help="target precision of served semantic hits on every pairs file (default 0.95)")
    calibrate.add_argument("--evaluate", action="append",
                           help="pairs file to score (repeatable); if it is also a --pairs file, it is split by "
                                "hash: fitted on one half, scored on the other")
    calibrate.add_argument("--limit", type=int, default=None, help="at most N pairs per file")
    calibrate.add_argument("--embedding-model", default=None,
                           help="sentence-transformers model directory (default the bundled MiniLM)")
    calibrate.add_argument("--out", required=True, help="where to write the calibration JSON")
    calibrate.set_defaults(func=_cmd_calibrate)
    rebuild = cache_sub.add_parser("rebuild", help="move a damaged cache file aside and start an empty one")
    rebuild.add_argument("path", nargs="?", help="cache file (default $LEAN_INFERENCE_CACHE or ~/.cache/...)")
    rebuild.set_defaults(func=_cmd_rebuild)
    stats = cache_sub.add_parser("stats", help="entries and integrity of a cache file")
    stats.add_argument("path", nargs="?", help="cache file (default $LEAN_INFERENCE_CACHE or ~/.cache/...)")
    stats.set_defaults(func=_cmd_stats)
