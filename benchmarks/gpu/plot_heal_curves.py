"""Plot the perplexity curves of GPU healing runs (``benchmarks/results/prune_full_heal_gpu.json``).

    .venv/bin/python benchmarks/gpu/plot_heal_curves.py benchmarks/results/prune_full_heal_gpu.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["plot_heal_curves"]


def plot_heal_curves(results: Path, png: Path) -> Path:
    """One line per run (perplexity against step), the original's and the target's levels dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(results.read_text())
    continuation = data.get("continuation")
    fig, axes = plt.subplots(1, 2 if continuation else 1, figsize=(14 if continuation else 8, 4.5), squeeze=False)
    ax = axes[0][0]
    for run in data["runs"]:
        points = [p for p in run["perplexity_curve"] if p["step"] > 0]
        ax.plot([p["step"] for p in points], [p["perplexity"] for p in points], marker="o", markersize=3,
                label=f"{run['name']}: {run['plan'].split(' (')[0]}, lr {run['lr']:g} -> {run['final_perplexity']:.1f}")
    ax.axhline(36.6, color="grey", linestyle="--", linewidth=1, label="original 36.6")
    ax.axhline(45.8, color="red", linestyle="--", linewidth=1, label="target 1.25x = 45.8")
    ax.set_xlabel("healing step (16 x 512 tokens)")
    ax.set_ylabel("WikiText-2 perplexity (16 windows)")
    ax.set_ylim(30, 65)
    ax.set_title("Full-weight healing of pruned SmolLM2-135M on the H100 (unhealed: 127)")
    ax.legend(fontsize=8)
    if continuation:
        _plot_continuation(axes[0][1], continuation)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


def _plot_continuation(ax: Any, continuation: dict[str, Any]) -> None:
    """Runs that continue E on fresh machines, on the validation text, against tokens seen since E."""
    offset = 0.0
    for run in continuation["runs"]:
        tokens_per_step = run["batch"] * 512 / 1e6
        points = [p for p in run["validation_curve"] if p["step"] >= 0]
        ax.plot([offset + p["step"] * tokens_per_step for p in points], [p["perplexity"] for p in points],
                marker="o", markersize=3, label=f"{run['name']} (from {run['starts_from']}), lr {run['lr']:g}, "
                                                 f"{run['steps']:,} steps x {run['batch']}")
        offset += run["steps"] * tokens_per_step
    original = continuation["validation_original"]
    ax.axhline(original, color="grey", linestyle="--", linewidth=1, label=f"original {original:.1f}")
    ax.axhline(1.25 * original, color="red", linestyle="--", linewidth=1, label=f"1.25x = {1.25 * original:.1f}")
    ax.set_xlabel("million tokens trained after run E")
    ax.set_ylabel("WikiText-2 validation perplexity (64 windows)")
    ax.set_title("Continuing run E on fresh machines (settings chosen on validation text)")
    ax.legend(fontsize=8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="prune_full_heal_gpu.json")
    parser.add_argument("--png", type=Path, default=None, help="output picture (default: next to the JSON)")
    args = parser.parse_args()
    print(plot_heal_curves(args.results, args.png or args.results.with_suffix(".png")))


if __name__ == "__main__":
    main()
