"""Figure of ground truth and predicted moments on a time axis (like the paper's Figure 6).

One panel per query: the sentence as title, the ground-truth moment as a bar labelled ``GT`` and
the model's top-n segments (after NMS) as bars labelled ``Rank k (score)``, over ``[0, duration]``
seconds. Uses matplotlib's Agg backend (no display needed).
"""
from __future__ import annotations

import textwrap
from typing import Sequence

__all__ = ["plot_moments"]


def plot_moments(items: Sequence[dict], output: str, title: str = "") -> str:
    """Draw ``items`` and save the figure to ``output`` (format from its extension).

    Each item: ``{"sentence": str, "video_id": str, "duration": float seconds,
    "gt": (start, end) seconds, "segments": [(start, end), ...] seconds best first,
    "scores": [float, ...]}``. Returns ``output``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not items:
        raise ValueError("plot_moments: items should hold at least one query, got none")
    rows = [1 + len(it["segments"]) for it in items]
    fig, axes = plt.subplots(len(items), 1, figsize=(9, sum(0.45 * r + 0.9 for r in rows)), squeeze=False,
                             gridspec_kw={"height_ratios": rows})
    for ax, it in zip(axes[:, 0], items):
        labels = ["GT"] + [f"Rank {k + 1} ({s:.2f})" for k, s in enumerate(it["scores"])]
        spans = [tuple(it["gt"])] + [tuple(s) for s in it["segments"]]
        for y, ((s, e), label) in enumerate(zip(spans, labels)):
            color = "tab:green" if y == 0 else ("tab:blue" if y == 1 else "tab:gray")
            ax.barh(y, e - s, left=s, height=0.6, color=color, alpha=0.9 if y < 2 else 0.55)
            ax.text(e + 0.005 * it["duration"], y, f"{s:.1f}-{e:.1f}s", va="center", fontsize=7)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, it["duration"] * 1.12)
        ax.axvline(it["duration"], color="black", linewidth=0.8)
        ax.set_xlabel("time (s)", fontsize=8)
        ax.set_title("\n".join(textwrap.wrap(f"{it['video_id']}: {it['sentence']}", 100)), fontsize=9, loc="left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output
